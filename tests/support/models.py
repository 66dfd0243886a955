"""Tiny ONNX models generated in code (IR version pinned for onnxruntime), and their files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from backends.synthetic import IR_VERSION, OPSET, scale_model


def onnx_bytes(scale: float = 2.0, width: int = 4) -> bytes:
    """A tiny model: ``output = input * scale`` over ``[batch, width]`` FP32."""
    return scale_model(scale, width)


def _model(
    nodes: list[onnx.NodeProto],
    inputs: list[onnx.ValueInfoProto],
    outputs: list[onnx.ValueInfoProto],
    inits: list[onnx.TensorProto] | None = None,
) -> bytes:
    graph = helper.make_graph(nodes, "g", inputs, outputs, inits or [])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def kinds_model() -> bytes:
    """Identity over FP16, INT64, BOOL ``[batch, 3]`` and BYTES ``[batch]``."""
    kinds = [
        ("f16", TensorProto.FLOAT16, ["b", 3]),
        ("i64", TensorProto.INT64, ["b", 3]),
        ("flag", TensorProto.BOOL, ["b", 3]),
        ("text", TensorProto.STRING, ["b"]),
    ]
    return _identity(kinds)


def bf16_model() -> bytes:
    """Identity over BF16 ``[batch, 3]`` (numpy cannot hand BF16 to onnxruntime directly)."""
    return _identity([("bf16", TensorProto.BFLOAT16, ["b", 3])])


def _identity(kinds: list[tuple[str, int, list[object]]]) -> bytes:
    return _model(
        [helper.make_node("Identity", [n], [f"{n}_out"]) for n, _, _ in kinds],
        [helper.make_tensor_value_info(n, t, s) for n, t, s in kinds],
        [helper.make_tensor_value_info(f"{n}_out", t, s) for n, t, s in kinds],
    )


def fixed_model() -> bytes:
    """``y = x + 1`` over a fixed ``[2, 3]`` FP32: nothing to batch along."""
    return _model(
        [helper.make_node("Add", ["x", "one"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])],
    )


def reduce_model() -> bytes:
    """``total = sum(x)`` over all rows: dim 0 is variable but the output is not per-row."""
    return _model(
        [helper.make_node("ReduceSum", ["x"], ["total"], keepdims=1)],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 2])],
        [helper.make_tensor_value_info("total", TensorProto.FLOAT, ["n", 1])],
    )


def small_mlp(width_in: int = 16, hidden: int = 32, width_out: int = 8) -> bytes:
    """A two-layer ReLU MLP over ``[batch, 16]`` FP32 with fixed random weights."""
    rng = np.random.default_rng(7)
    w1 = rng.standard_normal((width_in, hidden)).astype(np.float32)
    w2 = rng.standard_normal((hidden, width_out)).astype(np.float32)
    return _model(
        [
            helper.make_node("MatMul", ["x", "w1"], ["h"]),
            helper.make_node("Relu", ["h"], ["r"]),
            helper.make_node("MatMul", ["r", "w2"], ["y"]),
        ],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", width_in])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", width_out])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")],
    )


def write_models(root: Path) -> Path:
    """Every test model as a file under ``root``: scale (two versions), kinds, bf16, fixed,
    reduce, mlp."""
    files = {
        "scale-1.onnx": scale_model(2.0, 4),
        "scale-2.onnx": scale_model(3.0, 4),
        "kinds.onnx": kinds_model(),
        "bf16.onnx": bf16_model(),
        "fixed.onnx": fixed_model(),
        "reduce.onnx": reduce_model(),
        "mlp.onnx": small_mlp(),
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    return root


def model_files(model_dir: Path) -> list[str]:
    """``--model-file`` arguments for every test model."""
    return [
        f"scale@1.0.0={model_dir / 'scale-1.onnx'}",
        f"scale@2.0.0+build.5={model_dir / 'scale-2.onnx'}",
        f"kinds@1.0.0={model_dir / 'kinds.onnx'}",
        f"bf16@1.0.0={model_dir / 'bf16.onnx'}",
        f"fixed@1.0.0={model_dir / 'fixed.onnx'}",
        f"reduce@1.0.0={model_dir / 'reduce.onnx'}",
        f"mlp@1.0.0={model_dir / 'mlp.onnx'}",
    ]


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _len_field(number: int, length: int) -> bytes:
    """The key and length of a protobuf length-delimited field (its bytes follow)."""
    return _varint(number << 3 | 2) + _varint(length)


def write_sparse_model(path: Path, size: int) -> Path:
    """A valid ONNX model of about ``size`` bytes, ``output = input + w``, written at once
    as a sparse file: ``w`` (``size // 4`` zero floats) is the file's last field, so its
    bytes are a hole that `Path.stat` counts and no disk holds."""
    width = size // 4
    tensor = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[width]).SerializeToString()
    tensor += _len_field(9, width * 4)  # raw_data, to the end of the file
    graph = helper.make_graph(
        [helper.make_node("Add", ["input", "w"], ["output"])],
        "big",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", width])],
    ).SerializeToString()
    graph += _len_field(5, len(tensor) + width * 4) + tensor  # the initializer
    model = onnx.ModelProto(ir_version=IR_VERSION, opset_import=[helper.make_opsetid("", OPSET)])
    head = model.SerializeToString() + _len_field(7, len(graph) + width * 4) + graph
    with path.open("wb") as out:
        out.write(head)
        out.truncate(len(head) + width * 4)
    return path
