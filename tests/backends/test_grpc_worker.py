"""A real worker process (``modelgate worker`` with gRPC on) driven by unmodified
tritonclient.grpc: sync, ``async_infer``, ``start_stream`` and the asyncio client, errors
with their codes and REST's messages, the control token, the announced ``grpc_url``, and a
drain on SIGTERM."""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import ml_dtypes
import numpy as np
import pytest
import tritonclient.grpc as tgrpc
import tritonclient.grpc.aio as tgrpc_aio
from google.protobuf.json_format import ParseDict
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from modelgate.core.proto import inference_pb2 as pb
from registry.db import upgrade_to_head
from tests.support.models import model_files
from tests.support.net import ROOT, free_port, poll_until
from tests.support.workers import WorkerProcess, start_worker

TOKEN = "grpc-control-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}


class GrpcWorker:
    """A worker process and its gRPC target."""

    def __init__(self, process: WorkerProcess, grpc_port: int, database: Path) -> None:
        self.process = process
        self.target = f"127.0.0.1:{grpc_port}"
        self.database = database


@pytest.fixture(scope="module")
def worker(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GrpcWorker]:
    """Every test model, gRPC on (set by the environment), announcing to a SQLite registry."""
    root = tmp_path_factory.mktemp("grpc-worker")
    database = root / "registry.db"
    upgrade_to_head(f"sqlite+aiosqlite:///{database}")
    grpc_port = free_port()
    env = {
        "MODELGATE_WORKER_GRPC_PORT": str(grpc_port),
        "MODELGATE_WORKER_CONTROL_TOKEN": TOKEN,
        "MODELGATE_WORKER_MAX_BODY_BYTES": str(1024 * 1024),
        "MODELGATE_WORKER_ANNOUNCE": "true",
        "MODELGATE_WORKER_HEARTBEAT_INTERVAL_S": "0.2",
        "MODELGATE_DATABASE_URL": f"sqlite+aiosqlite:///{database}",
    }
    args = [a for f in model_files(model_dir) for a in ("--model-file", f)]
    proc = start_worker([*args, "--id", "w-grpc", "--max-batch-size", "8"], root / "w.log", env)
    yield GrpcWorker(proc, grpc_port, database)
    assert proc.stop() == 0, proc.output()
    assert "Traceback" not in proc.output()


@pytest.fixture(scope="module")
def client(worker: GrpcWorker) -> Iterator[tgrpc.InferenceServerClient]:
    with tgrpc.InferenceServerClient(worker.target) as triton:
        yield triton


def _input(name: str, array: np.ndarray, datatype: str) -> tgrpc.InferInput:
    tensor = tgrpc.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return tensor


def _collect(done: queue.Queue[tuple[Any, Any]]) -> Any:
    """A tritonclient callback (it passes ``result`` and ``error`` by keyword)."""

    def callback(result: Any, error: Any) -> None:
        done.put((result, error))

    return callback


def _ours(message: Any, kind: Any) -> Any:
    """tritonclient's message as ours (the same wire format)."""
    return kind.FromString(message.SerializeToString())


def _error(call: Any, *args: Any, **kwargs: Any) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as caught:
        call(*args, **kwargs)
    return caught.value


def test_health_and_metadata(client: tgrpc.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    server = client.get_server_metadata()
    assert server.name == "modelgate-worker"
    assert "binary_tensor_data" in server.extensions
    meta = client.get_model_metadata("scale", as_json=True)
    assert meta["platform"] == "onnx_onnxv1"
    assert meta["versions"] == ["2.0.0+build.5", "1.0.0"]
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": ["-1", "4"]}]
    assert client.get_model_metadata("scale", "1.0.0").outputs[0].name == "output"
    for version in ("", "1.0.0", "2.0.0+build.5"):
        assert client.is_model_ready("scale", version)
    assert not client.is_model_ready("scale", "9.9.9")
    assert not client.is_model_ready("nope")


def test_infer_binary_fp32_with_request_id_and_concrete_version(
    client: tgrpc.InferenceServerClient,
) -> None:
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    result = client.infer("scale", [_input("input", x, "FP32")], model_version="1.0.0",
                          request_id="req-1")  # fmt: skip
    np.testing.assert_array_equal(result.as_numpy("output"), x * 2)
    response = result.get_response()
    assert (response.id, response.model_name, response.model_version) == ("req-1", "scale", "1.0.0")
    assert [len(raw) for raw in response.raw_output_contents] == [32]
    latest = client.infer("scale", [_input("input", x, "FP32")])
    assert latest.get_response().model_version == "2.0.0+build.5"
    np.testing.assert_array_equal(latest.as_numpy("output"), x * 3)


def test_fp16_int64_bool_bytes_round_trip_and_requested_outputs(
    client: tgrpc.InferenceServerClient,
) -> None:
    data = {
        "f16": (np.array([[0.5, -1, 2], [3, 4, 65504]], dtype=np.float16), "FP16"),
        "i64": (np.array([[2**40, -1, 0], [1, 2, 3]], dtype=np.int64), "INT64"),
        "flag": (np.array([[True, False, True], [False, False, True]]), "BOOL"),
        "text": (np.array([b"hello", "héllo".encode()], dtype=object), "BYTES"),
    }
    wanted = [tgrpc.InferRequestedOutput("text_out"), tgrpc.InferRequestedOutput("f16_out")]
    result = client.infer("kinds", [_input(n, a, t) for n, (a, t) in data.items()], outputs=wanted)
    assert [o.name for o in result.get_response().outputs] == ["text_out", "f16_out"]
    np.testing.assert_array_equal(result.as_numpy("text_out"), data["text"][0])
    np.testing.assert_array_equal(result.as_numpy("f16_out"), data["f16"][0])
    assert result.as_numpy("i64_out") is None
    everything = client.infer("kinds", [_input(n, a, t) for n, (a, t) in data.items()])
    for name, (array, _) in data.items():
        np.testing.assert_array_equal(everything.as_numpy(f"{name}_out"), array)


def test_bf16_round_trip(client: tgrpc.InferenceServerClient) -> None:
    x = np.array([[1.5, -2.0, 0.25], [3.0, 1024.0, -0.5]], dtype=ml_dtypes.bfloat16)
    result = client.infer("bf16", [_input("bf16", x, "BF16")])
    np.testing.assert_array_equal(
        result.as_numpy("bf16_out").astype(np.float32), x.astype(np.float32)
    )


def test_async_infer_answers_every_request(client: tgrpc.InferenceServerClient) -> None:
    rng = np.random.default_rng(3)
    requests = {f"a-{i}": rng.standard_normal((int(rng.integers(1, 4)), 4)).astype(np.float32)
                for i in range(16)}  # fmt: skip
    done: queue.Queue[tuple[Any, Any]] = queue.Queue()
    for rid, x in requests.items():
        client.async_infer("scale", [_input("input", x, "FP32")], _collect(done),
                           model_version="1.0.0", request_id=rid)  # fmt: skip
    for _ in requests:
        result, error = done.get(timeout=30)
        assert error is None
        rid = result.get_response().id
        np.testing.assert_array_equal(result.as_numpy("output"), requests[rid] * 2)


def test_a_stream_of_20_requests_is_answered_by_id_and_survives_an_error(
    worker: GrpcWorker,
) -> None:
    rng = np.random.default_rng(4)
    requests = {f"s-{i}": rng.standard_normal((1, 4)).astype(np.float32) for i in range(20)}
    done: queue.Queue[tuple[Any, Any]] = queue.Queue()
    with tgrpc.InferenceServerClient(worker.target) as client:
        client.start_stream(_collect(done))
        for index, (rid, x) in enumerate(requests.items()):
            client.async_stream_infer("scale", [_input("input", x, "FP32")], request_id=rid,
                                      model_version="1.0.0")  # fmt: skip
            if index == 10:
                client.async_stream_infer("nope", [_input("input", x, "FP32")], request_id="bad")
        answers = [done.get(timeout=30) for _ in range(len(requests) + 1)]
        client.stop_stream()
    errors = [e for _, e in answers if e is not None]
    assert [e.message() for e in errors] == [
        'model "nope" is not loaded on this worker (loaded: bf16@1.0.0, fixed@1.0.0, '
        "kinds@1.0.0, mlp@1.0.0, reduce@1.0.0, scale@1.0.0, scale@2.0.0+build.5)"
    ]
    results = {r.get_response().id: r for r, e in answers if e is None}
    assert set(results) == set(requests)
    for rid, x in requests.items():
        np.testing.assert_array_equal(results[rid].as_numpy("output"), x * 2)


async def test_asyncio_client_infers_and_streams(worker: GrpcWorker) -> None:
    x = np.ones((1, 4), dtype=np.float32)
    async with tgrpc_aio.InferenceServerClient(worker.target) as client:
        assert await client.is_server_ready()
        result = await client.infer("scale", [_input("input", x, "FP32")], model_version="1.0.0")
        np.testing.assert_array_equal(result.as_numpy("output"), x * 2)

        async def requests() -> Any:
            for i in range(5):
                yield {"model_name": "scale", "inputs": [_input("input", x * i, "FP32")],
                       "request_id": str(i)}  # fmt: skip

        seen = {}
        async for answer, error in client.stream_infer(requests()):
            assert error is None
            seen[answer.get_response().id] = answer.as_numpy("output")
            if len(seen) == 5:
                break
    assert {k: v.tolist() for k, v in seen.items()} == {str(i): [[3.0 * i] * 4] for i in range(5)}


def test_errors_carry_grpc_codes_and_the_rest_messages(
    client: tgrpc.InferenceServerClient,
) -> None:
    x = np.ones((1, 5), dtype=np.float32)
    missing = _error(client.infer, "nope", [_input("input", x, "FP32")])
    assert missing.status() == "StatusCode.NOT_FOUND"
    assert missing.message().startswith('model "nope" is not loaded on this worker (loaded: ')
    shape = _error(client.infer, "scale", [_input("input", x, "FP32")], model_version="1.0.0")
    assert shape.status() == "StatusCode.INVALID_ARGUMENT"
    assert 'input "input" has shape [1,5]' in shape.message()
    big = np.ones((65600, 4), dtype=np.float32)  # just over the 1 MiB body limit
    too_big = _error(client.infer, "scale", [_input("input", big, "FP32")])
    assert too_big.status() == "StatusCode.RESOURCE_EXHAUSTED"
    assert "is larger than the limit of 1048576 bytes" in too_big.message()
    assert client.is_server_ready()


def test_config_and_statistics_are_the_rest_routes_messages(
    worker: GrpcWorker, client: tgrpc.InferenceServerClient
) -> None:
    """Over gRPC, the same messages the REST routes write as JSON (one core)."""
    x = np.ones((1, 4), dtype=np.float32)
    client.infer("scale", [_input("input", x, "FP32")], model_version="1.0.0")
    with httpx.Client(base_url=worker.process.url) as http:
        config = client.get_model_config("scale", "1.0.0").config
        assert (config.name, config.max_batch_size) == ("scale", 8)
        rest = http.get("/v2/models/scale/versions/1.0.0/config").json()
        assert _ours(config, pb.ModelConfig) == ParseDict(rest, pb.ModelConfig())
        stats = client.get_inference_statistics("scale", "1.0.0")
        assert [(s.name, s.version) for s in stats.model_stats] == [("scale", "1.0.0")]
        assert stats.model_stats[0].inference_stats.success.count >= 1
        rest = http.get("/v2/models/scale/versions/1.0.0/stats").json()
        assert _ours(stats, pb.ModelStatisticsResponse) == ParseDict(
            rest, pb.ModelStatisticsResponse()
        )
        versions = client.get_inference_statistics("scale").model_stats
        assert [s.version for s in versions] == ["1.0.0", "2.0.0+build.5"]
        assert len(client.get_inference_statistics().model_stats) == 7
        missing = _error(client.get_model_config, "nope")
        assert missing.status() == "StatusCode.NOT_FOUND"


def test_only_exact_loaded_versions_are_served(client: tgrpc.InferenceServerClient) -> None:
    x = np.ones((1, 4), dtype=np.float32)
    ranged = _error(client.infer, "scale", [_input("input", x, "FP32")], model_version="^1.0")
    assert ranged.status() == "StatusCode.INVALID_ARGUMENT"
    assert ranged.message().startswith('"^1.0" is not an exact version of "scale"')
    both = _error(client.infer, "scale", [_input("input", x, "FP32")], model_version="1.0.0",
                  headers={"x-model-version": "2.0.0+build.5"})  # fmt: skip
    assert both.status() == "StatusCode.INVALID_ARGUMENT"
    assert 'X-Model-Version says "2.0.0+build.5"' in both.message()
    by_header = client.infer("scale", [_input("input", x, "FP32")],
                             headers={"x-model-version": "1.0.0"})  # fmt: skip
    assert by_header.get_response().model_version == "1.0.0"
    assert _error(client.get_model_config, "scale", "9.9.9").status() == (
        "StatusCode.INVALID_ARGUMENT"
    )


def test_repository_control_needs_the_token(
    worker: GrpcWorker, client: tgrpc.InferenceServerClient
) -> None:
    index = client.get_model_repository_index(as_json=True)["models"]
    assert {"name": "mlp", "version": "1.0.0", "state": "READY"} in index
    anonymous = _error(client.unload_model, "mlp")
    assert anonymous.status() == "StatusCode.UNAUTHENTICATED"
    assert "needs the worker's control token" in anonymous.message()
    wrong = _error(client.load_model, "mlp", headers={"authorization": "Bearer nope"})
    assert wrong.status() == "StatusCode.PERMISSION_DENIED"
    assert wrong.message() == "the bearer token is not this worker's control token"
    no_version = _error(client.load_model, "mlp", headers=AUTH)
    assert no_version.status() == "StatusCode.INVALID_ARGUMENT"
    assert 'load needs a version: set the "version" parameter' in no_version.message()

    client.unload_model("mlp", headers=AUTH)
    assert not client.is_model_ready("mlp")
    version = {"version": service_pb2.ModelRepositoryParameter(string_param="1.0.0")}
    with grpc.insecure_channel(worker.target) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        load = service_pb2.RepositoryModelLoadRequest(model_name="mlp", parameters=version)
        stub.RepositoryModelLoad(load, metadata=tuple(AUTH.items()))
        number = {"version": service_pb2.ModelRepositoryParameter(int64_param=1)}
        with pytest.raises(grpc.RpcError) as caught:
            stub.RepositoryModelLoad(
                service_pb2.RepositoryModelLoadRequest(model_name="mlp", parameters=number),
                metadata=tuple(AUTH.items()),
            )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == 'parameter "version" must be a string_param, not 1'
    assert client.is_model_ready("mlp", "1.0.0")


def test_the_announcement_names_the_grpc_target(worker: GrpcWorker) -> None:
    def announced() -> bool:
        with sqlite3.connect(worker.database) as db:
            row = db.execute("SELECT grpc_url FROM workers WHERE id = 'w-grpc'").fetchone()
        return row is not None and row[0] == worker.target

    poll_until(announced, f"the workers row to announce grpc_url {worker.target}", 30)


def test_sigterm_drains_grpc_calls_in_flight_and_refuses_new_ones(
    model_dir: Path, tmp_path: Path
) -> None:
    grpc_port = free_port()
    args = ["--model-file", f"slow@1.0.0={model_dir / 'scale-1.onnx'}", "--grpc-port",
            str(grpc_port), "--fault-delay-rate", "1", "--fault-delay-ms", "1500"]  # fmt: skip
    proc = start_worker(args, tmp_path / "worker.log")
    x = np.ones((1, 4), dtype=np.float32)
    done: queue.Queue[tuple[Any, Any]] = queue.Queue()
    try:
        with tgrpc.InferenceServerClient(f"127.0.0.1:{grpc_port}") as client:
            for _ in range(4):
                client.async_infer("slow", [_input("input", x, "FP32")],
                                   _collect(done))  # fmt: skip
            metric = "modelgate_worker_in_flight 4.0"
            poll_until(lambda: metric in httpx.get(f"{proc.url}/metrics").text, "4 in flight")
            proc.process.terminate()
            poll_until(lambda: not client.is_server_ready(), "gRPC ServerReady to say false")
            refused = _error(client.infer, "slow", [_input("input", x, "FP32")])
            assert refused.status() == "StatusCode.UNAVAILABLE"
            assert "draining" in refused.message()
            for _ in range(4):
                result, error = done.get(timeout=30)
                assert error is None
                np.testing.assert_array_equal(result.as_numpy("output"), x * 2)
        assert proc.process.wait(timeout=30) == 0
        assert "Traceback" not in proc.output()
    finally:
        proc.stop()


async def test_a_grpc_port_in_use_fails_the_start(model_dir: Path) -> None:
    """Even beside a server that allows SO_REUSEPORT (grpcio's default); 3 is uvicorn's
    exit code for a failed start-up."""
    server = grpc.aio.server()
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "modelgate", "worker", "--port", str(free_port()),
             "--grpc-port", str(port), "--model-file",
             f"scale@1.0.0={model_dir / 'scale-1.onnx'}"],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    finally:
        await server.stop(None)
    assert done.returncode == 3
    assert f"cannot serve gRPC on 127.0.0.1:{port}" in done.stderr
