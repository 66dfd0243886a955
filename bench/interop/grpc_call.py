"""One ModelInfer through the gateway's gRPC port with grpcio and the project's messages
(`modelgate.core.proto`), keeping the response metadata that names the backend."""

from __future__ import annotations

import grpc

from modelgate.core.proto import inference_pb2 as pb
from modelgate.core.proto.service import METHODS, path

__all__ = ["grpc_infer"]


def grpc_infer(target: str, model: str) -> str:
    """Infer one FP32 row ``[1, 2, 3, 4]`` on ``model``; the served names, the output and
    the ``x-backend`` metadata, or a `grpc.RpcError` with the server's code and message."""
    method = METHODS["ModelInfer"]
    tensor = pb.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=[1, 4])
    tensor.contents.fp32_contents.extend([1.0, 2.0, 3.0, 4.0])
    request = pb.ModelInferRequest(model_name=model, inputs=[tensor])
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(
            path("ModelInfer"),
            request_serializer=method.request.SerializeToString,
            response_deserializer=method.response.FromString,
        )
        response, state = call.with_call(request, timeout=30)
    metadata = dict(state.initial_metadata() or ()) | dict(state.trailing_metadata() or ())
    out = response.outputs[0]
    values = list(out.contents.int64_contents) or list(response.raw_output_contents[:1])
    return (
        f"OK, model_name {response.model_name}, model_version {response.model_version}, "
        f"output {out.name} {values}, x-backend {metadata.get('x-backend')}"
    )
