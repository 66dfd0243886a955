"""Third-party tools, each in its own virtualenv under ``.interop/<tool>/`` (made by ``make
interop``; ignored by git), and perf_analyzer 2.51 driven from there.

perf_analyzer is the binary inside the ``tritonclient==2.51.0`` wheel: its loader needs
Debian's ``libb64-0d`` and ``libcudart.so.12``, which ``nvidia-cuda-runtime-cu12`` in the
same virtualenv provides (``LD_LIBRARY_PATH``); no GPU is used. Every run writes its
report with ``-f`` (CSV, latencies in microseconds), which `PerfRun` reads.
"""

from __future__ import annotations

import csv
import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from bench.harness.processes import ROOT

__all__ = ["TOOLS", "PerfRun", "perf_analyzer", "perf_env", "tool_bin"]

#: Where ``make interop`` puts the tools' virtualenvs.
TOOLS = ROOT / ".interop"


def tool_bin(tool: str, name: str) -> Path:
    """``name`` in the bin folder of ``tool``'s virtualenv; a clear error when it is absent."""
    path = TOOLS / tool / "bin" / name
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `make interop` to install {tool}")
    return path


def perf_env() -> dict[str, str]:
    """This process's environment with the CUDA runtime library of perf_analyzer's venv on
    ``LD_LIBRARY_PATH`` (its loader needs ``libcudart.so.12`` even without a GPU)."""
    libs = sorted(TOOLS.glob("perf_analyzer/lib/python3*/site-packages/nvidia/cuda_runtime/lib"))
    env = dict(os.environ)
    if libs:
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            [str(libs[-1]), *filter(None, [env.get("LD_LIBRARY_PATH")])]
        )
    return env


@dataclass
class PerfRun:
    """One perf_analyzer run: its arguments, exit code, CSV rows and console output."""

    args: list[str]
    rc: int
    output: str
    rows: list[dict[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.rc == 0 and bool(self.rows)

    def _row(self) -> dict[str, str]:
        return self.rows[-1]

    @property
    def throughput(self) -> float:
        """Inferences per second of the last level measured."""
        return float(self._row()["Inferences/Second"])

    def latency_ms(self, percentile: int) -> float:
        """``p50``, ``p90``, ``p95`` or ``p99`` client latency of the last level, in ms."""
        return float(self._row()[f"p{percentile} latency"]) / 1000.0

    @property
    def summary(self) -> str:
        """The key figure of a passing run, else the line that says why it failed."""
        if self.ok:
            return (
                f"{self.throughput:.0f} infer/s, p50 {self.latency_ms(50):.2f} ms, "
                f"p99 {self.latency_ms(99):.2f} ms"
            )
        lines = [line.strip() for line in self.output.splitlines() if line.strip()]
        errors = [line for line in lines if "error" in line.lower() or "fail" in line.lower()]
        last = (errors or lines or ["no output"])[-1]
        return f"exit {self.rc}: {last[:200]}"


def perf_analyzer(args: list[str], timeout_s: float = 120.0) -> PerfRun:
    """Run ``perf_analyzer ARGS -f report.csv``, bounded by ``timeout_s`` (then exit 124)."""
    binary = tool_bin("perf_analyzer", "perf_analyzer")
    with tempfile.TemporaryDirectory(prefix="mg-pa-") as tmp:
        report = Path(tmp) / "report.csv"
        cmd = [str(binary), *args, "-f", str(report)]
        try:
            done = subprocess.run(
                cmd,
                env=perf_env(),
                capture_output=True,
                text=True,
                timeout=timeout_s,
                cwd=tmp,
            )
            rc, output = done.returncode, done.stdout + done.stderr
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout or b""
            text = out.decode(errors="replace") if isinstance(out, bytes) else out
            rc, output = 124, f"{text}\ntimed out after {timeout_s:.0f}s"
        rows: list[dict[str, str]] = []
        if report.exists():
            with report.open(newline="") as f:
                rows = list(csv.DictReader(f))
    return PerfRun(args=args, rc=rc, output=output, rows=rows)
