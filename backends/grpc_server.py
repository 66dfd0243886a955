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
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from backends.control import ControlAccess
from backends.dataplane import DataPlane
from backends.grpc_service import INTERNAL_ERROR, InferenceService
from modelgate.core.errors import ModelgateError
from modelgate.core.proto.service import METHODS, SERVICE
from modelgate.core.proto.status import grpc_code

__all__ = ["GrpcServer"]

log = logging.getLogger("modelgate.worker.grpc")

#: Calls that receive the serialized request (parsed by the service after a size check).
_RAW = frozenset({"ModelInfer", "ModelStreamInfer"})
#: Room for the message framing around a request body of ``max_body_bytes``.
_ENVELOPE_BYTES = 64 * 1024


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


def _unary(name: str, call: Callable[[Any, Any], Awaitable[Any]]) -> Any:
    async def handler(request: Any, context: Any) -> Any:
        try:
            return await call(request, context)
        except ModelgateError as exc:
            await context.abort(grpc_code(exc.status_code), exc.message)
        except grpc.aio.AbortError:
            raise
        except Exception:
            log.exception("unhandled error in gRPC %s", name)
            await context.abort(grpc.StatusCode.INTERNAL, INTERNAL_ERROR)

    return handler


def _stream(name: str, call: Callable[[Any, Any], AsyncIterator[Any]]) -> Any:
    async def handler(requests: Any, context: Any) -> AsyncIterator[Any]:
        try:
            async for response in call(requests, context):
                yield response
        except ModelgateError as exc:
            await context.abort(grpc_code(exc.status_code), exc.message)
        except grpc.aio.AbortError:
            raise
        except Exception:
            log.exception("unhandled error in gRPC %s", name)
            await context.abort(grpc.StatusCode.INTERNAL, INTERNAL_ERROR)

    return handler


def _handlers(service: InferenceService) -> dict[str, Any]:
    handlers: dict[str, Any] = {}
    for name, method in METHODS.items():
        call = getattr(service, _snake(name))
        decode = None if name in _RAW else method.request.FromString
        encode = method.response.SerializeToString
        if method.streaming:
            handlers[name] = grpc.stream_stream_rpc_method_handler(
                _stream(name, call), request_deserializer=decode, response_serializer=encode
            )
        else:
            handlers[name] = grpc.unary_unary_rpc_method_handler(
                _unary(name, call), request_deserializer=decode, response_serializer=encode
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
        """Bind and serve; ``RuntimeError`` naming the address when it cannot bind.

        NOTE: ``grpc.so_reuseport`` is off, so a port already in use fails here instead of
        sharing connections with another process.
        """
        limit = self.plane.options.max_body_bytes + _ENVELOPE_BYTES
        server = grpc.aio.server(
            options=[("grpc.so_reuseport", 0), ("grpc.max_receive_message_length", limit)]
        )
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, _handlers(self.service)),)
        )
        address = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        try:
            bound = server.add_insecure_port(address)
        except RuntimeError as exc:
            raise RuntimeError(f"cannot serve gRPC on {address}: {exc}") from None
        if not bound:
            raise RuntimeError(f"cannot serve gRPC on {address}")
        self.port = bound
        await server.start()
        self._server = server
        log.info("serving gRPC on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(self.grace_s)
            self._server = None
