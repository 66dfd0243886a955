"""What the benchmarks share: processes on 127.0.0.1, CPU meters, a raw HTTP/1.1 client,
load generators (wrk and an open-loop generator), py-spy profiling and timing.

Importing it needs only the standard library; each helper imports what it drives (httpx,
uvloop, uvicorn) when called, so the worker benchmark runs on a bare GPU machine.
"""

from __future__ import annotations

from bench.harness.client import RawPool
from bench.harness.cpu import CpuMeter, Quiet, cpu_seconds, machine, process_tree
from bench.harness.load import BODY, LoadGen, run_loadgen, wrk, wrk_script
from bench.harness.processes import (
    CLI,
    ROOT,
    Deployment,
    Proc,
    free_port,
    nginx_binary,
    nginx_conf,
    wait_until,
)
from bench.harness.profiling import print_profile, profile_during, summarize_stacks
from bench.harness.timing import per_call_us

__all__ = [
    "BODY",
    "CLI",
    "ROOT",
    "CpuMeter",
    "Deployment",
    "LoadGen",
    "Proc",
    "Quiet",
    "RawPool",
    "cpu_seconds",
    "free_port",
    "machine",
    "nginx_binary",
    "nginx_conf",
    "per_call_us",
    "print_profile",
    "process_tree",
    "profile_during",
    "run_loadgen",
    "summarize_stacks",
    "wait_until",
    "wrk",
    "wrk_script",
]
