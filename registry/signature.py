"""Read an ONNX model's input/output signature at publish time (OIP datatypes, -1 = dynamic)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from registry._onnx_scan import scan_model
from registry.errors import ArtifactError

__all__ = ["ONNX_TO_OIP", "read_signature"]

#: onnx.TensorProto element types → Open Inference Protocol datatypes.
ONNX_TO_OIP = {
    1: "FP32", 2: "UINT8", 3: "INT8", 4: "UINT16", 5: "INT16", 6: "INT32", 7: "INT64",
    8: "BYTES", 9: "BOOL", 10: "FP16", 11: "FP64", 12: "UINT32", 13: "UINT64", 16: "BF16",
}  # fmt: skip


def _tensors(values: Any, skip: set[str]) -> list[dict[str, Any]]:
    out = []
    for value in values:
        if value.name in skip:
            continue
        tensor = value.type.tensor_type
        datatype = ONNX_TO_OIP.get(tensor.elem_type)
        if datatype is None:
            raise ArtifactError(
                f'tensor "{value.name}" has ONNX element type {tensor.elem_type}, '
                f"which the Open Inference Protocol cannot carry"
            )
        shape = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
        out.append({"name": value.name, "datatype": datatype, "shape": shape})
    return out


def read_signature(path: Path) -> dict[str, Any]:
    """``{"inputs": [...], "outputs": [...], "opset": n, "ir_version": n}``; 400 if not ONNX.

    Reads only the model's framing and small fields (`registry._onnx_scan`), never its
    tensor bytes, so that it is cheap whatever the model's size."""
    model = scan_model(path)
    graph = model.graph
    if not graph.output:
        raise ArtifactError("artifact is not a valid ONNX model: the graph has no outputs")
    initializers = {init.name for init in graph.initializer}
    return {
        "inputs": _tensors(graph.input, initializers),
        "outputs": _tensors(graph.output, set()),
        "ir_version": int(model.ir_version),
        "opset": max((int(o.version) for o in model.opset_import if o.domain == ""), default=0),
    }
