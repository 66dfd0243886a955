"""The gateway's ``inference.GRPCInferenceService``: each call parses only what routing
needs, then calls the same core as HTTP (`GatewayDataPlane`, `RoutingTable`).

Contract (DESIGN.md, "gRPC (data plane)"):

* ``ModelInfer`` receives the request's bytes undecoded; `wire.routing` reads
  ``model_name`` and ``model_version`` (any reference: exact, alias, ``stable``,
  ``latest``, a range). The metadata ``x-model-version`` carries one too (a different
  version in both is INVALID_ARGUMENT, as HTTP's 400), ``x-route-key`` (or the policy's
  sticky header) keeps a client on one arm, ``authorization`` identifies it
  (`gateway.identity`, the same 401/403 and rate limits), ``x-request-id`` (or a new one,
  `gateway.inbound`) is passed to the worker and echoed in the initial and trailing
  metadata, ``traceparent`` continued (`modelgate.core.tracing`). The call's deadline is
  the client's deadline.
* The answer is the worker's ``ModelInferResponse`` bytes (its ``model_version`` is the
  concrete version); the trailing metadata names what served it: ``x-model-version``,
  ``x-backend``, ``x-route``. The gateway's own errors are the HTTP errors' messages with
  the gRPC code of their status (`modelgate.core.proto.status.grpc_code`), ``retry-after``
  in the trailing metadata where HTTP sends ``Retry-After``; a worker's error keeps its
  code and details.
* ``ModelStreamInfer``: every request of a stream is served on its own, concurrently (at
  most ``grpc_stream_max_in_flight`` at once per stream), and answered as it completes;
  an error is a response with ``error_message`` and the stream goes on. A stream is
  identified once, from its metadata; its deadline bounds every request in it.
* ``ModelReady`` is true when the reference resolves to a version with a ready worker that
  serves gRPC; ``ModelMetadata`` is a worker's answer for the resolved version over gRPC,
  renamed to the gateway's names. ``ModelConfig``, ``ModelStatistics`` and the repository
  calls are `gateway.grpc.extensions`, over the cores HTTP's routes use.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, NoReturn, TypeAlias

import grpc

from gateway.control.health import Health
from gateway.dataplane import GatewayDataPlane
from gateway.errors import BadGatewayRequest
from gateway.extensions import TritonExtensions
from gateway.forward import Reply
from gateway.grpc import wire
from gateway.grpc.peers import caller
from gateway.grpc.transport import GrpcTransport
from gateway.identity import Caller, Identity
from gateway.inbound import Inbound
from gateway.oip import SERVER
from gateway.repository import FleetRepository
from modelgate.core.errors import ModelgateError
from modelgate.core.proto import inference_pb2 as pb
from modelgate.core.proto.status import grpc_code

__all__ = ["InferenceService"]

log = logging.getLogger("modelgate.gateway")
#: A call's ``grpc.aio.ServicerContext`` (grpcio ships no type hints).
Context: TypeAlias = Any
#: The reply headers that go back as trailing metadata.
NAMED = frozenset({b"x-model-version", b"x-backend", b"x-route"})
INTERNAL = "internal error; see the gateway log"
NAME, VERSION, EXTENSIONS = str(SERVER["name"]), str(SERVER["version"]), SERVER["extensions"]


async def abort(context: Context, exc: ModelgateError, request_id: str | None = None) -> NoReturn:
    """End the call with ``exc``'s message and the gRPC code of its status (and the
    request id in the trailing metadata)."""
    trailing = [(k.lower(), v) for k, v in (exc.headers or {}).items()]
    if request_id is not None:
        trailing.append(("x-request-id", request_id))
    await context.abort(grpc_code(exc.status_code), exc.message, trailing_metadata=tuple(trailing))
    raise AssertionError("unreachable: context.abort raises")


def reference(field: str, metadata: dict[str, str]) -> str | None:
    """The version reference of a request: its ``model_version`` or ``x-model-version``."""
    header = metadata.get("x-model-version")
    if header is not None and field and header.strip() != field:
        raise BadGatewayRequest(
            f'the version is given twice: "{field}" in model_version and "{header}" in '
            f"x-model-version; send one"
        )
    return field or header or None


async def render(reply: Reply, request_id: str | None, context: Context) -> bytes:
    """A worker's reply as the call's answer, or its error; `NAMED` headers and the
    request id (of an inference call) go back as trailing metadata, the request id in the
    initial metadata too."""
    trailing = [(k.decode(), v.decode()) for k, v in reply.headers if k in NAMED]
    if request_id is not None:
        trailing.append(("x-request-id", request_id))
    if reply.status == 200:
        if request_id is not None:
            await context.send_initial_metadata((("x-request-id", request_id),))
        context.set_trailing_metadata(trailing)
        return reply.body
    await context.abort(_code(reply), reply.body.decode(errors="replace"), tuple(trailing))
    raise AssertionError("unreachable: context.abort raises")


def _text(metadata: Sequence[tuple[str, str | bytes]]) -> dict[str, str]:
    return {k: v for k, v in metadata if isinstance(v, str)}


class InferenceService:
    """The calls, registered by `gateway.grpc.server.GrpcServer`."""

    def __init__(
        self,
        plane: GatewayDataPlane,
        transport: GrpcTransport,
        health: Health,
        identity: Identity,
        extensions: TritonExtensions,
        repository: FleetRepository,
        stream_max_in_flight: int = 64,
    ) -> None:
        self.plane = plane
        self.transport = transport
        self.health = health
        self.identity = identity
        #: The cores of Triton's extensions (`gateway.grpc.extensions` serves them).
        self.extensions = extensions
        self.repository = repository
        self.stream_max_in_flight = stream_max_in_flight

    # -- inference -----------------------------------------------------------------------

    async def infer(
        self,
        request: bytes,
        metadata: dict[str, str],
        client: Caller,
        timeout_s: float | None,
        inbound: Inbound,
    ) -> tuple[Reply, wire.Routing]:
        """One request through the data plane; raises `ModelgateError`, counted and logged."""
        fields: wire.Routing | None = None
        try:
            fields = wire.routing(request)
            if not fields.model:
                raise BadGatewayRequest("model_name is empty: name the model to infer with")
            version = reference(fields.version, metadata)
        except ModelgateError as exc:
            self.plane.refused(fields.model if fields is not None else None, exc, inbound)
            raise
        reply = await self.plane.infer(
            fields.model, version, metadata, request, client, self.transport, timeout_s, inbound
        )
        return reply, fields

    async def model_infer(self, request: bytes, context: Context) -> bytes:
        raw = context.invocation_metadata() or ()
        metadata = _text(raw)
        inbound = Inbound.of(metadata, "grpc")
        try:
            try:
                client = caller(self.identity, raw, context.peer())
            except ModelgateError as exc:
                self.plane.refused(_model_of(request), exc, inbound)
                raise
            reply, _ = await self.infer(
                request, metadata, client, context.time_remaining(), inbound
            )
        except ModelgateError as exc:
            await abort(context, exc, inbound.request_id)
        return await render(reply, inbound.request_id, context)

    async def model_stream_infer(
        self, requests: AsyncIterator[bytes], context: Context
    ) -> AsyncIterator[bytes]:
        raw = context.invocation_metadata() or ()
        metadata = _text(raw)
        try:
            client = caller(self.identity, raw, context.peer())
        except ModelgateError as exc:
            inbound = Inbound.of(metadata, "grpc")
            self.plane.refused(None, exc, inbound)
            await abort(context, exc, inbound.request_id)
        remaining = context.time_remaining()
        deadline = None if remaining is None else time.monotonic() + remaining
        answers: asyncio.Queue[bytes | None] = asyncio.Queue()
        slots = asyncio.Semaphore(self.stream_max_in_flight)
        pending: set[asyncio.Task[None]] = set()

        async def one(request: bytes) -> None:
            try:
                left = None if deadline is None else deadline - time.monotonic()
                answers.put_nowait(await self._stream_one(request, metadata, client, left))
            finally:
                slots.release()

        async def read() -> None:
            try:
                async for request in requests:
                    await slots.acquire()
                    task = asyncio.create_task(one(request))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                if pending:
                    await asyncio.wait(set(pending))
            finally:
                answers.put_nowait(None)

        reader = asyncio.create_task(read())
        try:
            while (answer := await answers.get()) is not None:
                yield answer
            await reader
        finally:
            for task in (reader, *pending):
                task.cancel()

    async def _stream_one(
        self, request: bytes, metadata: dict[str, str], client: Caller, timeout_s: float | None
    ) -> bytes:
        """One request of a stream, answered by a response or an ``error_message``."""
        model = rid = ""
        try:
            inbound = Inbound.of(metadata, "grpc")
            reply, fields = await self.infer(request, metadata, client, timeout_s, inbound)
            model, rid = fields.model, fields.id
            if reply.status == 200:
                return wire.stream_reply(reply.body)
            message = reply.body.decode(errors="replace")
        except ModelgateError as exc:
            message = exc.message
        except Exception:
            log.exception("unhandled error on a ModelStreamInfer request")
            message = INTERNAL
        if not model:
            parsed = _fields_of(request)
            model, rid = (parsed.model, parsed.id) if parsed is not None else ("", "")
        return wire.stream_error(message or INTERNAL, model, rid)

    # -- health and metadata ---------------------------------------------------------------

    async def server_live(self, request: pb.ServerLiveRequest, context: Context) -> Any:
        return pb.ServerLiveResponse(live=True)

    async def server_ready(self, request: pb.ServerReadyRequest, context: Context) -> Any:
        return pb.ServerReadyResponse(ready=self.plane.table.ready)

    async def server_metadata(self, request: pb.ServerMetadataRequest, context: Context) -> Any:
        return pb.ServerMetadataResponse(name=NAME, version=VERSION, extensions=EXTENSIONS)


def _fields_of(request: bytes) -> wire.Routing | None:
    try:
        return wire.routing(request)
    except ModelgateError:
        return None


def _model_of(request: bytes) -> str | None:
    """The model a request names, for counting its refusal (None: it names none)."""
    fields = _fields_of(request)
    return fields.model or None if fields is not None else None


def _code(reply: Reply) -> grpc.StatusCode:
    """A worker's own gRPC code when it sent one, else the code of the reply's status."""
    for name, value in reply.headers:
        if name == b"grpc-status":
            number = int(value)
            return next((c for c in grpc.StatusCode if c.value[0] == number), grpc_code(500))
    return grpc_code(reply.status)
