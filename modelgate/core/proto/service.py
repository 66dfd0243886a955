"""The gRPC service's wire names: Triton's ``inference.GRPCInferenceService`` and its calls,
with the message classes of `modelgate.core.proto.inference_pb2` that each carries.

Servers register `METHODS` under `SERVICE` with a generic handler (the generated stubs
would name the service after this package's own proto package); clients call `path`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelgate.core.proto import inference_pb2 as pb

__all__ = ["METHODS", "SERVICE", "Method", "path"]

SERVICE = "inference.GRPCInferenceService"


@dataclass(frozen=True, slots=True)
class Method:
    """One call: its request and response messages; ``streaming`` for a bidirectional
    stream (``ModelStreamInfer``), else unary."""

    name: str
    request: Any
    response: Any
    streaming: bool = False


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("ServerLive", pb.ServerLiveRequest, pb.ServerLiveResponse),
        Method("ServerReady", pb.ServerReadyRequest, pb.ServerReadyResponse),
        Method("ModelReady", pb.ModelReadyRequest, pb.ModelReadyResponse),
        Method("ServerMetadata", pb.ServerMetadataRequest, pb.ServerMetadataResponse),
        Method("ModelMetadata", pb.ModelMetadataRequest, pb.ModelMetadataResponse),
        Method("ModelInfer", pb.ModelInferRequest, pb.ModelInferResponse),
        Method(
            "ModelStreamInfer", pb.ModelInferRequest, pb.ModelStreamInferResponse, streaming=True
        ),
        Method("ModelConfig", pb.ModelConfigRequest, pb.ModelConfigResponse),
        Method("ModelStatistics", pb.ModelStatisticsRequest, pb.ModelStatisticsResponse),
        Method("RepositoryIndex", pb.RepositoryIndexRequest, pb.RepositoryIndexResponse),
        Method(
            "RepositoryModelLoad", pb.RepositoryModelLoadRequest, pb.RepositoryModelLoadResponse
        ),
        Method(
            "RepositoryModelUnload",
            pb.RepositoryModelUnloadRequest,
            pb.RepositoryModelUnloadResponse,
        ),
    )
}


def path(method: str) -> str:
    """The call's HTTP/2 path, e.g. ``/inference.GRPCInferenceService/ModelInfer``."""
    return f"/{SERVICE}/{method}"
