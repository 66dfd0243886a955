"""CPU accounting from ``/proc``: process trees, per-process CPU over an interval, the rest
of the (shared) machine, and waiting for that rest to be quiet before a measured run."""

from __future__ import annotations

import collections
import contextlib
import os
import platform
import resource
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

__all__ = [
    "CpuMeter",
    "HasTree",
    "Quiet",
    "cpu_seconds",
    "machine",
    "machine_busy_seconds",
    "process_tree",
]

CLK = os.sysconf("SC_CLK_TCK")


class HasTree(Protocol):
    """Anything with a process tree to meter (`bench.harness.processes.Proc`)."""

    def tree(self) -> list[int]: ...


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = collections.defaultdict(list)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids[ppid].append(int(entry))
    return kids


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants, parents before children."""
    kids = _children()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of the live processes among ``pids``."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / CLK
    return total


def machine_busy_seconds() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine so far, from ``/proc/stat``."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq) / CLK, steal / CLK


class CpuMeter:
    """CPU (user+sys) of named process trees over an interval, in % of one core.

    Also: ``wrk`` (children reaped meanwhile), this process, and ``other``: everything else
    on the machine (the machine is shared; a busy neighbour shows up here), plus ``steal``.
    """

    def __init__(self, procs: Mapping[str, HasTree]) -> None:
        self.trees = {name: p.tree() for name, p in procs.items()}
        self.ours = [pid for pid in process_tree(os.getpid()) if pid != os.getpid()]

    def __enter__(self) -> CpuMeter:
        self.t0 = time.monotonic()
        self.c0 = {name: cpu_seconds(pids) for name, pids in self.trees.items()}
        self.o0 = cpu_seconds(self.ours)
        self.m0 = machine_busy_seconds()
        self.r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.s0 = resource.getrusage(resource.RUSAGE_SELF)
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.monotonic() - self.t0
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        s1 = resource.getrusage(resource.RUSAGE_SELF)
        m1 = machine_busy_seconds()
        self.seconds = {
            name: cpu_seconds(pids) - self.c0[name] for name, pids in self.trees.items()
        }
        # Children reaped meanwhile: only the load generator (wrk) exits during a run.
        reaped = (r1.ru_utime + r1.ru_stime) - (self.r0.ru_utime + self.r0.ru_stime)
        if reaped > 0.01:
            self.seconds["wrk"] = reaped
        own = (s1.ru_utime + s1.ru_stime) - (self.s0.ru_utime + self.s0.ru_stime)
        self.seconds["bench (this process)"] = own
        ours = cpu_seconds(self.ours) - self.o0 + reaped + own
        self.seconds["other (not this bench)"] = max(0.0, (m1[0] - self.m0[0]) - ours)
        self.seconds["steal"] = m1[1] - self.m0[1]
        self.percent = {k: round(100 * v / wall, 1) for k, v in self.seconds.items()}


class Quiet:
    """Before a measured run, wait (within a total budget) for the rest of the machine to
    use under ``limit`` % of a core; the machine is shared with other sessions' tests."""

    def __init__(self, budget_s: float, limit: float = 25.0) -> None:
        self.budget_s = budget_s
        self.limit = limit
        self.waited_s = 0.0

    def wait(self, ours: list[int] | None = None) -> float:
        """Returns the other load (% of a core) seen last, over 0.3 s. ``ours`` defaults to
        this process's tree."""
        while True:
            pids = ours if ours is not None else process_tree(os.getpid())
            c0, m0, t0 = cpu_seconds(pids), machine_busy_seconds()[0], time.monotonic()
            time.sleep(0.3)
            wall = time.monotonic() - t0
            other = 100 * ((machine_busy_seconds()[0] - m0) - (cpu_seconds(pids) - c0)) / wall
            if other < self.limit or self.waited_s >= self.budget_s:
                return other
            self.waited_s += wall


def machine() -> dict[str, Any]:
    """The CPU model, Python, platform and the versions of the packages that serve."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for pkg in ("granian", "aiohttp", "httpx", "uvicorn", "litestar", "onnxruntime"):
        with contextlib.suppress(PackageNotFoundError):
            versions[pkg] = version(pkg)
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
    }
