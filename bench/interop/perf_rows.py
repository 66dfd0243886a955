"""perf_analyzer 2.51 against the gateway (HTTP and gRPC, with and without a version
constraint, sync, ``--async``, a request-rate sweep, a gRPC stream) and against a worker
directly. Each run is short and bounded: three 500 ms windows (``-s 1000`` takes any three
as stable: on a shared 2-core machine a stricter check fails runs with "Failed to obtain
stable measurement"), under a wall-clock limit."""

from __future__ import annotations

import re
import subprocess

from bench.harness.tools import PerfRun, perf_analyzer, perf_env, tool_bin
from bench.interop.report import Rows
from bench.interop.stack import MODEL, Stack

__all__ = ["BOUNDED", "perf_rows", "perf_version"]

TOOL = "perf_analyzer"
#: Short windows, stable at once, three at most: a few seconds per run.
BOUNDED = ["-p", "500", "-s", "1000", "-r", "3"]


def perf_version() -> str:
    """perf_analyzer's own ``--version`` (``2.51.0``), or ``?`` when it cannot start."""
    try:
        done = subprocess.run(
            [str(tool_bin(TOOL, TOOL)), "--version"],
            env=perf_env(),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    match = re.search(r"Version (\S+)", done.stdout + done.stderr)
    return match.group(1) if match else "?"


def _run(rows: Rows, version: str, what: str, url: str | None, args: list[str]) -> None:
    if url is None:
        rows.add(TOOL, version, what, False, "no gRPC port: the feature has not landed")
        return
    run: PerfRun = perf_analyzer(["-m", MODEL, "-u", url, *BOUNDED, *args], timeout_s=90)
    label = f"{what}: `{' '.join(args)}`" if args else what
    rows.add(TOOL, version, label, run.ok, run.summary)


def perf_rows(stack: Stack, rows: Rows) -> None:
    """Every perf_analyzer row (see the module docstring)."""
    version = perf_version()
    gw, grpc = stack.hostport, stack.grpc
    _run(rows, version, "gateway HTTP", gw, [])
    _run(rows, version, "gateway HTTP, exact version", gw, ["-x", "1.0.0"])
    _run(rows, version, "gateway HTTP, version range", gw, ["-x", "^1.0"])
    _run(rows, version, "gateway HTTP, async", gw, ["--async", "--concurrency-range", "4"])
    _run(rows, version, "gateway HTTP, request rate", gw, ["--request-rate-range", "50:100:50"])
    _run(rows, version, "gateway gRPC", grpc, ["-i", "grpc"])
    _run(rows, version, "gateway gRPC, exact version", grpc, ["-i", "grpc", "-x", "1.0.0"])
    _run(rows, version, "gateway gRPC, version range", grpc, ["-i", "grpc", "-x", "^1.0"])
    _run(rows, version, "gateway gRPC, stream", grpc, ["-i", "grpc", "--streaming"])
    _run(rows, version, "worker HTTP", stack.worker_http("a"), [])
    _run(rows, version, "worker HTTP, exact version", stack.worker_http("a"), ["-x", "1.0.0"])
    _run(rows, version, "worker gRPC", stack.worker_grpc_url("a"), ["-i", "grpc"])
    _run(
        rows,
        version,
        "worker gRPC, stream",
        stack.worker_grpc_url("a"),
        ["-i", "grpc", "--streaming"],
    )
