"""A third-party OIP server behind the gateway: a real modelgate worker process that does
not announce itself (no database, no Redis: `--model-file` only), serving the model under
names of its own (``iris`` version ``7``), registered by the admin API as an external
server. Through a real gateway it serves, is balanced beside an announced worker, is taken
out when stopped and readmitted when back, leaves routing when deleted, and is driven by
the CLI; a modelgate worker refuses to load a version published for it.

The fleet: the gateway, ``w1`` (an announced worker serving ``ext@1.0.0``) and ``third``
(the external server, serving ``ext@1.0.0`` and ``ext@2.0.0``, both as ``iris@7``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton_http
from click.testing import CliRunner

from modelgate.cli.main import main
from tests.support.fleet import Fleet, infer_json, wait_until
from tests.support.models import onnx_bytes
from tests.support.net import ROOT, free_port
from tests.support.traffic import Loop
from tests.support.workers import WorkerProcess, start_worker

MODEL = "ext"
SCALE = 2.0


class ThirdParty:
    """An OIP server the gateway does not own: started and stopped on one port."""

    def __init__(self, root: Path, port: int | None = None, grpc: bool = False) -> None:
        self.root = root
        self.grpc_port = free_port() if grpc else None
        root.mkdir(parents=True, exist_ok=True)
        self.model = root / "iris.onnx"
        self.model.write_bytes(onnx_bytes(SCALE))
        self.port = port or free_port()
        self.process: WorkerProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        if self.process is None or self.process.process.poll() is not None:
            args = ["--model-file", f"iris@7={self.model}", "--id", "third-party"]
            if self.grpc_port is not None:
                args += ["--grpc-port", str(self.grpc_port)]
            self.process = start_worker(args, self.root / f"{self.port}.log", port=self.port)

    def kill(self) -> None:
        if self.process is not None:
            self.process.process.kill()
            self.process.process.wait(timeout=30)
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None


def serves(*versions: str) -> list[dict[str, str]]:
    return [
        {"model": MODEL, "version": v, "remote_model": "iris", "remote_version": "7"}
        for v in versions
    ]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("external")
    deployment = Fleet(root, f"sqlite+aiosqlite:///{root / 'registry.db'}", None)
    try:
        deployment.start_gateway()
        deployment.publish(MODEL, {"1.0.0": SCALE})
        with deployment.admin() as client:
            for version in ("2.0.0", "3.0.0"):
                doc = {"version": version, "runtime": "external"}
                response = client.post(f"/admin/v1/models/{MODEL}/versions", json=doc)
                assert response.status_code == 201, response.text
        deployment.start_worker("w1", [f"{MODEL}@1.0.0"])
        deployment.wait_serving(MODEL, "1.0.0", workers=1)
        yield deployment
    finally:
        deployment.stop()


@pytest.fixture(scope="module")
def third(fleet: Fleet) -> Iterator[ThirdParty]:
    server = ThirdParty(fleet.root / "third")
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def third_serving(fleet: Fleet, third: ThirdParty) -> None:
    """Each test starts with ``third`` running, registered and routed for both versions."""
    third.start()
    rows = workers(fleet)
    if "third" not in rows:
        doc = {"id": "third", "url": third.url, "serves": serves("1.0.0", "2.0.0")}
        with fleet.admin() as client:
            response = client.post("/admin/v1/workers", json=doc)
        assert response.status_code == 201, response.text
    routed(fleet, "third")


def routed(fleet: Fleet, server_id: str) -> None:
    """Until the gateway routes both of ``third``'s versions to ``server_id``, not ejected."""

    def check() -> bool:
        row = fleet.balancer_rows().get(server_id)
        wanted = {f"{MODEL}@1.0.0", f"{MODEL}@2.0.0"}
        return row is not None and row["ejected_until"] is None and wanted <= set(row["ready"])

    wait_until(check, f"the gateway to route to {server_id}")


def workers(fleet: Fleet) -> dict[str, dict[str, Any]]:
    with fleet.admin() as client:
        return {r["id"]: r for r in client.get("/admin/v1/workers").json()}


def infer(fleet: Fleet, version: str, value: float = 1.5) -> httpx.Response:
    return httpx.post(
        f"{fleet.gateway_url}/v2/models/{MODEL}/versions/{version}/infer",
        json=infer_json(value),
        timeout=30,
    )


def test_it_serves_under_the_modelgate_names(fleet: Fleet) -> None:
    response = infer(fleet, "2.0.0")
    assert response.status_code == 200, response.text
    assert (response.headers["x-backend"], response.headers["x-model-version"]) == (
        "third",
        "2.0.0",
    )
    body = response.json()
    assert (body["model_name"], body["model_version"]) == (MODEL, "2.0.0")
    assert body["outputs"][0]["data"] == [1.5 * SCALE] * 4
    ranged = httpx.post(
        f"{fleet.gateway_url}/v2/models/{MODEL}/infer",
        json=infer_json(),
        headers={"X-Model-Version": ">=2.0.0 <3.0.0"},
        timeout=30,
    )
    assert (ranged.status_code, ranged.json()["model_version"]) == (200, "2.0.0")

    client = triton_http.InferenceServerClient(fleet.gateway_url.removeprefix("http://"))
    try:
        tensor = triton_http.InferInput("input", [1, 4], "FP32")
        tensor.set_data_from_numpy(np.full((1, 4), 3.0, dtype=np.float32), binary_data=True)
        wanted = triton_http.InferRequestedOutput("output", binary_data=True)
        result = client.infer(MODEL, [tensor], model_version="2.0.0", outputs=[wanted])
        assert (result.get_response()["model_name"], result.get_response()["model_version"]) == (
            MODEL,
            "2.0.0",
        )
        assert result.as_numpy("output").tolist() == [[3.0 * SCALE] * 4]
        assert client.get_model_metadata(MODEL, "2.0.0")["name"] == MODEL
    finally:
        client.close()

    row = workers(fleet)["third"]
    assert (row["kind"], row["protocol"], row["url"], row["serves"]) == (
        "external",
        "http",
        third_url(fleet),
        serves("1.0.0", "2.0.0"),
    )
    assert all(entry["ready"] for entry in row["loaded"])
    assert row["balancer"]["ejected_until"] is None
    assert workers(fleet)["w1"]["kind"] == "announced"


def third_url(fleet: Fleet) -> str:
    return str(workers(fleet)["third"]["url"])


def test_a_server_registered_while_down_gets_no_traffic_until_it_answers(
    fleet: Fleet, tmp_path: Path
) -> None:
    late = ThirdParty(tmp_path)
    doc = {"id": "late", "url": late.url, "serves": serves("1.0.0", "3.0.0")}
    with fleet.admin() as client:
        assert client.post("/admin/v1/workers", json=doc).status_code == 201
    try:
        wait_until(lambda: "late" in fleet.balancer_rows(), "the gateway to know late")
        for _ in range(20):
            assert infer(fleet, "1.0.0").headers["x-backend"] in ("w1", "third")
        refused = infer(fleet, "3.0.0")
        assert refused.status_code == 503
        assert refused.json()["error"] == (
            f'version 3.0.0 of "{MODEL}" has no ready worker; probes find it not ready: '
            "3.0.0 on late"
        )
        row = fleet.balancer_rows()["late"]
        assert (row["ready"], row["consecutive_failures"]) == ([], 0)

        late.start()
        wait_until(lambda: infer(fleet, "3.0.0").status_code == 200, "late to be admitted")
        assert infer(fleet, "3.0.0").headers["x-backend"] == "late"
    finally:
        late.stop()
        with fleet.admin() as client:
            client.delete("/admin/v1/workers/late")


async def test_stopped_it_is_taken_out_and_started_it_is_readmitted(
    fleet: Fleet, third: ThirdParty
) -> None:
    shared = f"/v2/models/{MODEL}/versions/1.0.0/infer"
    async with Loop(fleet.gateway_url, shared, infer_json, concurrency=4) as loop:
        for _ in range(50):  # until third has taken a share (it may still be in slow start)
            await loop.more(20)
            if "third" in backends(loop):
                break
        assert "third" in backends(loop)
        third.kill()

        def out() -> bool:
            ready = set(fleet.balancer_rows()["third"]["ready"])
            return not ready & {f"{MODEL}@1.0.0", f"{MODEL}@2.0.0"}

        wait_until(out, "the probes to take third out")
        await loop.more(40)
        refused = infer(fleet, "2.0.0")
        assert refused.status_code == 503
        assert refused.json()["error"] == (
            f'version 2.0.0 of "{MODEL}" has no ready worker; probes find it not ready: '
            "2.0.0 on third"
        )
        third.start()
        routed(fleet, "third")
        await loop.more(40)
    assert loop.failures() == []
    assert infer(fleet, "2.0.0").headers["x-backend"] == "third"


def backends(loop: Loop) -> set[str]:
    return {a.headers["x-backend"] for a in loop.ordered() if not isinstance(a, str)}


def test_a_grpc_server_is_admitted_by_model_ready(fleet: Fleet, tmp_path: Path) -> None:
    remote = ThirdParty(tmp_path, grpc=True)
    remote.start()
    doc = {"id": "over-grpc", "url": f"grpc://127.0.0.1:{remote.grpc_port}", "protocol": "grpc",
           "serves": serves("3.0.0")}  # fmt: skip
    try:
        with fleet.admin() as client:
            assert client.post("/admin/v1/workers", json=doc).status_code == 201

        def admitted() -> bool:
            row = fleet.balancer_rows().get("over-grpc")
            return row is not None and row["ready"] == [f"{MODEL}@3.0.0"]

        wait_until(admitted, "a ModelReady probe of iris@7 to pass")
        row = workers(fleet)["over-grpc"]
        assert (row["protocol"], row["loaded"][0]["ready"]) == ("grpc", True)
        remote.kill()
        wait_until(lambda: fleet.balancer_rows()["over-grpc"]["ready"] == [], "it to fail")
    finally:
        remote.stop()
        with fleet.admin() as client:
            client.delete("/admin/v1/workers/over-grpc")


def test_deleted_it_leaves_routing(fleet: Fleet) -> None:
    with fleet.admin() as client:
        assert client.delete("/admin/v1/workers/third").status_code == 204
        missing = client.delete("/admin/v1/workers/third")
    assert missing.status_code == 404
    assert "third" not in workers(fleet)
    wait_until(lambda: infer(fleet, "2.0.0").status_code == 503, "the gateway to drop third")
    refused = infer(fleet, "2.0.0")
    assert refused.json()["error"] == f'version 2.0.0 of "{MODEL}" has no ready worker'
    assert {infer(fleet, "1.0.0").headers["x-backend"] for _ in range(10)} == {"w1"}


def test_the_cli_adds_and_removes_a_server(fleet: Fleet, third: ThirdParty) -> None:
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(main, ["--url", fleet.gateway_url, "--token", fleet.token, *args])

    added = run("workers", "add", "cli-srv", third.url, "--serves", f"{MODEL}@3.0.0=iris@7",
                "-o", "json")  # fmt: skip
    assert added.exit_code == 0, added.output
    assert '"remote_model": "iris"' in added.output
    wait_until(lambda: infer(fleet, "3.0.0").status_code == 200, "cli-srv to be admitted")
    assert infer(fleet, "3.0.0").headers["x-backend"] == "cli-srv"
    listed = run("workers")
    assert listed.exit_code == 0, listed.output
    assert "cli-srv" in listed.output
    rows = {r["id"]: r for r in json.loads(run("workers", "list", "-o", "json").output)}
    assert (rows["cli-srv"]["kind"], rows["w1"]["kind"]) == ("external", "announced")
    removed = run("workers", "remove", "cli-srv")
    assert (removed.exit_code, removed.output.strip()) == (0, "removed cli-srv")
    again = run("workers", "remove", "cli-srv")
    assert again.exit_code == 1
    assert '[404] no external server "cli-srv"' in again.output
    bad = run("workers", "add", "x", third.url, "--serves", "ext")
    assert bad.exit_code == 2
    assert "MODEL@VERSION" in bad.output


def test_a_modelgate_worker_refuses_an_external_version(fleet: Fleet) -> None:
    args = [sys.executable, "-m", "modelgate", "worker", "--port", str(free_port())]
    result = subprocess.run(
        [*args, "--load", f"{MODEL}@2.0.0"],
        env=fleet.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert f'{MODEL}@2.0.0 was published with runtime "external"' in result.stdout + result.stderr
