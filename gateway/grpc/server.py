"""The gateway's gRPC server: grpcio's asyncio server on the app's own event loop, serving
`modelgate.core.proto.service.METHODS` under Triton's service name with generic handlers.

``ModelInfer``, ``ModelStreamInfer`` and ``ModelMetadata`` take and give raw bytes (no
deserializer: the gateway decodes no tensors); the other calls get their messages. Every call
renders its own `ModelgateError`; anything else is logged and answers INTERNAL "internal
error; see the gateway log" (grpcio would send the exception's text as UNKNOWN).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import grpc

from gateway.grpc.extensions import ExtensionCalls
from gateway.grpc.models import ModelCalls
from gateway.grpc.service import INTERNAL, InferenceService
from modelgate.core.proto.service import METHODS, SERVICE
from modelgate.core.proto.serving import guarded, guarded_stream, serve

__all__ = ["GrpcServer"]

log = logging.getLogger("modelgate.gateway")


def _unary(method: str, behaviour: Callable[..., Any]) -> grpc.RpcMethodHandler:
    spec = METHODS[method]
    return grpc.unary_unary_rpc_method_handler(
        guarded(method, behaviour, log, INTERNAL),
        request_deserializer=spec.request.FromString,
        response_serializer=spec.response.SerializeToString,
    )


def _raw(method: str, behaviour: Callable[..., Any]) -> grpc.RpcMethodHandler:
    return grpc.unary_unary_rpc_method_handler(guarded(method, behaviour, log, INTERNAL))


def handlers(service: InferenceService) -> grpc.GenericRpcHandler:
    """Every call of `METHODS`, bound to ``service``."""
    models = ModelCalls(service)
    extensions = ExtensionCalls(service, service.extensions, service.repository)
    calls: dict[str, grpc.RpcMethodHandler] = {
        "ServerLive": _unary("ServerLive", service.server_live),
        "ServerReady": _unary("ServerReady", service.server_ready),
        "ServerMetadata": _unary("ServerMetadata", service.server_metadata),
        "ModelReady": _unary("ModelReady", models.model_ready),
        "ModelMetadata": _raw("ModelMetadata", models.model_metadata),
        "ModelConfig": _unary("ModelConfig", extensions.model_config),
        "ModelStatistics": _unary("ModelStatistics", extensions.model_statistics),
        "RepositoryIndex": _unary("RepositoryIndex", extensions.repository_index),
        "RepositoryModelLoad": _unary("RepositoryModelLoad", extensions.repository_model_load),
        "RepositoryModelUnload": _unary(
            "RepositoryModelUnload", extensions.repository_model_unload
        ),
        "ModelInfer": _raw("ModelInfer", service.model_infer),
        "ModelStreamInfer": grpc.stream_stream_rpc_method_handler(
            guarded_stream("ModelStreamInfer", service.model_stream_infer, log, INTERNAL)
        ),
    }
    assert set(calls) == set(METHODS), set(METHODS) ^ set(calls)
    return grpc.method_handlers_generic_handler(SERVICE, calls)


class GrpcServer:
    """``start`` binds ``host:port`` (0: any free port, then `port` says which) and serves
    until ``stop``; both run on the loop that serves the gateway's HTTP."""

    def __init__(
        self, service: InferenceService, host: str, port: int, max_message_bytes: int
    ) -> None:
        self.service = service
        self.host = host
        self.port = port
        self.max_message_bytes = max_message_bytes
        self._server: grpc.aio.Server | None = None

    async def start(self) -> None:
        options = (
            ("grpc.max_receive_message_length", self.max_message_bytes),
            ("grpc.max_send_message_length", -1),
        )
        self._server, self.port = await serve(handlers(self.service), self.host, self.port, options)

    async def stop(self, grace_s: float = 5.0) -> None:
        """Stop taking calls; those in flight get ``grace_s`` to finish."""
        server, self._server = self._server, None
        if server is not None:
            await server.stop(grace_s)
