"""The parts of an ONNX file a signature needs, read without parsing the whole model.

``onnx.load`` decodes every initializer (for a 300 MiB model: 300 MiB copied and seconds
under the GIL). This walks the protobuf wire format of the memory-mapped file instead: the
model's and the graph's fields are framed and checked, and only the small ones (opset
imports, graph inputs and outputs, initializer names) are decoded; tensor bytes are
skipped, never read. The result is a small `onnx.ModelProto` holding just those fields.
"""

from __future__ import annotations

import mmap
from pathlib import Path
from typing import Any

from registry.errors import ArtifactError

__all__ = ["scan_model"]

# Field numbers of onnx.proto3.
_MODEL_IR_VERSION, _MODEL_OPSET_IMPORT, _MODEL_GRAPH = 1, 8, 7
_GRAPH_NODE, _GRAPH_INITIALIZER, _GRAPH_INPUT, _GRAPH_OUTPUT = 1, 5, 11, 12
_TENSOR_NAME = 8
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


class _Invalid(Exception):
    pass


def _varint(data: memoryview, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise _Invalid(f"truncated or overlong varint at byte {pos}")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: memoryview, pos: int, end: int) -> Any:
    """Yield ``(field, wire_type, value_or_start, stop)`` for each field in ``[pos, end)``;
    a length-delimited field yields its bounds, the others their value."""
    while pos < end:
        key, pos = _varint(data, pos, end)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise _Invalid(f"field number 0 at byte {pos}")
        if wire == _VARINT:
            value, pos = _varint(data, pos, end)
            yield field, wire, value, pos
        elif wire == _LEN:
            length, pos = _varint(data, pos, end)
            if length > end - pos:
                raise _Invalid(f"field {field} runs past its message at byte {pos}")
            yield field, wire, pos, pos + length
            pos += length
        elif wire in (_I64, _I32):
            pos += 8 if wire == _I64 else 4
            if pos > end:
                raise _Invalid(f"truncated fixed-width field {field}")
            yield field, wire, None, pos
        else:
            raise _Invalid(f"field {field} has the unsupported wire type {wire}")


def _scan(data: memoryview) -> Any:
    import onnx

    model = onnx.ModelProto()
    graph_bounds: tuple[int, int] | None = None
    for field, wire, start, stop in _fields(data, 0, len(data)):
        if field == _MODEL_IR_VERSION and wire == _VARINT:
            model.ir_version = start
        elif field == _MODEL_OPSET_IMPORT and wire == _LEN:
            model.opset_import.add().ParseFromString(bytes(data[start:stop]))
        elif field == _MODEL_GRAPH and wire == _LEN:
            graph_bounds = (start, stop)
    if graph_bounds is None:
        raise _Invalid("the model has no graph")
    graph = model.graph
    for field, wire, start, stop in _fields(data, *graph_bounds):
        if wire != _LEN:
            continue
        if field == _GRAPH_NODE:
            for _ in _fields(data, start, stop):  # framing only: nodes are not decoded
                pass
        elif field == _GRAPH_INPUT:
            graph.input.add().ParseFromString(bytes(data[start:stop]))
        elif field == _GRAPH_OUTPUT:
            graph.output.add().ParseFromString(bytes(data[start:stop]))
        elif field == _GRAPH_INITIALIZER:
            for tfield, twire, tstart, tstop in _fields(data, start, stop):
                if tfield == _TENSOR_NAME and twire == _LEN:
                    graph.initializer.add().name = bytes(data[tstart:tstop]).decode()
    return model


def scan_model(path: Path) -> Any:
    """A small `onnx.ModelProto`: ``ir_version``, ``opset_import`` and a graph with its
    inputs, outputs and initializer names; 400 when the file is not a framed model."""
    from google.protobuf.message import DecodeError

    try:
        with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as m:
            view = memoryview(m)
            try:
                return _scan(view)
            finally:
                view.release()
    except (_Invalid, DecodeError, UnicodeDecodeError, ValueError) as exc:
        raise ArtifactError(f"artifact is not a valid ONNX model: {exc}") from None
