"""The worker's gRPC server: grpcio's asyncio server on the worker app's event loop,
serving `backends.grpc_service.InferenceService` as Triton's
``inference.GRPCInferenceService`` (`modelgate.core.proto.service`).

It is a `backends.app.Service`: started with the app's lifespan and stopped with it, after
the data plane has drained (so in-flight calls have finished and new ones were refused
with UNAVAILABLE); ``stop`` then gives open calls and streams ``grace_s`` to end.

Errors: a ``ModelgateError`` aborts the call with `modelgate.core.proto.status.grpc_code`
of its HTTP status and the same message as over REST; anything else is logged and answers
INTERNAL "internal error; see the server log".
"""

from __future__ import annotations

import logging
from typing import Any

import grpc

from backends.control import ControlAccess
from backends.dataplane import DataPlane
from backends.grpc_service import INTERNAL_ERROR, InferenceService
from modelgate.core.proto.service import METHODS, SERVICE
from modelgate.core.proto.serving import guarded, guarded_stream, serve

__all__ = ["GrpcServer"]

log = logging.getLogger("modelgate.worker.grpc")

#: Calls that receive the serialized request (parsed by the service after a size check).
_RAW = frozenset({"ModelInfer", "ModelStreamInfer"})
#: Room for the message framing around a request body of ``max_body_bytes``.
_ENVELOPE_BYTES = 64 * 1024


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


def _handlers(service: InferenceService) -> dict[str, Any]:
    handlers: dict[str, Any] = {}
    for name, method in METHODS.items():
        call = getattr(service, _snake(name))
        decode = None if name in _RAW else method.request.FromString
        encode = method.response.SerializeToString
        if method.streaming:
            handlers[name] = grpc.stream_stream_rpc_method_handler(
                guarded_stream(name, call, log, INTERNAL_ERROR),
                request_deserializer=decode,
                response_serializer=encode,
            )
        else:
            handlers[name] = grpc.unary_unary_rpc_method_handler(
                guarded(name, call, log, INTERNAL_ERROR),
                request_deserializer=decode,
                response_serializer=encode,
            )
    return handlers


class GrpcServer:
    """Serves ``plane`` over gRPC on ``host:port`` (port 0: a free one, see ``port``)."""

    def __init__(
        self,
        plane: DataPlane,
        *,
        host: str,
        port: int,
        control: ControlAccess | None = None,
        grace_s: float = 5.0,
    ) -> None:
        self.plane = plane
        self.host = host
        self.port = port
        self.service = InferenceService(plane, control or ControlAccess())
        self.grace_s = grace_s
        self._server: Any = None

    async def start(self) -> None:
        """Bind and serve; `OSError` naming the address when it cannot bind."""
        limit = self.plane.options.max_body_bytes + _ENVELOPE_BYTES
        handler = grpc.method_handlers_generic_handler(SERVICE, _handlers(self.service))
        options = [("grpc.max_receive_message_length", limit)]
        self._server, self.port = await serve(handler, self.host, self.port, options)
        log.info("serving gRPC on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(self.grace_s)
            self._server = None
