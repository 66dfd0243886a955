"""Load: ``wrk`` (closed loop, parsed into numbers with the CPU every process used) and
`LoadGen`, an open- and closed-loop HTTP/1.1 generator with fixed arrival times."""

from __future__ import annotations

import asyncio
import collections
import re
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from bench.harness.client import ReplyReader
from bench.harness.cpu import CpuMeter, HasTree

__all__ = ["BODY", "LoadGen", "run_loadgen", "wrk", "wrk_script"]

#: One JSON row for ``backends.synthetic.scale_model()``.
BODY = b'{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[1,1,1,1]}]}'


def wrk_script(root: Path, body: bytes = BODY) -> Path:
    """A wrk Lua script that POSTs ``body`` as JSON."""
    path = root / "post.lua"
    text = body.decode().replace("\\", "\\\\").replace("'", "\\'")
    path.write_text(
        f"wrk.method = 'POST'\nwrk.body = '{text}'\n"
        "wrk.headers['Content-Type'] = 'application/json'\n"
    )
    return path


def wrk(
    url: str,
    seconds: float,
    connections: int,
    script: Path | None = None,
    headers: dict[str, str] | None = None,
    meter: Mapping[str, HasTree] | None = None,
) -> dict[str, Any]:
    """``wrk -t1`` (a GET without ``script``); the CPU of ``meter``'s processes per request."""
    args = ["wrk", "-t1", f"-c{connections}", f"-d{int(seconds)}s", "--latency"]
    if script is not None:
        args += ["-s", str(script)]
    for k, v in (headers or {}).items():
        args += ["-H", f"{k}: {v}"]
    with CpuMeter(meter or {}) as cpu:
        out = subprocess.run([*args, url], check=True, capture_output=True, text=True).stdout

    def pct(p: str) -> float:
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)\b", out)
        assert m, out
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    assert rps, out
    assert total, out
    return {
        "rps": float(rps.group(1)),
        "requests": int(total.group(1)),
        "p50_ms": pct("50"),
        "p90_ms": pct("90"),
        "p99_ms": pct("99"),
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": sum(int(g) for g in sock.groups()) if sock else 0,
        "cpu_percent_of_core": cpu.percent,
        "cpu_us_per_request": {
            k: round(1e6 * v / max(1, int(total.group(1))), 1)
            for k, v in cpu.seconds.items()
            if k not in ("other (not this bench)", "steal")
        },
        "connections": connections,
        "seconds": seconds,
    }


class _Conn(ReplyReader):
    def __init__(self, gen: LoadGen) -> None:
        super().__init__()
        self.gen = gen
        self.scheduled = 0.0
        self.sent = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.gen.ready(self)

    def send(self, scheduled: float) -> None:
        self.scheduled = scheduled
        self.sent = time.perf_counter()
        if self.sent - scheduled > 0.002:
            self.gen.late += 1
        assert self.transport is not None
        self.transport.write(self.gen.request)

    def replied(self, status: int, head: bytes, body: bytes) -> None:
        self.gen.done(self, status)

    def connection_lost(self, exc: Exception | None) -> None:
        self.gen.lost(self)


class LoadGen:
    """HTTP/1.1 keep-alive connections, one request in flight on each, no pipelining.

    Open loop: request *i* is due at ``t0 + i / rate``; a due request takes an idle
    connection or, failing that, a new one (up to ``max_conns``) and waits for it. Latency
    is counted from the due time (so a slow server cannot hide behind the client) and also
    from the actual send ("service"). Closed loop: ``conns`` connections send back to back.
    Every request is ``body`` (JSON) with ``headers``.
    """

    def __init__(
        self, host: str, port: int, path: str, headers: dict[str, str], body: bytes = BODY
    ) -> None:
        self.host, self.port = host, port
        lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}", "", ""]
        self.request = "\r\n".join(lines).encode() + body
        self.idle: list[_Conn] = []
        self.pending: collections.deque[float] = collections.deque()
        self.conns = 0
        self.opening = 0
        self.closed_loop = False
        self.window = (0.0, 0.0)
        self.results: list[tuple[int, float, float, float]] = []  # status, done, lat, service
        self.lost_conns = 0
        self.late = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def ready(self, conn: _Conn) -> None:
        self.opening -= 1
        self.conns += 1
        self._next(conn)

    def _next(self, conn: _Conn) -> None:
        if self.closed_loop:
            if time.perf_counter() < self.window[1]:
                conn.send(time.perf_counter())
            return
        if self.pending:
            conn.send(self.pending.popleft())
        else:
            self.idle.append(conn)

    def done(self, conn: _Conn, status: int) -> None:
        now = time.perf_counter()
        self.results.append((status, now, now - conn.scheduled, now - conn.sent))
        self._next(conn)

    def lost(self, conn: _Conn) -> None:
        self.conns -= 1
        self.lost_conns += 1
        if conn in self.idle:
            self.idle.remove(conn)
        if self.closed_loop and time.perf_counter() < self.window[1]:
            loop = asyncio.get_running_loop()
            self.opening += 1
            self._tasks.add(loop.create_task(self._connect(loop)))

    async def _open(self, n: int) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(n):
            self.opening += 1
            self._tasks.add(loop.create_task(self._connect(loop)))

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            await loop.create_connection(lambda: _Conn(self), self.host, self.port)
        except OSError:
            self.opening -= 1

    async def closed(self, conns: int, warm_s: float, seconds: float) -> dict[str, Any]:
        self.closed_loop = True
        start = time.perf_counter()
        self.window = (start + warm_s, start + warm_s + seconds)
        await self._open(conns)
        await asyncio.sleep(warm_s + seconds + 0.5)
        return self._summary(seconds, offered=None)

    async def open(
        self, rate: float, warm_s: float, seconds: float, max_conns: int = 256
    ) -> dict[str, Any]:
        await self._open(64)
        await asyncio.sleep(0.3)
        start = time.perf_counter()
        end = start + warm_s + seconds
        self.window = (start + warm_s, end)
        issued = 0
        while True:
            now = time.perf_counter()
            if now >= end:
                break
            due = int((now - start) * rate)
            while issued < due:
                issued += 1
                scheduled = start + issued / rate
                if self.idle:
                    self.idle.pop().send(scheduled)
                else:
                    self.pending.append(scheduled)
            if self.pending:
                want = len(self.pending) - self.opening
                room = max_conns - self.conns - self.opening
                if want > 0 and room > 0:
                    await self._open(min(want, room, 64))
            # NOTE: never below 1 ms: shorter timers make the event loop spin (epoll's
            # timeout is in whole ms), which cost this generator 60% of a core at any rate.
            next_due = start + (issued + 1) / rate
            await asyncio.sleep(max(0.001, next_due - time.perf_counter()))
        await asyncio.sleep(1.0)  # let the last ones finish (not counted if late)
        out = self._summary(seconds, offered=rate)
        out["connections_used"] = self.conns
        out["issued"] = issued
        out["sent_over_2ms_late_fraction"] = round(self.late / max(1, issued), 4)
        out["unsent_at_end"] = len(self.pending)
        return out

    def _summary(self, seconds: float, offered: float | None) -> dict[str, Any]:
        lo, hi = self.window
        inside = [r for r in self.results if lo <= r[1] < hi]
        by_status: dict[int, list[tuple[float, float]]] = collections.defaultdict(list)
        for status, _, latency, service in inside:
            by_status[status].append((latency, service))

        def pcts(rows: list[tuple[float, float]], i: int) -> dict[str, float]:
            if not rows:
                return {}
            values = sorted(r[i] * 1000 for r in rows)

            def pick(q: float) -> float:
                return values[min(len(values) - 1, int(q * len(values)))]

            return {"p50_ms": pick(0.5), "p90_ms": pick(0.9), "p99_ms": pick(0.99)}

        ok = by_status.get(200, [])
        rejected = by_status.get(429, [])
        return {
            "offered_rps": offered,
            "answered_rps": len(inside) / seconds,
            "goodput_rps": len(ok) / seconds,
            "status_counts": {str(k): len(v) for k, v in sorted(by_status.items())},
            "ok_latency": pcts(ok, 0),
            "ok_service": pcts(ok, 1),
            "rejected_latency": pcts(rejected, 0),
            "rejected_service": pcts(rejected, 1),
            "lost_connections": self.lost_conns,
        }


def run_loadgen(
    coro_factory: Callable[[], Any], meter: Mapping[str, HasTree] | None = None
) -> dict[str, Any]:
    """Run one `LoadGen` coroutine on a fresh uvloop loop, metering ``meter``'s CPU."""
    try:
        import uvloop

        factory: Any = uvloop.new_event_loop
    except ImportError:  # pragma: no cover
        factory = None
    with CpuMeter(meter or {}) as cpu, asyncio.Runner(loop_factory=factory) as runner:
        out: dict[str, Any] = runner.run(coro_factory())
    out["cpu_percent_of_core"] = cpu.percent
    return out
