"""ONNX models generated in code, for tests, the demo and benchmarks (nothing is downloaded).

NOTE: onnx 1.23 writes IR version 14 by default and onnxruntime 1.31 reads at most 13, so
every model here sets ``ir_version`` explicitly.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["IR_VERSION", "OPSET", "mlp_model", "scale_model"]

IR_VERSION = 8
OPSET = 17


def _finish(graph: onnx.GraphProto) -> bytes:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def scale_model(scale: float = 2.0, width: int = 4, input_name: str = "input") -> bytes:
    """``output = input * scale`` over ``[batch, width]`` FP32, batch dynamic."""
    graph = helper.make_graph(
        [helper.make_node("Mul", [input_name, "scale"], ["output"])],
        "scale",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor("scale", TensorProto.FLOAT, [], [scale])],
    )
    return _finish(graph)


def mlp_model(width: int = 2048, layers: int = 3, seed: int = 0) -> bytes:
    """A ``layers``-deep ``width``-wide ReLU MLP over ``[batch, width]`` FP32 (batch dynamic)."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    current = "input"
    for i in range(layers):
        weight = (rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32)
        bias = np.zeros(width, dtype=np.float32)
        inits += [numpy_helper.from_array(weight, f"w{i}"), numpy_helper.from_array(bias, f"b{i}")]
        out = "output" if i == layers - 1 else f"h{i}"
        gemm = f"g{i}" if i < layers - 1 else out
        nodes.append(helper.make_node("Gemm", [current, f"w{i}", f"b{i}"], [gemm]))
        if i < layers - 1:
            nodes.append(helper.make_node("Relu", [gemm], [out]))
        current = out
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", width])],
        inits,
    )
    return _finish(graph)
