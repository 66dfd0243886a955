"""``modelgate worker`` refuses a configuration it cannot start with one line, not a
traceback: ``--providers cuda`` where CUDA is absent (the probe is made to say so)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

import backends.runtime
from backends.errors import LoadFailed
from modelgate.cli.main import main


def test_cuda_required_but_absent_is_one_line_and_exit_1(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_cuda(_options: object) -> None:
        raise LoadFailed("CUDA execution provider was required but no CUDA device is visible")

    monkeypatch.setattr(backends.runtime, "choose_device", no_cuda)
    result = CliRunner().invoke(
        main, ["worker", "--providers", "cuda", "--model-file", "iris@1.0.0=model.onnx"]
    )
    assert result.exit_code == 1, result.output
    assert result.output.strip() == (
        "Error: CUDA execution provider was required but no CUDA device is visible"
    )
    assert "Traceback" not in result.output
