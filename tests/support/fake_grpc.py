"""Fake gRPC workers at the network edge: small ``grpc.aio`` servers on 127.0.0.1 that
answer ``ModelInfer`` (the request's tensors back, named as the request named them), or the
error, or the hang a test sets, and record every request they got, decoded.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import grpc

from modelgate.core.proto import inference_pb2 as pb
from modelgate.core.proto.service import SERVICE

#: ``FakeGrpcWorker.mode``: "ok", "hang" (answer once `release` is called) or the
#: `grpc.StatusCode` to fail with.
GrpcMode = str | grpc.StatusCode


@dataclass
class FakeGrpcWorker:
    """One fake worker; ``log`` is shared between fakes to record the order of attempts."""

    name: str
    mode: GrpcMode = "ok"
    log: list[str] = field(default_factory=list)
    #: Every ModelInfer request received, decoded, with its invocation metadata.
    requests: list[tuple[pb.ModelInferRequest, dict[str, str]]] = field(default_factory=list)
    #: The time each ModelInfer call had left when it arrived (its propagated deadline).
    remaining: list[float | None] = field(default_factory=list)
    #: Every ModelMetadata / ModelConfig request's (name, version).
    lookups: list[tuple[str, str]] = field(default_factory=list)
    target: str = ""
    _server: Any = None
    _released: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> FakeGrpcWorker:
        server = grpc.aio.server()
        calls = {
            "ModelInfer": grpc.unary_unary_rpc_method_handler(
                self._infer,
                request_deserializer=pb.ModelInferRequest.FromString,
                response_serializer=pb.ModelInferResponse.SerializeToString,
            ),
            "ModelMetadata": grpc.unary_unary_rpc_method_handler(
                self._metadata,
                request_deserializer=pb.ModelMetadataRequest.FromString,
                response_serializer=pb.ModelMetadataResponse.SerializeToString,
            ),
            "ModelConfig": grpc.unary_unary_rpc_method_handler(
                self._config,
                request_deserializer=pb.ModelConfigRequest.FromString,
                response_serializer=pb.ModelConfigResponse.SerializeToString,
            ),
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, calls),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        self._server, self.target = server, f"127.0.0.1:{port}"
        return self

    def release(self) -> None:
        self._released.set()

    async def stop(self) -> None:
        self.release()
        if self._server is not None:
            await self._server.stop(0)

    @property
    def hits(self) -> int:
        return len(self.requests)

    async def _infer(self, request: pb.ModelInferRequest, context: Any) -> pb.ModelInferResponse:
        metadata = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
        self.requests.append((request, metadata))
        self.remaining.append(context.time_remaining())
        self.log.append(self.name)
        mode = self.mode
        if mode == "hang":
            await self._released.wait()
            mode = "ok"
        if isinstance(mode, grpc.StatusCode):
            await context.abort(mode, f"{self.name} answers {mode.name}")
        response = pb.ModelInferResponse(
            model_name=request.model_name, model_version=request.model_version, id=request.id
        )
        for tensor in request.inputs:
            response.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
        response.raw_output_contents.extend(request.raw_input_contents)
        return response

    async def _metadata(self, request: Any, context: Any) -> pb.ModelMetadataResponse:
        self.lookups.append((request.name, request.version))
        response = pb.ModelMetadataResponse(
            name=request.name, versions=[request.version], platform="onnxruntime_onnx"
        )
        response.inputs.add(name="x", datatype="FP32", shape=[-1, 4])
        return response

    async def _config(self, request: Any, context: Any) -> pb.ModelConfigResponse:
        self.lookups.append((request.name, request.version))
        response = pb.ModelConfigResponse()
        response.config.name = request.name
        response.config.max_batch_size = 8
        return response
