"""External OIP servers at the gateway, against fake servers on 127.0.0.1 and a real gRPC
server: they join unready until a probe passes under their own names (HTTP or gRPC), the
data plane addresses them by those names, and their answers are renamed to ours."""

from __future__ import annotations

import asyncio
import gzip
import json
import random
from collections.abc import AsyncIterator

import grpc
import msgspec
import pytest
import semver

from gateway.balancing.balancer import Balancer, BalancerSettings, WorkerInfo
from gateway.balancing.probes import Prober
from gateway.balancing.retry import RetryBudget
from gateway.dataplane import GatewayDataPlane
from gateway.errors import NoReadyWorker
from gateway.external import rename_infer, rename_metadata
from gateway.forward import Forwarder, Reply
from gateway.metrics import GatewayMetrics
from gateway.routing import RoutingTable
from gateway.settings import GatewaySettings
from modelgate.core.proto import inference_pb2 as pb
from modelgate.core.proto.service import SERVICE
from registry.errors import NoReadyVersion
from registry.resolution import ModelView, VersionInfo
from registry.snapshot import RegistrySnapshot
from tests.support.fake_workers import FakeWorker
from tests.support.net import free_port

KEY = ("m", "1.0.0")
JSON_HEAD = [(b"content-type", b"application/json")]


def external(url: str, remote: tuple[str, str] = ("iris", "7"), **kw: object) -> WorkerInfo:
    return WorkerInfo("ext", url, frozenset({KEY}), 0.0, remote={KEY: remote}, external=True, **kw)  # type: ignore[arg-type]


# -- answers renamed -------------------------------------------------------------------


def answer(**extra: object) -> dict[str, object]:
    return {"model_name": "iris", "model_version": "7", "outputs": [], **extra}


def test_a_json_answer_names_our_model_and_version() -> None:
    reply = Reply(200, JSON_HEAD, json.dumps(answer(id="r1")).encode())
    renamed = rename_infer(reply, "m", "1.0.0")
    assert json.loads(renamed.body) == answer(id="r1") | {
        "model_name": "m",
        "model_version": "1.0.0",
    }
    assert renamed.headers == JSON_HEAD


def test_the_json_header_of_a_binary_answer_is_renamed_and_its_length_follows() -> None:
    head = json.dumps(answer()).encode()
    tensor = bytes(range(16))
    headers = [
        (b"content-type", b"application/octet-stream"),
        (b"inference-header-content-length", str(len(head)).encode()),
    ]
    renamed = rename_infer(Reply(200, headers, head + tensor), "m", "1.0.0")
    length = int(dict(renamed.headers)[b"inference-header-content-length"])
    assert renamed.body[length:] == tensor
    assert json.loads(renamed.body[:length])["model_name"] == "m"


def test_a_gzip_answer_is_renamed_and_passed_on_inflated() -> None:
    body = gzip.compress(json.dumps(answer()).encode())
    headers = [*JSON_HEAD, (b"content-encoding", b"gzip")]
    renamed = rename_infer(Reply(200, headers, body), "m", "1.0.0")
    assert json.loads(renamed.body)["model_version"] == "1.0.0"
    assert b"content-encoding" not in dict(renamed.headers)


def test_what_cannot_be_renamed_passes_unchanged() -> None:
    for reply in (
        Reply(400, JSON_HEAD, b'{"error": "bad tensor"}'),
        Reply(200, JSON_HEAD, b"[1, 2]"),
        Reply(200, JSON_HEAD, b"not json"),
        Reply(200, [*JSON_HEAD, (b"content-encoding", b"br")], b"\x0b\x02"),
        Reply(200, [(b"inference-header-content-length", b"99")], b"{}"),
    ):
        assert rename_infer(reply, "m", "1.0.0") is reply


def test_metadata_names_our_model_and_version() -> None:
    doc = {"name": "iris", "versions": ["7"], "platform": "onnx"}
    renamed = rename_metadata(Reply(200, JSON_HEAD, json.dumps(doc).encode()), "m", "1.0.0")
    assert json.loads(renamed.body) == {"name": "m", "versions": ["1.0.0"], "platform": "onnx"}


# -- joining unready, admitted by probes -------------------------------------------------


def test_an_external_server_joins_unready_and_the_503_names_it() -> None:
    balancer = Balancer(BalancerSettings(slow_start_s=0))
    balancer.update({"ext": external("http://127.0.0.1:1")})
    assert not balancer.has_ready(*KEY)
    with pytest.raises(
        NoReadyWorker, match=r'"m" version 1\.0\.0: probes find it not ready on ext'
    ):
        balancer.pick(*KEY)
    table = RoutingTable(balancer)
    info = [VersionInfo("1.0.0", semver.Version.parse("1.0.0"))]
    table.install(RegistrySnapshot(1, {"m": ModelView.build("m", info)}))
    with pytest.raises(NoReadyVersion, match=r"probes find it not ready: 1\.0\.0 on ext$"):
        table.route("m", "1.0.0", None)
    balancer.mark_ready("ext", *KEY)
    assert balancer.pick(*KEY) == "ext"
    # Serving one more version: the verdict on the first stays, the new one waits for a probe.
    more = WorkerInfo(
        "ext", "http://127.0.0.1:1", frozenset({KEY, ("m", "2.0.0")}), 0.0, external=True
    )
    balancer.update({"ext": more})
    assert balancer.has_ready(*KEY)
    assert not balancer.has_ready("m", "2.0.0")


async def test_the_first_passing_probe_admits_it_under_its_remote_names() -> None:
    fake = await FakeWorker("ext").start()
    balancer = Balancer(BalancerSettings(slow_start_s=0))
    workers = {"ext": external(fake.url, ("iris", ""))}
    balancer.update(workers)
    prober = Prober(balancer, timeout_s=1.0)
    prober.workers = workers
    await prober.start()
    try:
        await prober.probe_all()
        assert balancer.has_ready(*KEY)
        assert fake.requests[0][0] == "/v2/models/iris/ready"
        fake.mode = 503
        await prober.probe_all()
        assert not balancer.has_ready(*KEY)
        fake.mode = "ok"
        await prober.probe_all()
        assert balancer.has_ready(*KEY)
    finally:
        await prober.stop()
        await fake.stop()


async def test_a_server_down_when_registered_gets_no_traffic_until_it_answers() -> None:
    fake = FakeWorker("ext")
    balancer = Balancer(BalancerSettings(slow_start_s=0))
    port = free_port()
    workers = {"ext": external(f"http://127.0.0.1:{port}")}
    balancer.update(workers)
    prober = Prober(balancer, timeout_s=1.0)
    prober.workers = workers
    await prober.start()
    try:
        await prober.probe_all()
        assert not balancer.has_ready(*KEY)
        assert prober.failing == {("ext", *KEY)}
        fake._server = await asyncio.start_server(fake._serve, "127.0.0.1", port)
        await prober.probe_all()
        assert balancer.has_ready(*KEY)
        assert fake.requests[0][0] == "/v2/models/iris/versions/7/ready"
    finally:
        await prober.stop()
        await fake.stop()


class ReadyServer:
    """A real gRPC server answering only ``ModelReady``: ready for ``ready`` names."""

    def __init__(self, ready: set[tuple[str, str]]) -> None:
        self.ready = ready
        self.asked: list[tuple[str, str]] = []
        self.port = free_port()
        self.server = grpc.aio.server()

    async def start(self) -> ReadyServer:
        async def model_ready(request: pb.ModelReadyRequest, _: object) -> pb.ModelReadyResponse:
            self.asked.append((request.name, request.version))
            return pb.ModelReadyResponse(ready=(request.name, request.version) in self.ready)

        handler = grpc.unary_unary_rpc_method_handler(
            model_ready,
            request_deserializer=pb.ModelReadyRequest.FromString,
            response_serializer=pb.ModelReadyResponse.SerializeToString,
        )
        self.server.add_generic_rpc_handlers(
            [grpc.method_handlers_generic_handler(SERVICE, {"ModelReady": handler})]
        )
        self.server.add_insecure_port(f"127.0.0.1:{self.port}")
        await self.server.start()
        return self


@pytest.fixture
async def ready_server() -> AsyncIterator[ReadyServer]:
    made = await ReadyServer({("iris", "7")}).start()
    yield made
    await made.server.stop(None)


async def test_a_grpc_server_is_probed_with_model_ready(ready_server: ReadyServer) -> None:
    balancer = Balancer(BalancerSettings(slow_start_s=0))
    workers = {"ext": external("", grpc_url=f"127.0.0.1:{ready_server.port}")}
    balancer.update(workers)
    prober = Prober(balancer, timeout_s=2.0)
    prober.workers = workers
    await prober.start()
    try:
        await prober.probe_all()
        assert balancer.has_ready(*KEY)
        assert ready_server.asked == [("iris", "7")]
        ready_server.ready.clear()
        await prober.probe_all()
        assert not balancer.has_ready(*KEY)
        await ready_server.server.stop(None)
        await prober.probe_all()
        assert prober.failing == {("ext", *KEY)}
    finally:
        await prober.stop()


# -- the data plane ----------------------------------------------------------------------


@pytest.fixture
async def plane() -> AsyncIterator[tuple[GatewayDataPlane, FakeWorker, FakeWorker]]:
    ours, theirs = await FakeWorker("ours").start(), await FakeWorker("ext").start()
    settings = GatewaySettings(strategy="round_robin", slow_start_s=0)
    table = RoutingTable(Balancer(settings, rng=random.Random(7)), rng=lambda: 0.0)
    info = [VersionInfo("1.0.0", semver.Version.parse("1.0.0"))]
    table.install(RegistrySnapshot(1, {"m": ModelView.build("m", info)}))
    table.workers_changed(
        {"ours": WorkerInfo("ours", ours.url, frozenset({KEY}), 0.0), "ext": external(theirs.url)}
    )
    table.balancer.mark_ready("ext", *KEY)
    forwarder = Forwarder()
    await forwarder.start()
    made = GatewayDataPlane(
        table, forwarder, RetryBudget.from_settings(settings), GatewayMetrics(), settings
    )
    yield made, ours, theirs
    await forwarder.stop()
    await ours.stop()
    await theirs.stop()


async def test_an_external_server_is_addressed_and_answers_by_our_names(
    plane: tuple[GatewayDataPlane, FakeWorker, FakeWorker],
) -> None:
    gateway, ours, theirs = plane
    body = b'{"inputs": []}'
    for _ in range(2):  # round robin: one request each
        reply = await gateway.infer("m", None, {"content-type": "application/json"}, body)
        doc = msgspec.json.decode(reply.body)
        backend = dict(reply.headers)[b"x-backend"].decode()
        assert (doc["model_name"], doc["model_version"], doc["id"]) == ("m", "1.0.0", backend)
    assert theirs.requests[0][0] == "/v2/models/iris/versions/7/infer"
    assert ours.requests[0][0] == "/v2/models/m/versions/1.0.0/infer"
    reply, _, worker = await gateway.get("m", "1.0.0", "")
    assert worker == "ext"  # round robin's turn
    assert theirs.requests[-1][0] == "/v2/models/iris/versions/7"
