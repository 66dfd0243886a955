"""The data plane's gRPC transport: one attempt is one ``ModelInfer`` call on the worker's
gRPC endpoint (`RoutingTable.grpc_urls`), with the client's request bytes renamed to the
worker's concrete names (`wire.renamed`), never decoded.

A worker's answer becomes a `Reply` the core judges as it judges HTTP's: the gRPC code
mapped to an HTTP status (`modelgate.core.proto.status.http_status`), the worker's details
as the body and its code in a ``grpc-status`` header (so the client gets the very code
back). Translated here, once: ``UNAVAILABLE`` → `BackendUnavailable` (``connect-failure``
when the channel could not connect, else ``unavailable``: the worker said so, or the
connection dropped), ``DEADLINE_EXCEEDED`` → `DeadlineExceeded`, an abandoned attempt →
`AttemptAborted`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import grpc

from gateway.errors import AttemptAborted, BackendUnavailable, DeadlineExceeded
from gateway.forward import Abort, Reply
from gateway.grpc import wire
from gateway.grpc.channels import WorkerChannels
from gateway.routing import RoutingTable
from modelgate.core.proto.status import http_status

__all__ = ["GrpcTransport"]

#: How gRPC's C core words a channel that could not connect (refused, unreachable, DNS).
_NOT_CONNECTED = "failed to connect"


class GrpcTransport:
    """Sends attempts over gRPC; `unary` makes the other calls a worker answers."""

    name: str = "gRPC"
    #: (The data plane adds ``x-request-id`` and ``traceparent`` itself.)
    forwarded: tuple[str, ...] = ()

    def __init__(self, table: RoutingTable, channels: WorkerChannels) -> None:
        self.table = table
        self.channels = channels

    @property
    def targets(self) -> Mapping[str, str]:
        return self.table.grpc_urls

    @property
    def unreachable(self) -> frozenset[str]:
        return self.table.without_grpc

    async def send(
        self,
        worker: str,
        model: str,
        version: str,
        headers: Mapping[str, str],
        body: bytes,
        timeout_s: float,
        abort: Abort | None = None,
    ) -> Reply:
        target = self.table.grpc_urls[worker]
        remote = self.table.remote(worker, model, version)
        request = wire.renamed(body, wire.routing(body), *remote)
        if abort is not None and abort.reason is not None:
            raise AttemptAborted(f"gave up on worker {worker} at {target}: {abort.reason}")
        call = self.channels.calls(target).infer(
            request, timeout=timeout_s, metadata=tuple(headers.items())
        )
        if abort is not None:
            abort.on_fire = lambda _: call.cancel()
        try:
            response: bytes = await call
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if abort is not None and abort.reason is not None and task and not task.cancelling():
                raise AttemptAborted(
                    f"gave up on worker {worker} at {target}: {abort.reason}"
                ) from None
            raise
        except grpc.aio.AioRpcError as exc:
            return _answer(worker, target, exc, timeout_s)
        finally:
            if abort is not None:
                abort.on_fire = None
        if remote != (model, version):
            response = wire.renamed(response, wire.routing(response), model, version)
        return Reply(200, [], response)

    async def unary(self, worker: str, method: str, request: bytes, timeout_s: float) -> Reply:
        """One call other than inference (``method``: a `Calls` attribute, ``metadata``) to
        ``worker``, answered or failed as `send` is."""
        target = self.table.grpc_urls[worker]
        call = getattr(self.channels.calls(target), method)
        try:
            response: bytes = await call(request, timeout=timeout_s)
        except grpc.aio.AioRpcError as exc:
            return _answer(worker, target, exc, timeout_s)
        return Reply(200, [], response)


def _answer(worker: str, target: str, exc: grpc.aio.AioRpcError, timeout_s: float) -> Reply:
    code = exc.code()
    details = exc.details() or code.name
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        raise DeadlineExceeded(f"the worker did not answer within {timeout_s * 1000:.0f} ms")
    if code is grpc.StatusCode.UNAVAILABLE:
        condition = "connect-failure" if _NOT_CONNECTED in details else "unavailable"
        raise BackendUnavailable(f"worker {worker} at {target} failed: {details}", condition)
    return Reply(http_status(code), [(b"grpc-status", b"%d" % code.value[0])], details.encode())
