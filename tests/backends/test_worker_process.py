"""A real worker process (``python -m modelgate worker``) driven by unmodified tritonclient.http."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import ml_dtypes
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.support.models import small_mlp
from tests.support.registry import publish
from tests.support.workers import WorkerProcess, start_worker


def _input(name: str, array: np.ndarray, datatype: str, binary: bool = True) -> triton.InferInput:
    tensor = triton.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


@pytest.fixture(scope="module")
def client(worker: WorkerProcess) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(worker.address, concurrency=16)


def test_health_and_server_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    meta = client.get_server_metadata()
    assert meta["name"] == "modelgate-worker"
    assert "binary_tensor_data" in meta["extensions"]


def test_model_metadata_and_ready_with_and_without_version(
    client: triton.InferenceServerClient,
) -> None:
    meta = client.get_model_metadata("scale")
    assert meta["platform"] == "onnx_onnxv1"
    assert meta["versions"] == ["2.0.0+build.5", "1.0.0"]
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
    assert client.get_model_metadata("scale", "1.0.0")["outputs"][0]["name"] == "output"
    for version in ("", "1.0.0", "2.0.0", "2.0.0+build.5"):
        assert client.is_model_ready("scale", version)
    assert not client.is_model_ready("scale", "9.9.9")
    assert not client.is_model_ready("nope")


def test_binary_in_binary_out_is_the_default(client: triton.InferenceServerClient) -> None:
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    result = client.infer(
        "scale", [_input("input", x, "FP32")], model_version="1.0.0", request_id="req-1"
    )
    np.testing.assert_array_equal(result.as_numpy("output"), x * 2)
    response = result.get_response()
    assert response["id"] == "req-1"
    assert response["model_version"] == "1.0.0"
    assert response["outputs"][0]["parameters"]["binary_data_size"] == 32


def test_json_in_json_out_on_a_version_path(client: triton.InferenceServerClient) -> None:
    x = np.array([[1.5, -2, 0, 4]], dtype=np.float32)
    outputs = [triton.InferRequestedOutput("output", binary_data=False)]
    result = client.infer(
        "scale", [_input("input", x, "FP32", binary=False)], model_version="2.0.0", outputs=outputs
    )
    np.testing.assert_array_equal(result.as_numpy("output"), x * 3)
    response = result.get_response()
    assert response["model_version"] == "2.0.0+build.5"
    assert response["outputs"][0]["data"] == [4.5, -6.0, 0.0, 12.0]


def test_unversioned_path_serves_the_highest_version(client: triton.InferenceServerClient) -> None:
    x = np.ones((1, 4), dtype=np.float32)
    result = client.infer("scale", [_input("input", x, "FP32")])
    assert result.get_response()["model_version"] == "2.0.0+build.5"
    np.testing.assert_array_equal(result.as_numpy("output"), x * 3)


@pytest.mark.parametrize("binary", [True, False])
def test_fp16_int64_bool_bytes_round_trip(
    client: triton.InferenceServerClient, binary: bool
) -> None:
    data = {
        "f16": (np.array([[0.5, -1, 2], [3, 4, 65504]], dtype=np.float16), "FP16"),
        "i64": (np.array([[2**40, -1, 0], [1, 2, 3]], dtype=np.int64), "INT64"),
        "flag": (np.array([[True, False, True], [False, False, True]]), "BOOL"),
        "text": (np.array([b"hello", "héllo".encode()], dtype=object), "BYTES"),
    }
    inputs = [_input(n, a, t, binary) for n, (a, t) in data.items()]
    outputs = [triton.InferRequestedOutput(f"{n}_out", binary_data=binary) for n in data]
    result = client.infer("kinds", inputs, outputs=outputs)
    for name, (array, datatype) in data.items():
        expected = array
        if datatype == "BYTES" and not binary:  # JSON carries BYTES as text
            expected = np.array([v.decode() for v in array], dtype=object)
        np.testing.assert_array_equal(result.as_numpy(f"{name}_out"), expected)


def test_bf16_binary_round_trip(client: triton.InferenceServerClient) -> None:
    x = np.array([[1.5, -2.0, 0.25], [3.0, 1024.0, -0.5]], dtype=ml_dtypes.bfloat16)
    result = client.infer("bf16", [_input("bf16", x, "BF16")])
    np.testing.assert_array_equal(
        result.as_numpy("bf16_out").astype(np.float32), x.astype(np.float32)
    )


def test_errors_reach_tritonclient_with_status_and_message(
    client: triton.InferenceServerClient,
) -> None:
    x = np.ones((1, 5), dtype=np.float32)
    with pytest.raises(InferenceServerException) as bad_shape:
        client.infer("scale", [_input("input", x, "FP32")], model_version="1.0.0")
    assert bad_shape.value.status() == "400"
    assert 'input "input" has shape [1,5]' in bad_shape.value.message()
    with pytest.raises(InferenceServerException) as missing:
        client.infer("nope", [_input("input", x, "FP32")])
    assert missing.value.status() == "404"
    assert "loaded: " in missing.value.message()
    assert client.is_server_ready()


def _mlp_reference(x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(small_mlp(), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, {"x": row[None]})[0] for row in x])


def test_batched_equals_unbatched_on_concurrent_mixed_requests(
    client: triton.InferenceServerClient,
) -> None:
    rng = np.random.default_rng(1)
    sizes = [1] * 48 + list(rng.integers(1, 6, size=24))
    requests = [rng.standard_normal((int(n), 16)).astype(np.float32) for n in sizes]
    pending = [client.async_infer("mlp", [_input("x", x, "FP32")]) for x in requests]
    results = [p.get_result() for p in pending]
    for x, result in zip(requests, results, strict=True):
        y = result.as_numpy("y")
        assert y.shape == (x.shape[0], 8)
        np.testing.assert_allclose(y, _mlp_reference(x), rtol=1e-5, atol=1e-5)


def test_unbatchable_models_run_each_request_alone(client: triton.InferenceServerClient) -> None:
    rng = np.random.default_rng(2)
    fixed = [rng.standard_normal((2, 3)).astype(np.float32) for _ in range(12)]
    sums = [rng.standard_normal((int(n), 2)).astype(np.float32) for n in rng.integers(1, 4, 12)]
    pending_fixed = [client.async_infer("fixed", [_input("x", x, "FP32")]) for x in fixed]
    pending_sums = [client.async_infer("reduce", [_input("x", x, "FP32")]) for x in sums]
    for x, p in zip(fixed, pending_fixed, strict=True):
        np.testing.assert_array_equal(p.get_result().as_numpy("y"), x + 1)
    for x, p in zip(sums, pending_sums, strict=True):
        np.testing.assert_allclose(p.get_result().as_numpy("total"), [[x.sum()]], rtol=1e-5)


def test_bad_bodies_answer_400_or_413_and_the_worker_stays_ready(worker: WorkerProcess) -> None:
    with httpx.Client(base_url=worker.url) as http:
        infer = "/v2/models/scale/versions/1.0.0/infer"
        cases = [
            (http.post(infer, content=b"{nope"), 400, "invalid JSON"),
            (
                http.post(infer, content=b"{}", headers={"Inference-Header-Content-Length": "99"}),
                400,
                "larger",
            ),
            (http.post(infer, content=b"x" * (1024 * 1024 + 1)), 413, "limit of 1048576"),
        ]
        for response, status, text in cases:
            assert response.status_code == status
            assert text in response.json()["error"]
        assert http.get("/v2/health/ready").status_code == 200


def test_sigterm_under_load_finishes_in_flight_and_refuses_new(
    model_dir: Path, tmp_path: Path
) -> None:
    args = [
        "--model-file",
        f"slow@1.0.0={model_dir / 'scale-1.onnx'}",
        "--fault-delay-rate",
        "1",
        "--fault-delay-ms",
        "2000",
    ]
    proc = start_worker(args, tmp_path / "worker.log")
    client = triton.InferenceServerClient(proc.address, concurrency=8)
    x = np.ones((1, 4), dtype=np.float32)
    try:
        pending = [client.async_infer("slow", [_input("input", x, "FP32")]) for _ in range(6)]
        _wait_for_in_flight(proc, 6)
        proc.process.terminate()
        with httpx.Client(base_url=proc.url) as http:
            _wait_for_status(http, "/v2/health/ready", 503)
            refused = http.post("/v2/models/slow/infer", content=b"{}")
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert "draining" in refused.json()["error"]
        for p in pending:
            np.testing.assert_array_equal(p.get_result().as_numpy("output"), x * 2)
        assert proc.process.wait(timeout=30) == 0
    finally:
        client.close()
        proc.stop()


def _poll(check: object, what: str, attempts: int = 400) -> None:
    import time

    for _ in range(attempts):
        if check():  # type: ignore[operator]
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def _wait_for_in_flight(proc: WorkerProcess, count: int) -> None:
    def check() -> bool:
        text = httpx.get(f"{proc.url}/metrics").text
        return f"modelgate_worker_in_flight {float(count)}" in text

    _poll(check, f"{count} requests in flight")


def _wait_for_status(http: httpx.Client, path: str, status: int) -> None:
    _poll(lambda: http.get(path).status_code == status, f"{path} to answer {status}")


async def test_cli_loads_exact_versions_from_the_registry_and_announces(
    tmp_path: Path, model_dir: Path
) -> None:

    from registry.artifacts import ArtifactStore
    from registry.db import make_engine, make_sessionmaker, upgrade_to_head
    from registry.models import Worker

    url = f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}"
    await asyncio.to_thread(upgrade_to_head, url)
    engine = make_engine(url)
    store = ArtifactStore(tmp_path / "artifacts")
    scale = (model_dir / "scale-1.onnx").read_bytes()
    await publish(engine, store, "reg", {"1.0.0": (scale, "active", {}),
                                         "1.1.0+b.1": (scale, "active", {})})  # fmt: skip
    env = {"MODELGATE_DATABASE_URL": url, "MODELGATE_ARTIFACT_ROOT": str(store.root),
           "MODELGATE_WORKER_HEARTBEAT_INTERVAL_S": "0.2"}  # fmt: skip
    proc = await asyncio.to_thread(
        start_worker, ["--id", "w-reg", "--load", "reg@1.0.0", "--load", "reg@1.1.0"],
        tmp_path / "worker.log", env,
    )  # fmt: skip
    want = {("reg", "1.0.0"), ("reg", "1.1.0+b.1")}
    try:
        client = triton.InferenceServerClient(proc.address)
        x = np.ones((1, 4), dtype=np.float32)
        result = client.infer("reg", [_input("input", x, "FP32")], model_version="1.1.0")
        assert result.get_response()["model_version"] == "1.1.0+b.1"
        # The row is written by the next heartbeat after the last load (0.2 s here).
        seen: set[tuple[str, str]] = set()
        for _ in range(200):
            async with make_sessionmaker(engine)() as session:
                row = await session.get(Worker, "w-reg")
                seen = set() if row is None else {(v["model"], v["version"]) for v in row.loaded}
            if seen == want:
                break
            await asyncio.sleep(0.05)
        assert row is not None
        assert row.url == proc.url
        assert seen == want
        assert await asyncio.to_thread(proc.stop) == 0
        async with make_sessionmaker(engine)() as session:
            row = await session.get(Worker, "w-reg", populate_existing=True)
            assert row is not None
            assert row.state == "stopped"
    finally:
        proc.stop()
        await engine.dispose()


def test_cli_exits_non_zero_when_a_start_up_load_fails(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.support.net import ROOT

    done = subprocess.run(
        [sys.executable, "-m", "modelgate", "worker", "--port", "0", "--model-file",
         f"gone@1.0.0={tmp_path / 'missing.onnx'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert "does not exist" in done.stderr
