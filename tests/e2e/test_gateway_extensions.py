"""Acceptance 2 of issue 10: tritonclient.http's ``get_model_config``,
``get_inference_statistics`` and repository calls (``get_model_repository_index``,
``load_model``, ``unload_model``) drive a real gateway in front of two real worker
processes, unmodified.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton

from tests.support.fleet import Fleet, infer_json, wait_until

SCALES = {"1.0.0": 1.0, "1.1.0": 2.0, "2.0.0": 4.0}
LOADS = ["resnet@1.0.0", "resnet@1.1.0"]  # stable (2.0.0) is published, loaded nowhere
WORKERS = ("w1", "w2")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("extensions")
    deployment = Fleet(root, f"sqlite+aiosqlite:///{root / 'registry.db'}", None)
    try:
        deployment.start_gateway()
        deployment.publish("resnet", SCALES)
        deployment.publish("extra", {"1.0.0": 3.0})
        for worker in WORKERS:
            deployment.start_worker(worker, LOADS)
        for version in ("1.0.0", "1.1.0"):
            deployment.wait_serving("resnet", version, workers=2)
        yield deployment
    finally:
        deployment.stop()


def client(fleet: Fleet) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(fleet.gateway_url.removeprefix("http://"))


def worker_url(fleet: Fleet, worker: str) -> str:
    return f"http://127.0.0.1:{fleet.workers[worker][1]}"


def admin_headers(fleet: Fleet) -> dict[str, str]:
    return {"Authorization": f"Bearer {fleet.token}"}


def infer(
    triton_client: triton.InferenceServerClient, model: str, version: str
) -> tuple[str, float]:
    tensor = triton.InferInput("input", [1, 4], "FP32")
    tensor.set_data_from_numpy(np.full((1, 4), 1.0, dtype=np.float32))
    result = triton_client.infer(model, [tensor], model_version=version)
    return result.get_response()["model_version"], float(result.as_numpy("output")[0, 0])


def worker_index(fleet: Fleet, worker: str) -> set[str]:
    rows = httpx.post(f"{worker_url(fleet, worker)}/v2/repository/index", timeout=10).json()
    return {f"{r['name']}@{r['version']}" for r in rows if r["state"] == "READY"}


# -- config ----------------------------------------------------------------------------


def test_get_model_config_through_the_gateway_for_any_reference(fleet: Fleet) -> None:
    triton_client = client(fleet)
    for reference, version in {"^1.0": "1.1.0", "stable": "1.1.0", "1.0.0": "1.0.0"}.items():
        config = triton_client.get_model_config("resnet", reference)
        direct = httpx.get(
            f"{worker_url(fleet, 'w1')}/v2/models/resnet/versions/{version}/config", timeout=10
        ).json()
        assert config == {**direct, "name": "resnet"}, reference
        assert config["input"][0]["name"] == "input"
    # NOTE: "stable" is 2.0.0 in the registry; with no worker for it the gateway serves 1.1.0.
    reply = httpx.get(
        f"{fleet.gateway_url}/v2/models/resnet/config", headers={"X-Model-Version": "~1.0.0"}
    )
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-model-version"] == "1.0.0"
    assert reply.headers["x-backend"] in WORKERS
    missing = httpx.get(f"{fleet.gateway_url}/v2/models/resnet/versions/2.0.0/config")
    assert missing.status_code == 503, missing.text


# -- statistics ------------------------------------------------------------------------


def test_statistics_are_served_but_not_listed_for_perf_analyzer(fleet: Fleet) -> None:
    """perf_analyzer reads server-side statistics only from a server that lists the
    extension, keyed by its -x; with -x ^1.0 it would find no entry and exit 99."""
    extensions = client(fleet).get_server_metadata()["extensions"]
    assert "model_configuration" in extensions
    assert "model_repository" in extensions
    assert "statistics" not in extensions
    assert client(fleet).get_inference_statistics("resnet", "^1.0")["model_stats"]


def gateway_stats(fleet: Fleet, version: str) -> dict[str, Any]:
    (entry,) = client(fleet).get_inference_statistics("resnet", version)["model_stats"]
    assert (entry["name"], entry["version"]) == ("resnet", version)
    return dict(entry)


def worker_stats(fleet: Fleet, worker: str, version: str) -> dict[str, Any]:
    url = f"{worker_url(fleet, worker)}/v2/models/resnet/versions/{version}/stats"
    (entry,) = httpx.get(url, timeout=10).json()["model_stats"]
    return dict(entry)


def test_get_inference_statistics_sums_the_workers_that_serve_the_version(fleet: Fleet) -> None:
    before = gateway_stats(fleet, "1.0.0")
    direct_before = {w: worker_stats(fleet, w, "1.0.0") for w in WORKERS}
    # NOTE: requests sent to each worker itself, so both have a share whatever P2C does.
    for worker, count in (("w1", 3), ("w2", 4)):
        for _ in range(count):
            url = f"{worker_url(fleet, worker)}/v2/models/resnet/versions/1.0.0/infer"
            httpx.post(url, json=infer_json(), timeout=10).raise_for_status()
    triton_client = client(fleet)
    for _ in range(5):
        assert infer(triton_client, "resnet", "1.0.0")[0] == "1.0.0"
    after = gateway_stats(fleet, "1.0.0")
    assert after["inference_count"] - before["inference_count"] == 12
    success, earlier = after["inference_stats"]["success"], before["inference_stats"]["success"]
    assert success["count"] - earlier["count"] == 12
    assert success["ns"] > earlier["ns"]
    direct = {w: worker_stats(fleet, w, "1.0.0") for w in WORKERS}
    for field in ("inference_count", "execution_count"):
        assert after[field] == sum(d[field] for d in direct.values()), field
    assert after["last_inference"] == max(d["last_inference"] for d in direct.values())
    assert all(
        direct[w]["inference_count"] - direct_before[w]["inference_count"] >= n
        for w, n in (("w1", 3), ("w2", 4))
    )
    everything = client(fleet).get_inference_statistics()["model_stats"]
    listed = {(s["name"], s["version"]) for s in everything}
    assert listed == {("resnet", "1.0.0"), ("resnet", "1.1.0")}  # what some worker serves
    per_model = client(fleet).get_inference_statistics("resnet")["model_stats"]
    assert [s["version"] for s in per_model] == ["1.1.0", "1.0.0"]


# -- repository ------------------------------------------------------------------------


def test_repository_calls_need_an_admin_token(fleet: Fleet) -> None:
    triton_client = client(fleet)
    with pytest.raises(triton.InferenceServerException, match=r"\[401\].*admin token"):
        triton_client.get_model_repository_index()
    with pytest.raises(triton.InferenceServerException, match=r"\[401\].*admin token"):
        triton_client.load_model("extra")
    infer_token = fleet.run_cli("tokens", "create", "--name", "client", "--scope", "infer")
    wrong = {"Authorization": f"Bearer {infer_token}"}

    def known() -> bool:
        reply = httpx.get(f"{fleet.gateway_url}/v2/models/resnet", headers=wrong)
        return reply.status_code == 200

    wait_until(known, "the gateway to know the infer token")
    for call in (
        lambda: triton_client.get_model_repository_index(headers=wrong),
        lambda: triton_client.load_model("extra", headers=wrong),
        lambda: triton_client.unload_model("resnet", headers=wrong),
    ):
        with pytest.raises(triton.InferenceServerException, match=r'\[403\].*lacks the "admin"'):
            call()
    assert all(worker_index(fleet, w) == set(LOADS) for w in WORKERS)


def test_load_model_and_unload_model_place_a_version_on_every_worker(fleet: Fleet) -> None:
    triton_client = client(fleet)
    headers = admin_headers(fleet)
    index = triton_client.get_model_repository_index(headers=headers)
    assert {"name": "extra", "version": "1.0.0", "state": "UNAVAILABLE",
            "reason": "not loaded on any worker"} in index  # fmt: skip
    assert {"name": "resnet", "version": "1.1.0", "state": "READY"} in index
    triton_client.load_model("extra", headers=headers)  # its stable version, 1.0.0
    assert all(worker_index(fleet, w) == {*LOADS, "extra@1.0.0"} for w in WORKERS)
    assert infer(triton_client, "extra", "1.0.0") == ("1.0.0", 3.0)  # routable at once
    assert triton_client.is_model_ready("extra")
    ready = triton_client.get_model_repository_index(headers=headers)
    assert {"name": "extra", "version": "1.0.0", "state": "READY"} in ready
    triton_client.unload_model("extra", headers=headers)
    assert all(worker_index(fleet, w) == set(LOADS) for w in WORKERS)
    assert not triton_client.is_model_ready("extra")
    assert infer(triton_client, "resnet", "1.1.0") == ("1.1.0", 2.0)


def test_a_version_is_placed_on_the_workers_named(fleet: Fleet) -> None:
    headers = admin_headers(fleet)
    base = f"{fleet.gateway_url}/v2/repository/models/resnet"
    body = {"parameters": {"version": "stable", "workers": "w2"}}
    loaded = httpx.post(f"{base}/load", json=body, headers=headers, timeout=120)
    assert (loaded.status_code, loaded.json()) == (200, {})
    assert worker_index(fleet, "w2") == {*LOADS, "resnet@2.0.0"}
    assert worker_index(fleet, "w1") == set(LOADS)
    assert infer(client(fleet), "resnet", "stable") == ("2.0.0", 4.0)
    bad = httpx.post(f"{base}/load", json={"parameters": {"workers": "w9"}}, headers=headers)
    assert (bad.status_code, bad.json()) == (
        400,
        {"error": 'unknown worker "w9" (announced: w1, w2)'},
    )
    unloaded = httpx.post(f"{base}/versions/2.0.0/unload", headers=headers, timeout=60)
    assert (unloaded.status_code, unloaded.json()) == (200, {})
    assert all(worker_index(fleet, w) == set(LOADS) for w in WORKERS)
    assert infer(client(fleet), "resnet", "stable") == ("1.1.0", 2.0)


def test_repository_routes_refuse_what_they_cannot_do(fleet: Fleet) -> None:
    headers = admin_headers(fleet)
    base = f"{fleet.gateway_url}/v2/repository"
    cases = [
        (httpx.get(f"{base}/index", headers=headers), 405, "use POST"),
        (httpx.post(f"{base}/models/resnet/reload", headers=headers), 404, "no route"),
        (
            httpx.post(f"{base}/models/resnet/load", content=b"{", headers=headers),
            400,
            "invalid repository request body",
        ),
        (
            httpx.post(f"{base}/models/resnet/load", json={"parameters": {"config": "{}"}},
                       headers=headers),
            400,
            "unsupported repository parameter(s) 'config'",
        ),
        (httpx.post(f"{base}/models/nope/load", headers=headers), 404, '"nope"'),
    ]  # fmt: skip
    for reply, status, message in cases:
        assert reply.status_code == status, reply.text
        assert message in reply.json()["error"]
    assert all(worker_index(fleet, w) == set(LOADS) for w in WORKERS)
