"""Open Inference Protocol v2 REST types (KServe "V2" / Triton HTTP), as msgspec Structs.

Field names and optionality follow the protocol's REST specification
(github.com/kserve/open-inference-protocol, ``specification/protocol/inference_rest.md``);
fields left at their default are omitted from encoded JSON (``omit_defaults``), so optional
nulls never appear.
Tensor ``data`` stays untyped here: its element type depends on the tensor's datatype and
is checked by ``backends.codec``.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = [
    "DATATYPES",
    "InferenceRequest",
    "InferenceResponse",
    "ModelMetadata",
    "Parameters",
    "RequestInput",
    "RequestOutput",
    "ResponseOutput",
    "ServerMetadata",
    "TensorMetadata",
]

Parameters = dict[str, Any]

#: Every datatype name the protocol (plus Triton's BF16) defines.
DATATYPES = (
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BF16",
    "BYTES",
)


class _Base(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=False):
    pass


class TensorMetadata(_Base):
    """``$metadata_tensor``: ``-1`` in ``shape`` marks a variable dimension."""

    name: str
    datatype: str
    shape: list[int]


class ServerMetadata(_Base):
    name: str
    version: str
    extensions: list[str] = msgspec.field(default_factory=list)


class ModelMetadata(_Base):
    name: str
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    versions: list[str] | None = None
    parameters: Parameters | None = None


class RequestInput(_Base):
    name: str
    shape: list[int]
    datatype: str
    parameters: Parameters | None = None
    data: Any = None


class RequestOutput(_Base):
    name: str
    parameters: Parameters | None = None


class InferenceRequest(_Base):
    inputs: list[RequestInput]
    id: str | None = None
    parameters: Parameters | None = None
    outputs: list[RequestOutput] | None = None


class ResponseOutput(_Base):
    name: str
    shape: list[int]
    datatype: str
    parameters: Parameters | None = None
    data: list[Any] | None = None


class InferenceResponse(_Base):
    model_name: str
    outputs: list[ResponseOutput]
    model_version: str | None = None
    id: str | None = None
    parameters: Parameters | None = None
