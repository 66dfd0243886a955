"""The gateway's per-model gRPC calls besides inference: ``ModelReady`` (from the routing
table) and ``ModelMetadata`` (a worker's answer for the resolved version, over gRPC,
renamed to the gateway's names).

Every call is identified first, as HTTP identifies every ``/v2/models`` request.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.message import DecodeError

from gateway.errors import BackendUnavailable
from gateway.forward import Reply
from gateway.grpc import wire
from gateway.grpc.peers import caller
from gateway.grpc.service import Context, InferenceService, abort, reference, render
from modelgate.core.errors import ModelgateError
from modelgate.core.proto import inference_pb2 as pb

__all__ = ["ModelCalls"]


class ModelCalls:
    """The model calls of one `InferenceService`."""

    def __init__(self, service: InferenceService) -> None:
        self.service = service
        self.plane = service.plane

    def _reference(self, name: str, version: str, context: Context) -> str | None:
        raw = context.invocation_metadata() or ()
        caller(self.service.identity, raw, context.peer())
        return reference(version, {k: v for k, v in raw if isinstance(v, str)})

    async def model_ready(self, request: pb.ModelReadyRequest, context: Context) -> Any:
        """Ready when the reference resolves to a version with a ready worker serving gRPC;
        a reference that cannot resolve (unknown model, bad constraint) is an error."""
        try:
            version = self._reference(request.name, request.version, context)
            route = self.plane.table.route(request.name, version, None)
        except ModelgateError as exc:
            if exc.status_code == 503:
                return pb.ModelReadyResponse(ready=False)
            await abort(context, exc)
        unreachable = self.service.transport.unreachable
        ready = self.plane.table.balancer.serving(request.name, route.version)
        return pb.ModelReadyResponse(ready=any(w not in unreachable for w in ready))

    async def model_metadata(self, request: bytes, context: Context) -> bytes:
        """The ``ModelMetadata`` of a worker of the resolved version, no retries."""
        plane, transport = self.plane, self.service.transport
        try:
            fields = wire.routing(request)
            version = self._reference(fields.model, fields.version, context)
            route = plane.table.route(fields.model, version, None)
            worker = plane.pick(transport, fields.model, route.version, set(transport.unreachable))
            remote = plane.table.remote(worker, fields.model, route.version)
            timeout = plane.settings.request_timeout_s
            remaining = context.time_remaining()
            if remaining is not None:
                timeout = min(timeout, remaining)
            reply = await transport.unary(
                worker, "metadata", wire.renamed(request, fields, *remote), timeout
            )
        except ModelgateError as exc:
            await abort(context, exc)
        reply.headers.extend(
            [(b"x-model-version", route.version.encode()), (b"x-backend", worker.encode())]
        )
        if reply.status == 200:
            try:
                reply = _renamed(reply, fields.model, route.version)
            except DecodeError:
                failure = BackendUnavailable(
                    f"worker {worker} answered ModelMetadata with no valid message", "reset"
                )
                await abort(context, failure)
        return await render(reply, None, context)


def _renamed(reply: Reply, model: str, version: str) -> Reply:
    """The worker's metadata naming the gateway's model and the concrete version; raises
    ``DecodeError`` when the worker's answer is not a metadata message."""
    metadata = pb.ModelMetadataResponse.FromString(reply.body)
    metadata.name = model
    del metadata.versions[:]
    metadata.versions.append(version)
    return Reply(reply.status, reply.headers, metadata.SerializeToString())
