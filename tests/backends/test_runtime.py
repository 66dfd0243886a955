"""ONNX Runtime sessions: device choice without noise, signatures, errors translated once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from backends.errors import InferenceFailed, InvalidTensor, LoadFailed
from backends.runtime import (
    OnnxModel,
    RuntimeOptions,
    _probe_cuda,
    choose_device,
    synthetic_inputs,
)
from backends.signature import TensorSpec


def test_cuda_probe_is_silent_and_the_choice_is_made_once(
    capfd: pytest.CaptureFixture[str],
) -> None:
    reason = _probe_cuda(0)
    first = choose_device(RuntimeOptions())
    second = choose_device(RuntimeOptions(providers="cpu"))
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
    assert first is second
    if reason is not None:
        assert first.device == "cpu"
        assert first.providers == ("CPUExecutionProvider",)


def test_signature_comes_from_the_session(model_dir: Path) -> None:
    model = OnnxModel(model_dir / "kinds.onnx", RuntimeOptions(intra_op_threads=1))
    assert [t.datatype for t in model.signature.inputs] == ["FP16", "INT64", "BOOL", "BYTES"]
    assert model.signature.inputs[0] == TensorSpec("f16", "FP16", (-1, 3))
    assert model.signature.batchable
    assert "CPUExecutionProvider" in model.providers
    fixed = OnnxModel(model_dir / "fixed.onnx", RuntimeOptions())
    assert not fixed.signature.batchable


def test_synthetic_inputs_fill_variable_dimensions(model_dir: Path) -> None:
    model = OnnxModel(model_dir / "kinds.onnx", RuntimeOptions())
    inputs = synthetic_inputs(model.signature, 5)
    assert inputs["f16"].shape == (5, 3)
    assert inputs["text"].shape == (5,)
    outputs = model.run(inputs)
    assert outputs["text_out"].shape == (5,)


def test_bytes_inputs_must_be_utf8_text(model_dir: Path) -> None:
    model = OnnxModel(model_dir / "kinds.onnx", RuntimeOptions())
    inputs = synthetic_inputs(model.signature, 1)
    inputs["text"] = np.array([b"\xff"], dtype=object)
    with pytest.raises(InvalidTensor, match='input "text": BYTES element is not UTF-8'):
        model.run(inputs)


def test_load_failures_are_translated(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model")
    with pytest.raises(LoadFailed, match="onnxruntime cannot load the model"):
        OnnxModel(garbage, RuntimeOptions())
    with pytest.raises(LoadFailed, match='unknown graph optimization "fast"'):
        OnnxModel(garbage, RuntimeOptions(graph_optimization="fast"))


def test_onnxruntime_errors_become_backend_errors(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = OnnxModel(model_dir / "scale-1.onnx", RuntimeOptions(allow_spinning=False))
    with pytest.raises(InvalidTensor, match=r"the model rejected the inputs: .*INVALID_ARGUMENT"):
        model.run({"input": np.zeros((1, 4), np.float64)})
    failure = ort.capi.onnxruntime_pybind11_state.Fail

    def fail(*_: object) -> None:
        raise failure("kernel exploded")

    monkeypatch.setattr(model._session, "run", fail)
    with pytest.raises(InferenceFailed, match="inference failed: kernel exploded") as caught:
        model.run({"input": np.zeros((1, 4), np.float32)})
    assert caught.value.status_code == 500
