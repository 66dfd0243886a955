"""Fixtures of the worker tests: the model files and one real worker process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.models import model_files, write_models
from tests.support.workers import WorkerProcess, start_worker


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every test model as a file: scale (two versions), kinds, bf16, fixed, reduce, mlp."""
    return write_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def worker(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    """One real worker process serving every test model, batching on (up to 8 rows)."""
    args = [a for f in model_files(model_dir) for a in ("--model-file", f)]
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    env = {"MODELGATE_WORKER_MAX_BODY_BYTES": str(1024 * 1024)}
    proc = start_worker([*args, "--max-batch-size", "8", "--max-queue-delay-us", "2000"], log, env)
    yield proc
    code = proc.stop()
    assert code == 0, proc.output()
