"""py-spy profiles of a process under load, summarized by frame and by area of the gateway.

Without ``--native``, time inside native code (uvloop, granian's Rust) is charged to the
Python frame that called it.
"""

from __future__ import annotations

import collections
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.harness.processes import ROOT

__all__ = ["AREAS", "print_profile", "profile_during", "summarize_stacks"]


def profile_during(pid: int, seconds: float, out: Path, load: Callable[[], Any]) -> dict[str, Any]:
    """``py-spy record`` (raw collapsed stacks, non-blocking) while ``load()`` runs."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        return {"error": "py-spy not found"}
    args = [spy, "record", "--nonblocking", "-r", "200", "-d", str(int(seconds)), "-f", "raw"]
    proc = subprocess.Popen(
        [*args, "-o", str(out), "--pid", str(pid)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    time.sleep(0.5)
    load()
    _, err = proc.communicate(timeout=seconds + 30)
    if not out.exists():
        return {"error": err.decode(errors="replace")[-500:]}
    return summarize_stacks(out, rate=200, seconds=seconds)


_FRAME = re.compile(r"^(?P<fn>.*?) \((?P<file>[^():]+)(?::\d+)?\)$")
_PREFIXES = (
    "site-packages/",
    f"{ROOT}/",
    f"lib/python{sys.version_info[0]}.{sys.version_info[1]}/",
)


def _frame(text: str) -> str:
    m = _FRAME.match(text.strip())
    if not m:
        return text.strip()
    file = m.group("file")
    for marker in _PREFIXES:
        if marker in file:
            file = file.split(marker, 1)[1]
    return f"{m.group('fn')} ({file})"


#: Where a sample's time goes, first match wins (markers are in the normalized frames).
AREAS = (
    ("logging (access log record + QueueListener thread)", ("(logging/",)),
    ("background (registry/worker polls, probes)", ("(aiosqlite/", "(sqlalchemy/", "(httpx/")),
    (
        "forwarding client (Forwarder.send; aiohttp in a bare proxy)",
        ("(aiohttp/", "Forwarder.send"),
    ),
    (
        "routing (resolve, policy, balancer)",
        (
            "RoutingTable.",
            "(registry/",
            "(gateway/balancing/balancer.py)",
            "(gateway/balancing/outliers.py)",
        ),
    ),
    ("metrics (prometheus_client)", ("(prometheus_client/",)),
)
_WRAPPERS = ("(click/", "(multiprocessing/", "(granian/server/", "runpy", "(modelgate/cli/")


def _area(frames: list[str]) -> str:
    for name, markers in AREAS:
        if any(m in f for f in frames for m in markers):
            return name
    leaf = frames[-1]
    # Native code is charged to its Python caller: the loop (uvloop under uvicorn's
    # ``asyncio.Runner``, granian's Rust runtime) and the server's send/receive.
    if leaf.startswith(("MPServer._spawn_asgi_lifespan_worker", "Runner.run ")):
        return "event loop + server runtime (native: uvloop, granian)"
    if leaf.startswith(("OipApp.__call__ ", "OipApp._body ")) or any(
        server in leaf for server in ("(granian/", "(uvicorn/")
    ):
        return "ASGI server send/receive (uvicorn httptools, granian)"
    return "other gateway Python (OIP parsing, data plane glue)"


def summarize_stacks(path: Path, *, rate: int, seconds: float, top: int = 15) -> dict[str, Any]:
    """Self and inclusive shares of py-spy's raw (collapsed) stacks, and shares by area."""
    self_t: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    areas: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = [_frame(f) for f in stack.split(";") if f]
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += n
        self_t[frames[-1]] += n
        areas[_area(frames)] += n
        for f in set(frames):
            if not any(w in f for w in _WRAPPERS):
                incl[f] += n
    if not total:
        return {"samples": 0}

    def rows(counter: collections.Counter[str]) -> list[list[Any]]:
        return [[round(100 * c / total, 1), f] for f, c in counter.most_common(top)]

    return {
        "samples": total,
        "busy_fraction_of_wall": round(total / (rate * seconds), 2),
        "areas": rows(areas),
        "self": rows(self_t),
        "inclusive": rows(incl),
    }


def print_profile(name: str, prof: dict[str, Any]) -> None:
    """Areas, the top 10 self and the top 12 inclusive frames of one summary."""
    if not prof.get("samples"):
        return
    print(f"\n# py-spy {name}: {prof['samples']} samples, busy {prof['busy_fraction_of_wall']}")
    print("  area %  where")
    for pct_, frame in prof["areas"]:
        print(f"  {pct_:6.1f}  {frame}")
    print("  self %  frame")
    for pct_, frame in prof["self"][:10]:
        print(f"  {pct_:6.1f}  {frame}")
    print("  incl %  frame")
    for pct_, frame in prof["inclusive"][:12]:
        print(f"  {pct_:6.1f}  {frame}")
