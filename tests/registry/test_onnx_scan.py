"""The signature read at publish time without decoding tensors (`registry._onnx_scan`) is
the one ``onnx.load`` gives, and anything that is not a framed model is a 400."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx
import pytest

from registry.errors import ArtifactError
from registry.signature import ONNX_TO_OIP, read_signature
from tests.support.models import (
    bf16_model,
    fixed_model,
    kinds_model,
    onnx_bytes,
    reduce_model,
    small_mlp,
)

MODELS = {
    "scale": onnx_bytes,
    "kinds": kinds_model,
    "bf16": bf16_model,
    "fixed": fixed_model,
    "reduce": reduce_model,
    "mlp": small_mlp,
}


def full_parse(data: bytes) -> dict[str, Any]:
    """The signature as ``onnx.load`` of the whole model sees it."""
    model = onnx.load_from_string(data)
    skip = {i.name for i in model.graph.initializer}

    def tensors(values: Any, skip: set[str]) -> list[dict[str, Any]]:
        return [
            {
                "name": v.name,
                "datatype": ONNX_TO_OIP[v.type.tensor_type.elem_type],
                "shape": [
                    d.dim_value if d.HasField("dim_value") else -1
                    for d in v.type.tensor_type.shape.dim
                ],
            }
            for v in values
            if v.name not in skip
        ]

    return {
        "inputs": tensors(model.graph.input, skip),
        "outputs": tensors(model.graph.output, set()),
        "ir_version": model.ir_version,
        "opset": max(o.version for o in model.opset_import if o.domain == ""),
    }


@pytest.mark.parametrize("name", sorted(MODELS))
def test_the_scan_reads_what_a_full_parse_reads(name: str, tmp_path: Path) -> None:
    data = MODELS[name]()
    path = tmp_path / "m.onnx"
    path.write_bytes(data)
    assert read_signature(path) == full_parse(data)


def test_initializers_listed_as_inputs_are_not_inputs(tmp_path: Path) -> None:
    model = onnx.load_from_string(onnx_bytes())
    model.graph.input.extend([onnx.helper.make_tensor_value_info("scale", 1, [])])
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    assert [i["name"] for i in read_signature(path)["inputs"]] == ["input"]


@pytest.mark.parametrize(
    "data",
    [
        b"junk" * 1000,
        b"\xff" * 64,
        onnx_bytes()[:-3],
        onnx_bytes()[:20],
        b"\x08\x08",  # an ir_version and nothing else: no graph
    ],
    ids=["junk", "bad-varint", "truncated-end", "truncated-start", "no-graph"],
)
def test_what_is_not_a_framed_model_is_a_400(data: bytes, tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(data)
    with pytest.raises(ArtifactError, match="not a valid ONNX model"):
        read_signature(path)
