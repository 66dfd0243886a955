"""The gateway's gRPC data plane from the client down: tritonclient.grpc (aio) against the
real gRPC server, service, data plane, routing table, balancer and retry budget, with fake
gRPC workers on 127.0.0.1 as the only fakes (`tests.support.fake_grpc`)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import grpc
import numpy as np
import pytest
import semver
import tritonclient.grpc as triton
import tritonclient.grpc.aio as triton_aio
from tritonclient.utils import InferenceServerException

from gateway.balancing.balancer import Balancer, WorkerInfo
from gateway.balancing.retry import RetryBudget
from gateway.control.health import Health
from gateway.dataplane import GatewayDataPlane
from gateway.extensions import TritonExtensions
from gateway.forward import Forwarder
from gateway.grpc.channels import WorkerChannels
from gateway.grpc.server import GrpcServer
from gateway.grpc.service import InferenceService
from gateway.grpc.transport import GrpcTransport
from gateway.identity import Identity
from gateway.metrics import GatewayMetrics
from gateway.ratelimit import RateLimiter
from gateway.repository import FleetRepository
from gateway.routing import RoutingTable
from gateway.settings import GatewaySettings
from modelgate.core.proto import inference_pb2 as pb
from modelgate.core.proto.service import path
from registry.resolution import Arm, ModelView, Policy, Shadow, VersionInfo
from registry.snapshot import ActiveRollout, RegistrySnapshot
from tests.support.fake_grpc import FakeGrpcWorker, GrpcMode
from tests.support.fake_workers import FakeWorker, until

MODEL = "m"
VERSIONS = ("1.0.0", "1.1.0", "2.0.0")


@dataclass
class Gateway:
    plane: GatewayDataPlane
    fakes: dict[str, FakeGrpcWorker]
    log: list[str]
    target: str
    #: The fakes of the ``"http"`` workers (no gRPC endpoint), by id.
    http: dict[str, FakeWorker]

    @property
    def balancer(self) -> Balancer:
        return self.plane.table.balancer

    def failures(self, worker_id: str) -> int:
        row = next(r for r in self.balancer.snapshot() if r["id"] == worker_id)
        return int(row["consecutive_failures"])

    def client(self) -> triton_aio.InferenceServerClient:
        return triton_aio.InferenceServerClient(self.target)

    async def raw(
        self, request: pb.ModelInferRequest, metadata: Iterable[tuple[str, str]] = ()
    ) -> tuple[pb.ModelInferResponse, dict[str, str]]:
        """One ModelInfer call with a plain channel: the answer and its trailing metadata."""
        async with grpc.aio.insecure_channel(self.target) as channel:
            call = channel.unary_unary(
                path("ModelInfer"),
                request_serializer=pb.ModelInferRequest.SerializeToString,
                response_deserializer=pb.ModelInferResponse.FromString,
            )(request, metadata=tuple(metadata), timeout=10)
            response = await call
            trailing = {k: v for k, v in await call.trailing_metadata()}
        return response, trailing


Build = Callable[..., Awaitable[Gateway]]


def request(version: str = "", model: str = MODEL, value: float = 1.0) -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(model_name=model, model_version=version, id="r1")
    message.inputs.add(name="x", datatype="FP32", shape=[1, 4])
    message.raw_input_contents.append(np.full((1, 4), value, dtype=np.float32).tobytes())
    return message


def inputs(value: float = 1.0) -> list[triton.InferInput]:
    tensor = triton.InferInput("x", [1, 4], "FP32")
    tensor.set_data_from_numpy(np.full((1, 4), value, dtype=np.float32))
    return [tensor]


def snapshot(versions: Iterable[str], policy: Policy | None) -> RegistrySnapshot:
    infos = [VersionInfo(v, semver.Version.parse(v)) for v in versions]
    return RegistrySnapshot(1, {MODEL: ModelView.build(MODEL, infos, policy=policy)})


@pytest.fixture
async def build() -> AsyncIterator[Build]:
    """Makes gateways over fake gRPC workers ``{id: mode}`` (``"http"``: a worker without a
    gRPC endpoint), each serving ``serves[id]`` (default every version of `VERSIONS`);
    keyword arguments are `GatewaySettings`."""
    made: list[tuple[Gateway, GrpcServer, WorkerChannels, list[FakeWorker]]] = []

    async def make(
        modes: Mapping[str, GrpcMode],
        *,
        serves: Mapping[str, Iterable[str]] | None = None,
        policy: Policy | None = None,
        limiter: RateLimiter | None = None,
        **overrides: Any,
    ) -> Gateway:
        settings = GatewaySettings(**{"strategy": "round_robin", "slow_start_s": 0, **overrides})
        log: list[str] = []
        fakes: dict[str, FakeGrpcWorker] = {}
        http: list[FakeWorker] = []
        workers: dict[str, WorkerInfo] = {}
        for worker_id, mode in modes.items():
            ready = frozenset((MODEL, v) for v in (serves or {}).get(worker_id, VERSIONS))
            if mode == "http":
                http.append(await FakeWorker(worker_id, "ok", log).start())
                workers[worker_id] = WorkerInfo(worker_id, http[-1].url, ready, 0.0)
                continue
            fakes[worker_id] = await FakeGrpcWorker(worker_id, mode, log).start()
            workers[worker_id] = WorkerInfo(
                worker_id, "", ready, 0.0, grpc_url=fakes[worker_id].target
            )
        table = RoutingTable(Balancer(settings, rng=random.Random(7)), rng=lambda: 0.0)
        table.install(snapshot(VERSIONS, policy))
        table.workers_changed(workers)
        forwarder = Forwarder()
        await forwarder.start()
        budget = RetryBudget.from_settings(settings)
        plane = GatewayDataPlane(table, forwarder, budget, GatewayMetrics(), settings, limiter)
        channels = WorkerChannels(lambda: table.grpc_urls.values())
        identity = Identity(lambda: {}, required=settings.inference_auth == "required")
        transport = GrpcTransport(table, channels)
        service = InferenceService(
            plane,
            transport,
            Health(),
            identity,
            TritonExtensions(table, forwarder, settings),
            FleetRepository(table, forwarder, settings),
            stream_max_in_flight=4,
        )
        server = GrpcServer(service, "127.0.0.1", 0, settings.max_body_bytes)
        await server.start()
        gateway = Gateway(plane, fakes, log, f"127.0.0.1:{server.port}", {f.name: f for f in http})
        made.append((gateway, server, channels, http))
        return gateway

    yield make
    for gateway, server, channels, http in made:
        for fake in gateway.fakes.values():
            fake.release()
        await asyncio.gather(*gateway.plane.shadows.tasks, return_exceptions=True)
        await server.stop(0)
        await channels.close()
        await gateway.plane.forwarder.stop()
        for fake in gateway.fakes.values():
            await fake.stop()
        for worker in http:
            await worker.stop()


async def test_infer_names_the_concrete_version_and_passes_tensors_through(build: Build) -> None:
    gateway = await build({"w1": "ok"})
    client = gateway.client()
    try:
        result = await client.infer(MODEL, inputs(3.0), model_version="^1", request_id="abc")
    finally:
        await client.close()
    response = result.get_response()
    assert (response.model_name, response.model_version, response.id) == (MODEL, "1.1.0", "abc")
    assert result.as_numpy("x").tolist() == [[3.0] * 4]
    sent, _ = gateway.fakes["w1"].requests[0]
    assert (sent.model_name, sent.model_version) == (MODEL, "1.1.0")
    assert sent.raw_input_contents[0] == np.full((1, 4), 3.0, dtype=np.float32).tobytes()


async def test_metadata_routes_and_names_what_served(build: Build) -> None:
    gateway = await build({"w1": "ok"})
    response, trailing = await gateway.raw(
        request(), [("x-model-version", "~1.0"), ("x-request-id", "req-7")]
    )
    assert response.model_version == "1.0.0"
    assert trailing["x-model-version"] == "1.0.0"
    assert trailing["x-backend"] == "w1"
    assert trailing["x-route"]
    assert trailing["x-request-id"] == "req-7"
    assert gateway.fakes["w1"].requests[0][1]["x-request-id"] == "req-7"


async def test_route_key_keeps_a_client_on_one_arm(build: Build) -> None:
    policy = Policy([Arm("1.0.0", 50), Arm("1.1.0", 50)])
    gateway = await build({"w1": "ok"}, policy=policy)
    served = {}
    for key in (f"k{i}" for i in range(40)):
        versions = set()
        for _ in range(3):
            response, _ = await gateway.raw(request(), [("x-route-key", key)])
            versions.add(response.model_version)
        assert len(versions) == 1, key
        served[key] = versions.pop()
    assert set(served.values()) == {"1.0.0", "1.1.0"}


@pytest.mark.parametrize(
    ("version", "metadata", "code", "message"),
    [
        ("^7", (), grpc.StatusCode.NOT_FOUND, 'no version of "m" satisfies "^7"'),
        ("^1.x.3", (), grpc.StatusCode.INVALID_ARGUMENT, "^1.x.3"),
        (
            "1.0.0",
            (("x-model-version", "1.1.0"),),
            grpc.StatusCode.INVALID_ARGUMENT,
            'the version is given twice: "1.0.0" in model_version and "1.1.0" in x-model-version',
        ),
    ],
)
async def test_bad_references_are_the_clients_errors(
    build: Build, version: str, metadata: tuple[tuple[str, str], ...], code: Any, message: str
) -> None:
    gateway = await build({"w1": "ok"})
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gateway.raw(request(version), metadata)
    assert caught.value.code() == code
    assert message in (caught.value.details() or "")
    assert gateway.fakes["w1"].hits == 0


async def test_unknown_model_and_empty_name(build: Build) -> None:
    gateway = await build({"w1": "ok"})
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gateway.raw(request(model="mm"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert caught.value.details() == "model \"mm\" not found (did you mean 'm'?)"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gateway.raw(request(model=""))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "model_name is empty" in (caught.value.details() or "")
    assert gateway.fakes["w1"].hits == 0


async def test_workers_without_grpc_are_never_candidates(build: Build) -> None:
    gateway = await build({"w1": "ok", "h1": "http"})
    for _ in range(6):
        _, trailing = await gateway.raw(request("1.0.0"))
        assert trailing["x-backend"] == "w1"
    only_http = await build({"h1": "http"})
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await only_http.raw(request("1.0.0"))
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert caught.value.details() == (
        'no worker can serve "m" version 1.0.0: none of its ready workers serves gRPC'
    )
    assert dict(caught.value.trailing_metadata() or ())["retry-after"] == "1"


async def test_a_workers_client_error_passes_through_and_never_counts_against_it(
    build: Build,
) -> None:
    gateway = await build({"w1": grpc.StatusCode.INVALID_ARGUMENT, "w2": "ok"})
    gateway.fakes["w2"].mode = grpc.StatusCode.INVALID_ARGUMENT
    for _ in range(6):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await gateway.raw(request("1.0.0"))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert caught.value.details() in (
            "w1 answers INVALID_ARGUMENT",
            "w2 answers INVALID_ARGUMENT",
        )
    assert gateway.fakes["w1"].hits + gateway.fakes["w2"].hits == 6  # never retried
    assert gateway.failures("w1") == gateway.failures("w2") == 0


async def test_unavailable_and_refused_workers_are_retried_elsewhere(build: Build) -> None:
    gateway = await build({"w1": grpc.StatusCode.UNAVAILABLE, "w2": "ok"})
    gone = await FakeGrpcWorker("gone").start()
    await gone.stop()  # its port now refuses connections
    workers = {
        **{w: WorkerInfo(w, "", frozenset({(MODEL, "1.0.0")}), 0.0, grpc_url=f.target)
           for w, f in gateway.fakes.items()},
        "gone": WorkerInfo("gone", "", frozenset({(MODEL, "1.0.0")}), 0.0, grpc_url=gone.target),
    }  # fmt: skip
    gateway.plane.table.workers_changed(workers)
    for _ in range(6):
        _, trailing = await gateway.raw(request("1.0.0"))
        assert trailing["x-backend"] == "w2"
    assert gateway.fakes["w1"].hits >= 1
    assert gateway.failures("w1") + gateway.failures("gone") >= 2


async def test_an_internal_error_is_the_workers_answer_when_not_retried(build: Build) -> None:
    gateway = await build({"w1": grpc.StatusCode.INTERNAL})
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gateway.raw(request("1.0.0"))
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert caught.value.details() == "w1 answers INTERNAL"
    assert gateway.failures("w1") == 1


async def test_the_calls_deadline_is_the_clients_deadline(build: Build) -> None:
    gateway = await build({"w1": "hang"})
    client = gateway.client()
    try:
        with pytest.raises(InferenceServerException) as caught:
            await client.infer(MODEL, inputs(), model_version="1.0.0", client_timeout=0.3)
    finally:
        await client.close()
    assert caught.value.status() == "StatusCode.DEADLINE_EXCEEDED"
    (left,) = gateway.fakes["w1"].remaining
    assert left is not None
    assert left < 1.0  # the client's 0.3 s, not the attempt timeout of 10 s
    await until(lambda: gateway.plane.table.balancer.snapshot()[0]["in_flight"] == 0, "the end")
    assert gateway.failures("w1") == 0  # the client's short deadline is no verdict


async def test_an_attempt_on_a_worker_gone_unready_is_abandoned_and_retried(
    build: Build,
) -> None:
    gateway = await build({"w1": "hang", "w2": "hang"})
    call = asyncio.create_task(gateway.raw(request("1.0.0"), [("x-route-key", "a")]))
    await until(lambda: gateway.log != [], "the first attempt")
    first = gateway.log[0]
    gateway.fakes["w2" if first == "w1" else "w1"].mode = "ok"
    gateway.plane.worker_unready(first, MODEL, "1.0.0")
    response, trailing = await asyncio.wait_for(call, 10)
    assert trailing["x-backend"] != first
    assert response.model_version == "1.0.0"


async def test_rate_limits_and_auth_as_over_http(build: Build) -> None:
    limiter = RateLimiter(0.001, 1, breaker=None)
    gateway = await build({"w1": "ok"}, limiter=limiter)
    client = gateway.client()
    try:
        await client.infer(MODEL, inputs(), model_version="1.0.0")
        with pytest.raises(InferenceServerException) as limited:
            await client.infer(MODEL, inputs(), model_version="1.0.0")
    finally:
        await client.close()
    assert limited.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
    assert str(limited.value.message()).startswith("rate limit exceeded for address 127.0.0.1")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gateway.raw(request("1.0.0"))
    assert dict(caught.value.trailing_metadata() or ())["retry-after"] == "1000"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gateway.raw(request("1.0.0"), [("authorization", "Bearer nope")])
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert caught.value.details() == 'invalid or revoked bearer token "nope"'


async def test_a_stream_answers_each_request_as_it_completes(build: Build) -> None:
    gateway = await build({"w1": "ok"})
    fake = gateway.fakes["w1"]
    answers: asyncio.Queue[Any] = asyncio.Queue()

    async def requests() -> AsyncIterator[dict[str, Any]]:
        fake.mode = "hang"
        yield {"model_name": MODEL, "model_version": "1.0.0", "inputs": inputs(), "request_id": "1"}
        await until(lambda: fake.hits == 1, "the first request at the worker")
        fake.mode = "ok"
        yield {"model_name": MODEL, "model_version": "^9", "inputs": inputs(), "request_id": "2"}
        yield {"model_name": MODEL, "model_version": "~1.1", "inputs": inputs(), "request_id": "3"}
        await answers.get()
        await answers.get()
        fake.release()

    client = gateway.client()
    seen = []
    try:
        async for result, error in client.stream_infer(requests()):
            if error is not None:
                seen.append(("error", str(error)))
            else:
                response = result.get_response()
                seen.append((response.id, response.model_version))
            answers.put_nowait(seen[-1])
            if len(seen) == 3:
                break
    finally:
        await client.close()
    assert seen[2] == ("1", "1.0.0"), seen  # the first request, answered last
    assert ("3", "1.1.0") in seen
    assert any(kind == "error" and 'satisfies "^9"' in text for kind, text in seen)


async def test_health_metadata_config_statistics_and_the_repository(build: Build) -> None:
    gateway = await build({"w1": "ok", "h1": "http"}, serves={"h1": ["2.0.0"], "w1": ["1.0.0"]})
    config = {
        "name": "m",
        "max_batch_size": 8,
        "input": [{"name": "x", "data_type": "TYPE_FP32", "dims": [4], "format": "FORMAT_NONE"}],
        "dynamic_batching": {},
    }
    stats = {
        "model_stats": [
            {
                "name": "m",
                "version": "2.0.0",
                "inference_count": 5,
                "inference_stats": {"success": {"count": 5, "ns": 900}},
                "response_stats": {},
            }
        ]
    }
    gateway.http["h1"].answers.update({
        "/v2/models/m/versions/2.0.0/config": (200, config),
        "/v2/models/m/versions/2.0.0/stats": (200, stats),
    })  # fmt: skip
    client = gateway.client()
    try:
        assert await client.is_server_live()
        assert await client.is_server_ready()
        assert await client.is_model_ready(MODEL, "^1")
        assert not await client.is_model_ready(MODEL, "2.0.0")  # only over HTTP
        with pytest.raises(InferenceServerException, match="not found"):
            await client.is_model_ready("mm")
        server = await client.get_server_metadata()
        assert server.name == "modelgate"
        metadata = await client.get_model_metadata(MODEL, "~1.0")
        assert (metadata.name, list(metadata.versions)) == (MODEL, ["1.0.0"])
        assert gateway.fakes["w1"].lookups == [(MODEL, "1.0.0")]
        got = (await client.get_model_config(MODEL, "^2")).config
        assert (got.name, got.max_batch_size, got.input[0].data_type) == (MODEL, 8, 11)
        statistics = await client.get_inference_statistics(MODEL, "2.0.0")
        (entry,) = statistics.model_stats
        assert (entry.version, entry.inference_count) == ("2.0.0", 5)
        assert entry.inference_stats.success.ns == 900
        with pytest.raises(InferenceServerException) as refused:
            await client.get_model_repository_index()
        assert refused.value.status() == "StatusCode.UNAUTHENTICATED"
        assert "needs an admin token" in str(refused.value.message())
    finally:
        await client.close()


async def test_a_failed_candidate_attempt_is_retried_on_the_baseline(build: Build) -> None:
    policy = Policy((Arm("1.0.0", 0), Arm("2.0.0", 100)))
    gateway = await build(
        {"c": grpc.StatusCode.INTERNAL, "b": "ok"},
        serves={"c": ["2.0.0"], "b": ["1.0.0"]},
        policy=policy,
    )
    table = gateway.plane.table
    assert table.snapshot is not None
    rollouts = {MODEL: ActiveRollout(1, "2.0.0", "1.0.0", "running")}
    table.install(replace(table.snapshot, rollouts=rollouts))
    response, trailing = await gateway.raw(request())
    assert (response.model_version, trailing["x-backend"]) == ("1.0.0", "b")
    assert trailing["x-route"] == "baseline-retry:1.0.0"
    now = time.time()
    stats = await gateway.plane.outcomes.window(MODEL, "2.0.0", now - 60, now)
    assert (stats.requests, stats.errors) == (1, 1)  # the gate sees what the client did not


async def test_a_shadow_copy_goes_over_grpc(build: Build) -> None:
    policy = Policy((Arm("1.0.0", 1),), shadow=Shadow("2.0.0", 1.0))
    gateway = await build(
        {"p": "ok", "s": "ok"}, serves={"p": ["1.0.0"], "s": ["2.0.0"]}, policy=policy
    )
    response, _ = await gateway.raw(request())
    assert response.model_version == "1.0.0"
    await until(lambda: gateway.fakes["s"].hits == 1, "the shadow copy")
    assert gateway.fakes["s"].requests[0][0].model_version == "2.0.0"


async def test_a_stream_has_a_bounded_number_of_requests_in_flight(build: Build) -> None:
    gateway = await build({"w1": "hang"})  # the fixture's bound: 4 per stream
    fake = gateway.fakes["w1"]

    async def requests() -> AsyncIterator[dict[str, Any]]:
        for n in range(6):
            yield {"model_name": MODEL, "inputs": inputs(), "request_id": str(n)}

    client = gateway.client()
    ids = []
    try:
        stream = client.stream_infer(requests())
        first = asyncio.ensure_future(stream.__anext__())
        await until(lambda: fake.hits == 4, "four requests at the worker")
        assert not first.done()
        fake.release()
        ids.append((await first)[0].get_response().id)
        async for result, error in stream:
            assert error is None
            ids.append(result.get_response().id)
            if len(ids) == 6:
                break
    finally:
        await client.close()
    assert sorted(ids) == [str(n) for n in range(6)]
    assert fake.hits == 6


async def test_a_taken_port_fails_the_start(build: Build) -> None:
    gateway = await build({"w1": "ok"})
    port = int(gateway.target.rsplit(":", 1)[1])
    server = GrpcServer(gateway_service(gateway), "127.0.0.1", port, 1024)
    with pytest.raises(OSError, match=f"cannot serve gRPC on 127.0.0.1:{port}"):
        await server.start()


def gateway_service(gateway: Gateway) -> InferenceService:
    plane = gateway.plane
    table, forwarder, settings = plane.table, plane.forwarder, plane.settings
    return InferenceService(
        plane,
        GrpcTransport(table, WorkerChannels(lambda: ())),
        Health(),
        Identity(lambda: {}),
        TritonExtensions(table, forwarder, settings),
        FleetRepository(table, forwarder, settings),
    )


async def test_an_unexpected_error_is_internal_and_logged_not_shown(
    build: Build, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = await build({"w1": "ok"})

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret detail")

    monkeypatch.setattr(gateway.plane, "infer", broken)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gateway.raw(request())
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert caught.value.details() == "internal error; see the gateway log"
    assert "secret detail" in caplog.text
