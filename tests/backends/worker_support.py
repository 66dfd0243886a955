"""Support for the worker tests: tiny ONNX models generated here, real worker processes.

NOTE: not a ``conftest.py``: the suite's modules import helpers ``from conftest``, and a
second ``conftest`` module would shadow the root one. Test modules import the fixtures.

A worker process is started with ``python -m modelgate worker`` on a free 127.0.0.1 port, loading
plain model files (``--model-file``), and is polled until ready (bounded).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from sqlalchemy.ext.asyncio import AsyncEngine

from backends.synthetic import IR_VERSION, OPSET, scale_model
from registry.artifacts import ArtifactStore
from registry.db import make_sessionmaker
from registry.models import Model, ModelVersion

ROOT = Path(__file__).resolve().parents[2]


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


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every test model as a file: scale (two versions), kinds, bf16, fixed, reduce, mlp."""
    root = tmp_path_factory.mktemp("models")
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start_worker(
    args: list[str], log: Path, env: dict[str, str] | None = None, timeout_s: float = 60.0
) -> WorkerProcess:
    """Start ``python -m modelgate worker`` with ``args`` and wait (bounded) until it is ready."""
    port = free_port()
    full_env = {**os.environ, **(env or {})}
    full_env.pop("MODELGATE_REDIS_URL", None) if "MODELGATE_REDIS_URL" not in (env or {}) else None
    full_env.setdefault("MODELGATE_WORKER_INTRA_OP_THREADS", "1")
    with log.open("wb") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "modelgate", "worker", "--port", str(port), *args],
            cwd=ROOT,
            env=full_env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    worker = WorkerProcess(process, port, log)
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"worker exited with {process.returncode}:\n{worker.output()}")
            try:
                if client.get(f"{worker.url}/v2/health/ready").status_code == 200:
                    return worker
            except httpx.TransportError:
                pass
            time.sleep(0.05)
    worker.stop()
    raise AssertionError(f"worker not ready within {timeout_s}s:\n{worker.output()}")


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


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def publish(engine: AsyncEngine, store: ArtifactStore, model: str,
                  versions: dict[str, tuple[bytes, str, dict[str, str]]]) -> None:  # fmt: skip
    """Insert a model and versions ``{version: (onnx bytes, status, labels)}`` directly."""
    now = datetime.now(UTC)
    async with make_sessionmaker(engine)() as session, session.begin():
        row = Model(name=model, description="", created_at=now, created_by="t", updated_at=now)
        session.add(row)
        await session.flush()
        for version, (data, status, labels) in versions.items():
            stored = await store.ingest(_chunks(data), limit=1 << 20)
            core, _, build = version.partition("+")
            core, _, pre = core.partition("-")
            major, minor, patch = (int(p) for p in core.split("."))
            session.add(ModelVersion(
                model_id=row.id, version=version, major=major, minor=minor, patch=patch,
                prerelease=pre, build=build, is_prerelease=bool(pre),
                artifact_uri=f"file://{stored.path}", storage_key=stored.storage_key,
                sha256=stored.sha256, size_bytes=stored.size_bytes, runtime="onnx",
                signature={}, status=status, labels=labels, created_at=now, created_by="t",
                updated_at=now,
            ))  # fmt: skip
