"""Acceptance 1 over gRPC: a real gateway (``serve --grpc-port``), two worker processes
serving gRPC, PostgreSQL and Redis, driven by unmodified tritonclient.grpc (sync,
``async_infer``, ``start_stream``, aio) and plain grpc.aio calls; the routing cases of
`tests.e2e.test_gateway_routing` counted over gRPC.
"""

from __future__ import annotations

import asyncio
import collections
import queue
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
import tritonclient.grpc.aio as triton_aio
from tritonclient.utils import InferenceServerException

from modelgate.core.proto import inference_pb2 as pb
from tests.e2e.test_gateway_routing import SCALES, _forget, set_policy
from tests.support.fleet import Fleet, wait_until
from tests.support.isolation import REDIS_URL, scoped
from tests.support.traffic import GrpcAnswer, GrpcLoop

LOADS = [f"resnet@{v}" for v in ("1.0.0", "1.1.0", "2.0.0", "2.1.0-beta.1")]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, pg_database_factory: Any) -> Iterator[Fleet]:
    keys = scoped("grpc")
    deployment = Fleet(
        tmp_path_factory.mktemp("fleet"), pg_database_factory(), REDIS_URL, keys.prefix
    )
    try:
        deployment.start_gateway(grpc=True)
        deployment.publish("resnet", SCALES)
        deployment.publish("extra", {"1.0.0": 3.0})  # on no worker until a test loads it
        deployment.start_worker("w1", LOADS, grpc=True)
        deployment.start_worker("w2", LOADS, grpc=True)
        for version in ("1.0.0", "1.1.0", "2.0.0"):
            deployment.wait_serving("resnet", version, workers=2)
        client = triton.InferenceServerClient(deployment.gateway_grpc)
        try:
            wait_until(lambda: client.is_model_ready("resnet", "1.0.0"), "gRPC readiness")
        finally:
            client.close()
        yield deployment
    finally:
        deployment.stop()
        asyncio.run(_forget(keys.prefix))


def tensors(value: float = 1.0) -> list[triton.InferInput]:
    tensor = triton.InferInput("input", [1, 4], "FP32")
    tensor.set_data_from_numpy(np.full((1, 4), value, dtype=np.float32))
    return [tensor]


def served(result: triton.InferResult) -> tuple[str, float]:
    """The concrete version and the model's scale (the output for an input of ones)."""
    return result.get_response().model_version, float(result.as_numpy("output")[0, 0])


def request(value: float = 1.0) -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(model_name="resnet")
    message.inputs.add(name="input", datatype="FP32", shape=[1, 4])
    message.raw_input_contents.append(np.full((1, 4), value, dtype=np.float32).tobytes())
    return message


def code_of(error: InferenceServerException) -> str:
    return str(error.status()).removeprefix("StatusCode.")


def test_tritonclient_grpc_through_the_gateway(fleet: Fleet) -> None:
    client = triton.InferenceServerClient(fleet.gateway_grpc)
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.get_server_metadata().name == "modelgate"
        assert client.is_model_ready("resnet", "^1.0")
        assert not client.is_model_ready("resnet", "1.2.0-rc.1")  # published, on no worker
        metadata = client.get_model_metadata("resnet", "~1.1")
        assert (metadata.name, list(metadata.versions)) == ("resnet", ["1.1.0"])
        assert metadata.inputs[0].name == "input"
        config = client.get_model_config("resnet", "^1.0").config
        assert (config.name, config.input[0].name) == ("resnet", "input")
        cases = {
            "1.1.0": "1.1.0",
            "^1.0": "1.1.0",
            "~1.0.0": "1.0.0",
            "1.x": "1.1.0",
            "stable": "2.0.0",
            "latest": "2.1.0-beta.1",
        }
        for reference, expected in cases.items():
            result = client.infer("resnet", tensors(), model_version=reference)
            assert served(result) == (expected, SCALES[expected]), reference
            by_header = client.infer("resnet", tensors(), headers={"x-model-version": reference})
            assert served(by_header) == (expected, SCALES[expected]), reference
        ranged = client.infer("resnet", tensors(), headers={"x-model-version": ">=1.0.0 <2 || 3.x"})
        assert served(ranged)[0] == "1.1.0"
        with fleet.admin() as admin:
            admin.put(
                "/admin/v1/models/resnet/aliases/prod", json={"version": "1.0.0"}
            ).raise_for_status()
        wait_until(
            lambda: served(client.infer("resnet", tensors(), model_version="prod"))[0] == "1.0.0",
            "alias prod to reach the gateway",
        )
    finally:
        client.close()


@pytest.mark.parametrize(
    ("model", "version", "headers", "code", "message"),
    [
        ("resnett", "", {}, "NOT_FOUND", "model \"resnett\" not found (did you mean 'resnet'?)"),
        ("resnet", "^9", {}, "NOT_FOUND", "(have 2.1.0-beta.1, 2.0.0, 1.2.0-rc.1, 1.1.0, 1.0.0)"),
        ("resnet", "^1.x.3", {}, "INVALID_ARGUMENT", "^1.x.3"),
        ("resnet", "1.0.0", {"x-model-version": "1.1.0"}, "INVALID_ARGUMENT", "given twice"),
        ("resnet", "1.2.0-rc.1", {}, "UNAVAILABLE", "has no ready worker"),
        ("resnet", "", {"x-request-timeout-ms": "0"}, "DEADLINE_EXCEEDED", "deadline had passed"),
        ("resnet", "", {"authorization": "Bearer nope"}, "UNAUTHENTICATED", '"nope"'),
    ],
)
def test_errors_have_the_right_codes_and_https_messages(
    fleet: Fleet, model: str, version: str, headers: dict[str, str], code: str, message: str
) -> None:
    client = triton.InferenceServerClient(fleet.gateway_grpc)
    try:
        with pytest.raises(InferenceServerException) as caught:
            client.infer(model, tensors(), model_version=version, headers=headers)
    finally:
        client.close()
    assert code_of(caught.value) == code
    assert message in str(caught.value.message())


def test_binary_tensors_async_infer_and_a_stream(fleet: Fleet) -> None:
    client = triton.InferenceServerClient(fleet.gateway_grpc)
    answers: queue.Queue[tuple[Any, Any]] = queue.Queue()
    try:
        data = np.arange(8, dtype=np.float32).reshape(2, 4)
        tensor = triton.InferInput("input", [2, 4], "FP32")
        tensor.set_data_from_numpy(data)
        result = client.infer("resnet", [tensor], model_version="2.0.0")
        assert result.as_numpy("output").tolist() == (data * SCALES["2.0.0"]).tolist()

        client.async_infer(
            "resnet",
            tensors(),
            lambda result, error: answers.put((result, error)),
            model_version="~1.0",
        )
        result, error = answers.get(timeout=30)
        assert error is None
        assert served(result) == ("1.0.0", SCALES["1.0.0"])

        client.start_stream(lambda result, error: answers.put((result, error)))
        references = ["1.0.0", "^1", "stable", "^9", "latest", "~1.0"]
        for n, reference in enumerate(references):
            client.async_stream_infer(
                "resnet", tensors(), model_version=reference, request_id=str(n)
            )
        got = [answers.get(timeout=30) for _ in references]
        client.stop_stream()
    finally:
        client.close()
    by_id = {r.get_response().id: served(r)[0] for r, e in got if e is None}
    assert by_id == {"0": "1.0.0", "1": "1.1.0", "2": "2.0.0", "4": "2.1.0-beta.1", "5": "1.0.0"}
    errors = [str(e) for r, e in got if e is not None]
    assert len(errors) == 1
    assert 'no version of "resnet" satisfies "^9"' in errors[0]


async def test_the_aio_client(fleet: Fleet) -> None:
    client = triton_aio.InferenceServerClient(fleet.gateway_grpc)
    try:
        assert await client.is_server_ready()
        result = await client.infer("resnet", tensors(2.0), model_version="^2.0.0")
        assert served(result) == ("2.0.0", 2.0 * SCALES["2.0.0"])
    finally:
        await client.close()


async def calls(fleet: Fleet, count: int, key: Any = None) -> list[GrpcAnswer]:
    """``count`` ModelInfer calls, 16 at a time (``key(i)``: the i-th's x-route-key)."""
    semaphore = asyncio.Semaphore(16)
    async with grpc.aio.insecure_channel(fleet.gateway_grpc) as channel:
        infer = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=pb.ModelInferResponse.FromString,
        )

        async def one(i: int) -> GrpcAnswer:
            metadata = (("x-route-key", key(i)),) if key else ()
            async with semaphore:
                call = infer(request(), metadata=metadata, timeout=30)
                response = await call
                trailing = await call.trailing_metadata()
            return GrpcAnswer(response, {k: v for k, v in trailing if isinstance(v, str)})

        return await asyncio.gather(*(one(i) for i in range(count)))


async def test_weighted_split_and_sticky_keys(fleet: Fleet) -> None:
    await asyncio.to_thread(
        set_policy,
        fleet,
        {"arms": [{"version": "1.0.0", "weight": 90}, {"version": "1.1.0", "weight": 10}]},
    )
    answers = await calls(fleet, 2000)
    share = collections.Counter(a.version for a in answers)
    assert abs(share["1.0.0"] / 2000 - 0.90) <= 0.03, share
    assert all(a.metadata["x-model-version"] == a.version for a in answers)
    assert {a.backend for a in answers} == {"w1", "w2"}

    keys = [uuid.uuid4().hex for _ in range(100)]
    first = await calls(fleet, 100, key=lambda i: keys[i])
    for _ in range(3):
        again = await calls(fleet, 100, key=lambda i: keys[i])
        assert [a.version for a in again] == [a.version for a in first]


async def test_a_sigkilled_worker_fails_no_grpc_request(fleet: Fleet) -> None:
    async with GrpcLoop(fleet.gateway_grpc, request, concurrency=8) as loop:
        await loop.until(200)
        await asyncio.to_thread(fleet.kill_worker, "w1")
        mark = loop.mark()
        await loop.more(300)
        assert loop.failures() == []
        after = [a for a in loop.ordered()[mark + 50 :] if isinstance(a, GrpcAnswer)]
        assert after
        assert {a.backend for a in after} == {"w2"}
    assert loop.failures() == []


def test_statistics_and_the_repository_calls(fleet: Fleet) -> None:
    client = triton.InferenceServerClient(fleet.gateway_grpc)
    admin = {"authorization": f"Bearer {fleet.token}"}
    try:
        client.infer("resnet", tensors(), model_version="1.0.0")
        (entry,) = client.get_inference_statistics("resnet", "~1.0").model_stats
        assert (entry.name, entry.version) == ("resnet", "1.0.0")
        assert entry.inference_count >= 1
        assert entry.inference_stats.success.count >= 1
        every = {(s.name, s.version) for s in client.get_inference_statistics().model_stats}
        assert {("resnet", v) for v in ("1.0.0", "1.1.0", "2.0.0")} <= every

        index = client.get_model_repository_index(headers=admin).models
        states = {(m.name, m.version): m.state for m in index}
        assert states[("resnet", "1.0.0")] == "READY"
        assert states[("extra", "1.0.0")] == "UNAVAILABLE"
        with pytest.raises(InferenceServerException) as refused:
            client.get_model_repository_index()
        assert code_of(refused.value) == "UNAUTHENTICATED"
        assert "needs an admin token" in str(refused.value.message())

        client.load_model("extra", headers=admin)
        result = client.infer("extra", tensors())
        assert served(result) == ("1.0.0", 3.0)
        client.unload_model("extra", headers=admin)
        assert not client.is_model_ready("extra")
    finally:
        client.close()
