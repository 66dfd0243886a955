"""Gateway targets G1, G2, G3, G5, G6 (``reference/anchors.md``), side by side in one run.

Everything runs on 127.0.0.1 with the CLI a user would run (``modelgate serve``,
``modelgate worker``) against a fresh SQLite registry in a temporary directory (embedded
mode, no Redis); the model is ``backends.synthetic.scale_model()`` and each request is one
JSON row. ``wrk -t1`` drives G1-G3; an open-loop generator defined here drives G5 and G6.

* **G1** added p50 at concurrency 1: ``wrk -c1`` (closed loop, one keep-alive connection)
  direct to the worker and via the gateway; ``p50(gateway) - p50(direct)``.
* **G2** throughput at ``wrk -c64``: gateway / direct to the same worker process, with
  ``nginx`` (``proxy_pass`` to a keep-alive upstream, one worker process) in front of the
  same worker as the reference, and the CPU every process used (``/proc``; ``other`` is the
  rest of the machine, which is shared).
* **G3** the gateway's full feature path / bare forwarding. *Full*: ``POST
  /v2/models/m/infer`` with ``X-Model-Version: ^1`` (a range resolved) and ``X-Route-Key``
  under a 90/10 sticky traffic policy, with per-request metrics (the access log is opt-in).
  *Bare*: a raw-ASGI proxy defined here (``make_bare_app``) under the same server (uvicorn,
  one process) that reads the body and POSTs it over pooled keep-alive HTTP/1.1 connections
  (`RawPool`, the same approach as the gateway's forwarder) to the worker's fixed URL: no
  routing, no metrics, no retries. ``bare_aiohttp`` is the same proxy with aiohttp.
  Auth and rate limiting are not on the gateway's inference path, so neither side has them.
* **G5** p99 with P2C / p99 with round robin: four workers of one version, one slowed 10x
  (``--fault-delay-ms`` = 9x the p50 measured first with four healthy workers), the same
  fixed open-loop arrival rate (half the healthy fleet's closed-loop capacity) through two
  gateways side by side, one started with ``MODELGATE_GATEWAY_STRATEGY=round_robin``.
* **G6** the gateway's saturating throughput (64 connections back to back, from the same
  generator so both figures share one client cost), then twice that rate offered open-loop
  (fixed arrival times, latency counted from the due time and from the send) with the
  per-model gate set (``MODELGATE_GATEWAY_MODEL_CONCURRENCY`` / ``_QUEUE`` = 32 / 32):
  goodput (200s/s) / max, and the p99 of the 429s. Also, as a diagnostic, the same with
  the model as the bottleneck (a worker that sleeps 40 ms per request behind the gate), and
  the CPU price of one 429 (a gateway whose gate is 1 + 0).

Extras, in full mode: the gateway with the access logger raised to WARNING (a
``sitecustomize`` on a second gateway's path; the gateway's code is not touched), the same
under uvicorn, the bare proxy with a raw asyncio HTTP/1.1 client (``RawPool``) and with a
default ``httpx.AsyncClient``; py-spy profiles of the gateway at c64 and at 2x overload,
summarized by area and by frame.

The machine is shared with other sessions' tests: each measured run starts once the rest of
the machine has used under 25% of a core for 0.3 s (within a 30 s budget for the whole
run), G1-G3 take the median of three interleaved rounds, and every round is in the JSON.

    python bench/bench_gateway.py [--quick] [--out DIR] [--no-profile] [--no-variants]

Prints a table of ratios last; ``--out DIR`` writes every number to bench_gateway.json.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
CLI = [sys.executable, "-m", "modelgate"]
CLK = os.sysconf("SC_CLK_TCK")
BODY = b'{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[1,1,1,1]}]}'
_CL = re.compile(rb"content-length:\s*(\d+)", re.I)
_CT = re.compile(rb"content-type:\s*([^\r\n]+)", re.I)
TARGETS = {"G1": 0.3, "G2": 0.6, "G3": 0.85, "G5": 0.2, "G6": 0.9, "G6_reject_p99_ms": 5.0}


# -- the bare forwarding proxy (G3's denominator), served by uvicorn in its own process --


def make_bare_app() -> Any:
    """Raw ASGI: read the body, POST it to ``BENCH_UPSTREAM``, answer with the reply bytes.

    ``BENCH_CLIENT=forwarder`` (the gateway's own `gateway.forward.Forwarder`, the default),
    ``aiohttp`` (one pooled session), ``httpx`` (a default ``httpx.AsyncClient``) or ``raw``
    (`RawPool`: HTTP/1.1 over asyncio protocols, the floor for a Python hop). Nothing else:
    no routing, metrics, retries.
    """
    upstream = os.environ["BENCH_UPSTREAM"]
    kind = os.environ.get("BENCH_CLIENT", "forwarder")
    state: dict[str, Any] = {}

    async def post(body: bytes, content_type: bytes) -> tuple[int, bytes, bytes]:
        headers = {"content-type": content_type.decode("latin-1")}
        if kind == "forwarder":
            from gateway.forward import Forwarder

            forwarder = state.get("forwarder")
            if forwarder is None:
                forwarder = state["forwarder"] = Forwarder()
                await forwarder.start()
            reply = await forwarder.send("POST", upstream, body=body, headers=headers, timeout_s=30)
            kinds = [v for k, v in reply.headers if k == b"content-type"]
            return reply.status, reply.body, kinds[0] if kinds else b"application/json"
        if kind == "raw":
            pool = state.get("pool")
            if pool is None:
                pool = state["pool"] = RawPool(upstream)
            return await pool.post(body, content_type)
        if kind == "httpx":
            import httpx

            client = state.get("client")
            if client is None:
                client = state["client"] = httpx.AsyncClient()
            r = await client.post(upstream, content=body, headers=headers)
            return r.status_code, r.content, r.headers.get("content-type", "").encode()
        import aiohttp

        session = state.get("session")
        if session is None:
            session = state["session"] = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30),
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Content-Type", "Accept-Encoding"),
            )
        async with session.post(upstream, data=body, headers=headers) as response:
            payload = await response.read()
            return response.status, payload, response.headers.get("content-type", "").encode()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        content_type = b"application/json"
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        status, payload, reply_type = await post(b"".join(chunks), content_type)
        headers = [(b"content-type", reply_type), (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    return app


class _RawConn(asyncio.Protocol):
    def __init__(self, pool: RawPool) -> None:
        self.pool = pool
        self.buf = bytearray()
        self.head = 0
        self.need: int | None = None
        self.status = 0
        self.ctype = b""
        self.waiter: asyncio.Future[tuple[int, bytes, bytes]] | None = None
        self.transport: asyncio.Transport | None = None
        self.alive = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.need is None:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end])
            self.status = int(head[9:12])
            length = _CL.search(head)
            kind = _CT.search(head)
            self.ctype = kind.group(1) if kind else b"application/json"
            self.head = end + 4
            self.need = self.head + (int(length.group(1)) if length else 0)
        if len(self.buf) >= self.need:
            body = bytes(self.buf[self.head : self.need])
            del self.buf[: self.need]
            self.need = None
            waiter, self.waiter = self.waiter, None
            if waiter is not None and not waiter.done():
                waiter.set_result((self.status, body, self.ctype))

    def connection_lost(self, exc: Exception | None) -> None:
        self.alive = False
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("upstream closed"))


class RawPool:
    """A keep-alive pool of HTTP/1.1 connections to one URL, one request at a time on each."""

    def __init__(self, url: str) -> None:
        rest = url.split("://", 1)[1]
        hostport, _, path = rest.partition("/")
        self.host, _, port = hostport.partition(":")
        self.port = int(port or 80)
        self.prefix = f"POST /{path} HTTP/1.1\r\nHost: {hostport}\r\n".encode()
        self.idle: list[_RawConn] = []

    async def post(
        self, body: bytes, content_type: bytes, timeout_s: float | None = None
    ) -> tuple[int, bytes, bytes]:
        """One request; raises ``ConnectionError``/``OSError``, or ``TimeoutError`` after
        ``timeout_s`` (the connection is then dropped: its answer is still on the way)."""
        loop = asyncio.get_running_loop()
        conn = None
        while self.idle:
            candidate = self.idle.pop()
            if candidate.alive:
                conn = candidate
                break
        if conn is None:
            _, conn = await loop.create_connection(lambda: _RawConn(self), self.host, self.port)
        waiter = conn.waiter = loop.create_future()
        assert conn.transport is not None
        conn.transport.write(
            b"".join(
                (
                    self.prefix,
                    b"content-type: ",
                    content_type,
                    b"\r\ncontent-length: ",
                    str(len(body)).encode(),
                    b"\r\n\r\n",
                    body,
                )
            )
        )
        timer = None
        if timeout_s is not None:
            timer = loop.call_later(timeout_s, _expire, waiter)
        try:
            result = await waiter
        except TimeoutError:
            conn.alive = False
            conn.transport.close()
            raise
        finally:
            if timer is not None:
                timer.cancel()
        self.idle.append(conn)
        return result


def _expire(waiter: asyncio.Future[Any]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


#: Written as ``sitecustomize.py`` on the path of the variant gateways. The gateway's code is
#: not edited: the access logger is raised to WARNING and, with ``BENCH_RAW_FORWARDER=1``,
#: ``gateway.forward.Forwarder.send`` is replaced for POSTs by `RawPool` (deadline kept,
#: errors translated as the original does).
SITECUSTOMIZE = """
import logging
import os

logging.getLogger("modelgate.access").setLevel(logging.WARNING)
logging.getLogger("httpx").setLevel(logging.WARNING)

if os.environ.get("BENCH_RAW_FORWARDER"):
    import bench_gateway
    import gateway.forward as forward
    from gateway.errors import BackendUnavailable, DeadlineExceeded

    _pools = {}
    _original = forward.Forwarder.send

    async def send(self, method, url, *, body, headers, timeout_s):
        if method != "POST" or body is None:
            return await _original(
                self, method, url, body=body, headers=headers, timeout_s=timeout_s
            )
        pool = _pools.get(url)
        if pool is None:
            pool = _pools[url] = bench_gateway.RawPool(url)
        kind = headers.get("content-type", "application/json").encode("latin-1")
        try:
            status, payload, reply_type = await pool.post(body, kind, timeout_s)
        except TimeoutError:
            raise DeadlineExceeded(f"the worker did not answer within {timeout_s * 1000:.0f} ms")
        except (ConnectionError, OSError) as exc:
            raise BackendUnavailable(f"worker at {url.split('/v2')[0]} failed: {exc}") from None
        return forward.Reply(status, [(b"content-type", reply_type)], payload)

    forward.Forwarder.send = send
"""


def serve_bare(port: int) -> None:
    """The same uvicorn call as ``gateway.server.run_gateway``, on this file's app."""
    import uvicorn

    uvicorn.run(
        "bench_gateway:make_bare_app",
        factory=True,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
    )


# -- processes ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as exc:
            last = exc
        time.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what} ({last})")


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
    kids = _children()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / CLK
    return total


class Proc:
    """A process this bench started; stopped by its own id (and its own children's ids)."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        self._file = log.open("ab")
        self.popen = subprocess.Popen(
            args, env=env, stdout=self._file, stderr=subprocess.STDOUT, cwd=ROOT
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def tree(self) -> list[int]:
        return process_tree(self.pid)

    def serving_pid(self) -> int:
        """The deepest descendant (granian's worker process), or the process itself."""
        tree = self.tree()
        return tree[-1]

    def stop(self, timeout_s: float = 20.0) -> None:
        if self.popen.poll() is None:
            descendants = self.tree()[1:]
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=5)
            for pid in descendants:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self._file.close()


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

    def __init__(self, procs: dict[str, Proc]) -> None:
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


# -- wrk ---------------------------------------------------------------------------------


def wrk_script(root: Path) -> Path:
    path = root / "post.lua"
    body = BODY.decode().replace("\\", "\\\\").replace("'", "\\'")
    path.write_text(
        f"wrk.method = 'POST'\nwrk.body = '{body}'\n"
        "wrk.headers['Content-Type'] = 'application/json'\n"
    )
    return path


def wrk(
    url: str,
    seconds: float,
    connections: int,
    script: Path,
    headers: dict[str, str] | None = None,
    meter: dict[str, Proc] | None = None,
) -> dict[str, Any]:
    args = ["wrk", "-t1", f"-c{connections}", f"-d{int(seconds)}s", "--latency", "-s", str(script)]
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


# -- an open-loop (and closed-loop) HTTP/1.1 load generator for G6 -------------------------


class _Conn(asyncio.Protocol):
    def __init__(self, gen: LoadGen) -> None:
        self.gen = gen
        self.buf = bytearray()
        self.need: int | None = None
        self.status = 0
        self.transport: asyncio.Transport | None = None
        self.scheduled = 0.0
        self.sent = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.gen.ready(self)

    def send(self, scheduled: float) -> None:
        self.scheduled = scheduled
        self.sent = time.perf_counter()
        if self.sent - scheduled > 0.002:
            self.gen.late += 1
        assert self.transport is not None
        self.transport.write(self.gen.request)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.need is None:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end])
            self.status = int(head[9:12])
            m = _CL.search(head)
            self.need = end + 4 + (int(m.group(1)) if m else 0)
        if len(self.buf) >= self.need:
            del self.buf[: self.need]
            self.need = None
            self.gen.done(self, self.status)

    def connection_lost(self, exc: Exception | None) -> None:
        self.gen.lost(self)


class LoadGen:
    """HTTP/1.1 keep-alive connections, one request in flight on each, no pipelining.

    Open loop: request *i* is due at ``t0 + i / rate``; a due request takes an idle
    connection or, failing that, a new one (up to ``max_conns``) and waits for it. Latency
    is counted from the due time (so a slow server cannot hide behind the client) and also
    from the actual send ("service"). Closed loop: ``conns`` connections send back to back.
    """

    def __init__(self, host: str, port: int, path: str, headers: dict[str, str]) -> None:
        self.host, self.port = host, port
        lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        lines += ["Content-Type: application/json", f"Content-Length: {len(BODY)}", "", ""]
        self.request = "\r\n".join(lines).encode() + BODY
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
            pick = lambda q: values[min(len(values) - 1, int(q * len(values)))]  # noqa: E731
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


def run_loadgen(coro_factory: Callable[[], Any], meter: dict[str, Proc]) -> dict[str, Any]:
    try:
        import uvloop

        factory: Any = uvloop.new_event_loop
    except ImportError:  # pragma: no cover
        factory = None
    with CpuMeter(meter) as cpu, asyncio.Runner(loop_factory=factory) as runner:
        out = runner.run(coro_factory())
    out["cpu_percent_of_core"] = cpu.percent
    return out


# -- py-spy ------------------------------------------------------------------------------


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


def _frame(text: str) -> str:
    m = _FRAME.match(text.strip())
    if not m:
        return text.strip()
    file = m.group("file")
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in file:
            file = file.split(marker, 1)[1]
    return f"{m.group('fn')} ({file})"


#: Where a sample's time goes, first match wins (markers are in the normalized frames).
AREAS = (
    ("logging (access log record + QueueListener thread)", ("(logging/",)),
    ("background (registry/worker polls, probes)", ("(aiosqlite/", "(sqlalchemy/", "(httpx/")),
    ("forwarding client (aiohttp, Forwarder.send)", ("(aiohttp/", "Forwarder.send")),
    (
        "routing (resolve, policy, balancer)",
        ("RoutingTable.", "(registry/", "(gateway/balancer.py)", "(gateway/outliers.py)"),
    ),
    ("metrics (prometheus_client)", ("(prometheus_client/",)),
)
_WRAPPERS = ("(click/", "(multiprocessing/", "(granian/server/", "runpy", "(gateway/cli.py)")


def _area(frames: list[str]) -> str:
    for name, markers in AREAS:
        if any(m in f for f in frames for m in markers):
            return name
    leaf = frames[-1]
    if leaf.startswith("MPServer._spawn_asgi_lifespan_worker"):
        return "event loop + server runtime (native, uvloop/granian)"
    if leaf.startswith(("OipApp.__call__ ", "OipApp._body ")) or "(granian/" in leaf:
        return "ASGI send/receive (granian, native)"
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


# -- the deployment ----------------------------------------------------------------------


class Deployment:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = dict(os.environ)
        for key in list(self.env):
            if key.startswith("MODELGATE_"):
                del self.env[key]
        self.env.update(
            MODELGATE_DATABASE_URL=f"sqlite+aiosqlite:///{root}/r.db",
            MODELGATE_ARTIFACT_ROOT=str(root / "artifacts"),
            MODELGATE_WORKER_INTRA_OP_THREADS="1",
            MODELGATE_GATEWAY_LOG_LEVEL="warning",
            MODELGATE_WORKER_LOG_LEVEL="warning",
            PYTHONPATH=os.pathsep.join([str(ROOT), str(BENCH)]),
        )
        self.procs: dict[str, Proc] = {}
        self.gateway: Proc | None = None
        self.gateway_url = ""
        self.token = ""
        self.workers: dict[str, tuple[Proc, int]] = {}

    def cli(self, *args: str) -> str:
        r = subprocess.run(
            [*CLI, *args], env=self.env, check=True, capture_output=True, text=True, cwd=ROOT
        )
        return r.stdout.strip()

    def start(self, name: str, args: list[str], **env: str) -> Proc:
        proc = Proc(name, args, self.env | env, self.root / f"{name}.log")
        self.procs[name] = proc
        return proc

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is not None:
            proc.stop()

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)

    def setup(self) -> None:
        self.cli("db", "upgrade")
        self.token = self.cli("tokens", "create", "--name", "bench", "--scope", "admin")

    def start_gateway(self, **env: str) -> None:
        import httpx

        self.stop("gateway")
        port = free_port()
        self.gateway = self.start("gateway", [*CLI, "serve", "--port", str(port)], **env)
        self.gateway_url = f"http://127.0.0.1:{port}"
        wait_until(
            lambda: httpx.get(f"{self.gateway_url}/v2/health/ready").status_code == 200,
            "the gateway",
        )

    def admin(self, via: str | None = None) -> Any:
        import httpx

        return httpx.Client(
            base_url=via or self.gateway_url,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30,
        )

    def publish(self, model: str, versions: list[str]) -> None:
        from backends.synthetic import scale_model

        with self.admin() as c:
            c.post("/admin/v1/models", json={"name": model}).raise_for_status()
            for version in versions:
                files = {"file": ("m.onnx", scale_model(), "application/octet-stream")}
                r = c.post(
                    f"/admin/v1/models/{model}/versions", data={"version": version}, files=files
                )
                assert r.status_code == 201, r.text

    def traffic(self, model: str, policy: dict[str, Any]) -> None:
        with self.admin() as c:
            c.put(f"/admin/v1/models/{model}/traffic", json=policy).raise_for_status()

    def start_worker(self, worker_id: str, loads: list[str], *extra: str) -> int:
        port = free_port()
        args = [*CLI, "worker", "--port", str(port), "--id", worker_id]
        for load in loads:
            args += ["--load", load]
        self.start(f"worker-{worker_id}", [*args, *extra])
        self.workers[worker_id] = (self.procs[f"worker-{worker_id}"], port)
        return port

    def stop_worker(self, worker_id: str) -> None:
        self.workers.pop(worker_id, None)
        self.stop(f"worker-{worker_id}")

    def serving(self, via: str | None = None) -> dict[str, set[str]]:
        with self.admin(via) as c:
            rows = c.get("/admin/v1/workers").json()
        return {
            r["id"]: {f"{i['model']}@{i['version']}" for i in r["loaded"] if i["ready"]}
            for r in rows
            if r["balancer"] is not None and not r["stale"] and r.get("state") != "stopped"
        }

    def wait_serving(
        self, expect: dict[str, set[str]], absent: tuple[str, ...] = (), via: str | None = None
    ) -> None:
        def check() -> bool:
            seen = self.serving(via)
            return all(expect[w] <= seen.get(w, set()) for w in expect) and not any(
                w in seen for w in absent
            )

        wait_until(check, f"the gateway to see workers {sorted(expect)}", 90)

    def worker_requests(self, via: str) -> dict[str, float]:
        """``modelgate_gateway_requests_total`` summed per worker, from ``/metrics``."""
        import httpx

        text = httpx.get(f"{via}/metrics", timeout=10).text
        out: dict[str, float] = collections.defaultdict(float)
        for m in re.finditer(
            r"^modelgate_gateway_requests_total\{([^}]*)\} ([\d.e+]+)$", text, re.M
        ):
            worker = re.search(r'worker="([^"]*)"', m.group(1))
            if worker:
                out[worker.group(1)] += float(m.group(2))
        return dict(out)


def nginx_conf(root: Path, port: int, upstream_port: int) -> Path:
    path = root / "nginx.conf"
    user = "user root;\n" if os.geteuid() == 0 else ""
    temp = "".join(
        f"  {kind}_temp_path {root}/nginx-{kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    path.write_text(
        f"""{user}worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
{temp}  upstream backend {{ server 127.0.0.1:{upstream_port}; keepalive 128; }}
  server {{
    listen 127.0.0.1:{port} backlog=1024;
    location / {{
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
"""
    )
    return path


# -- the run -----------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for pkg in ("granian", "aiohttp", "httpx", "uvicorn", "litestar", "onnxruntime"):
        try:
            from importlib.metadata import version

            versions[pkg] = version(pkg)
        except Exception:
            pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
    }


class Quiet:
    """Before a measured run, wait (within a total budget) for the rest of the machine to
    use under ``limit`` % of a core; the machine is shared with other sessions' tests."""

    def __init__(self, budget_s: float, limit: float = 25.0) -> None:
        self.budget_s = budget_s
        self.limit = limit
        self.waited_s = 0.0

    def wait(self, ours: list[int]) -> float:
        """Returns the other load (% of a core) seen last, over 0.3 s."""
        while True:
            c0, m0, t0 = cpu_seconds(ours), machine_busy_seconds()[0], time.monotonic()
            time.sleep(0.3)
            wall = time.monotonic() - t0
            other = 100 * ((machine_busy_seconds()[0] - m0) - (cpu_seconds(ours) - c0)) / wall
            if other < self.limit or self.waited_s >= self.budget_s:
                return other
            self.waited_s += wall


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs (about 1.5 minutes)")
    parser.add_argument("--out", type=Path, help="write bench_gateway.json here")
    parser.add_argument("--seconds", type=int, help="seconds per measured wrk run")
    parser.add_argument("--profile", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--clients", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--variants", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--serve-bare", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        serve_bare(args.serve_bare)
        return 0
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install wrk)")
        return 2
    quick = args.quick
    secs = int(args.seconds or (2 if quick else 3))
    c1_secs = 2
    warm = 1
    rounds = 1 if quick else 3
    do_profile = args.profile if args.profile is not None else not quick
    do_clients = args.clients if args.clients is not None else not quick
    do_variants = args.variants if args.variants is not None else not quick
    g5_secs = 4 if quick else 5
    g6_secs = 3 if quick else 5
    gate_concurrency, gate_queue = 32, 32
    model_delay_ms = 40
    g5_rounds = 1 if quick else 2
    started = time.monotonic()
    quiet = Quiet(budget_s=10.0 if quick else 30.0)
    root = Path(tempfile.mkdtemp(prefix="mg-bench-gw-"))
    dep = Deployment(root)
    script = wrk_script(root)
    results: dict[str, Any] = {"machine": machine(), "mode": "quick" if quick else "full"}
    results["settings"] = {
        "wrk_seconds": secs,
        "warmup_seconds": warm,
        "rounds": rounds,
        "g5_seconds": g5_secs,
        "g6_seconds": g6_secs,
        "gate": {"model_concurrency": gate_concurrency, "model_queue": gate_queue},
        "worker": "uvicorn+Litestar worker, MODELGATE_WORKER_INTRA_OP_THREADS=1, defaults",
        "model": "backends.synthetic.scale_model() (x * 2, 4 floats), JSON body of one row",
    }
    try:
        # -- setup ---------------------------------------------------------------------
        say(f"setting up in {root}")
        dep.setup()
        dep.start_gateway()
        dep.publish("m", ["1.0.0", "1.1.0"])
        dep.publish("s", ["1.0.0"])
        dep.traffic(
            "m",
            {
                "arms": [{"version": "1.0.0", "weight": 90}, {"version": "1.1.0", "weight": 10}],
                "sticky_header": "X-Route-Key",
            },
        )
        dep.publish("d", ["1.0.0"])
        wport = dep.start_worker("a", ["m@1.0.0", "m@1.1.0"])
        # G6's model-bound case: every request sleeps model_delay_ms in this worker.
        dep.start_worker(
            "d", ["d@1.0.0"], "--fault-delay-rate", "1.0", "--fault-delay-ms", str(model_delay_ms)
        )
        worker_a = dep.workers["a"][0]
        direct = f"http://127.0.0.1:{wport}/v2/models/m/versions/1.0.0/infer"
        bare_ports: dict[str, int] = {}
        for kind in ("aiohttp", "raw", *(("httpx",) if do_clients else ())):
            bare_ports[kind] = free_port()
            dep.start(
                f"bare-{kind}",
                [
                    sys.executable,
                    str(Path(__file__).resolve()),
                    "--serve-bare",
                    str(bare_ports[kind]),
                ],
                BENCH_UPSTREAM=direct,
                BENCH_CLIENT=kind,
            )
        # The price of one 429: a gateway whose gate admits one request and queues none,
        # in front of model d (40 ms per request), so nearly every request is shed.
        shed_port = free_port()
        dep.start(
            "gateway-shed",
            [*CLI, "serve", "--port", str(shed_port)],
            MODELGATE_GATEWAY_MODEL_CONCURRENCY="1",
            MODELGATE_GATEWAY_MODEL_QUEUE="0",
        )
        nginx = shutil.which("nginx") or (
            "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
        )
        nginx_port = free_port()
        if nginx:
            conf = nginx_conf(root, nginx_port, wport)
            dep.start("nginx", [nginx, "-p", str(root), "-c", str(conf), "-g", "daemon off;"])
        variants: dict[str, str] = {}
        if do_variants:
            # The proposed fix, tried without editing the gateway: a sitecustomize on the
            # path of a second gateway process raises the access logger (and httpx's) to
            # WARNING, the level Litestar's default logging config does not set for them.
            quiet_dir = root / "quiet"
            quiet_dir.mkdir()
            (quiet_dir / "sitecustomize.py").write_text(SITECUSTOMIZE)
            path_env = os.pathsep.join([str(quiet_dir), str(ROOT), str(BENCH)])
            for name, server, raw in (
                ("gateway_quiet", "granian", ""),
                ("gateway_quiet_uvicorn", "uvicorn", ""),
                ("gateway_quiet_raw", "granian", "1"),
            ):
                vport = free_port()
                dep.start(
                    name,
                    [*CLI, "serve", "--port", str(vport)],
                    PYTHONPATH=path_env,
                    MODELGATE_GATEWAY_SERVER=server,
                    BENCH_RAW_FORWARDER=raw,
                )
                variants[name] = f"http://127.0.0.1:{vport}"
        dep.wait_serving({"a": {"m@1.0.0", "m@1.1.0"}, "d": {"d@1.0.0"}})
        dep.wait_serving({"d": {"d@1.0.0"}}, via=f"http://127.0.0.1:{shed_port}")
        import httpx

        def answers(url: str, **headers: str) -> bool:
            r = httpx.post(
                url, content=BODY, headers={"content-type": "application/json", **headers}
            )
            return r.status_code == 200

        gw = dep.gateway_url
        targets: dict[str, tuple[str, dict[str, str], dict[str, Proc]]] = {
            "direct": (direct, {}, {"worker": worker_a}),
            "gateway_full": (
                f"{gw}/v2/models/m/infer",
                {"X-Model-Version": "^1", "X-Route-Key": "user-42"},
                {"gateway": dep.gateway, "worker": worker_a},  # type: ignore[dict-item]
            ),
            "gateway_exact": (
                f"{gw}/v2/models/m/versions/1.0.0/infer",
                {},
                {"gateway": dep.gateway, "worker": worker_a},  # type: ignore[dict-item]
            ),
            "bare_aiohttp": (
                f"http://127.0.0.1:{bare_ports['aiohttp']}/infer",
                {},
                {"bare proxy": dep.procs["bare-aiohttp"], "worker": worker_a},
            ),
            "bare_raw": (
                f"http://127.0.0.1:{bare_ports['raw']}/infer",
                {},
                {"bare proxy": dep.procs["bare-raw"], "worker": worker_a},
            ),
        }
        if nginx:
            targets["nginx"] = (
                f"http://127.0.0.1:{nginx_port}/v2/models/m/versions/1.0.0/infer",
                {},
                {"nginx": dep.procs["nginx"], "worker": worker_a},
            )
        for name, base in variants.items():
            targets[name] = (
                f"{base}/v2/models/m/infer",
                {"X-Model-Version": "^1", "X-Route-Key": "user-42"},
                {"gateway": dep.procs[name], "worker": worker_a},
            )
        for name, (url, headers, _) in targets.items():
            wait_until(lambda u=url, h=headers: answers(u, **h), f"{name} to answer", 30)
        with httpx.Client() as c:
            r = c.post(
                targets["gateway_full"][0],
                content=BODY,
                headers={"content-type": "application/json", **targets["gateway_full"][1]},
            )
            results["full_path_response_headers"] = {
                k: r.headers.get(k) for k in ("x-model-version", "x-backend", "x-route")
            }
        say(f"ready after {time.monotonic() - started:.1f}s")

        # -- G1 / G2 / G3 ----------------------------------------------------------------
        runs: dict[str, dict[str, list[dict[str, Any]]]] = {"c1": {}, "c64": {}}
        preferred = ["direct", "nginx", "bare_aiohttp", "bare_raw", "gateway_full", "gateway_exact"]
        order = [n for n in preferred if n in targets] + [n for n in targets if n not in preferred]
        for rnd in range(rounds):
            for level, conns, seconds in (("c1", 1, c1_secs), ("c64", 64, secs)):
                for name in order if rnd % 2 == 0 else reversed(order):
                    url, headers, meter = targets[name]
                    if rnd == 0:
                        wrk(url, warm, conns, script, headers)
                    quiet.wait(process_tree(os.getpid()))
                    r = wrk(url, seconds, conns, script, headers, meter)
                    runs[level].setdefault(name, []).append(r)
                    say(
                        f"{level} {name:14} {r['rps']:8.0f} req/s p50 {r['p50_ms']:.3f} ms "
                        f"p99 {r['p99_ms']:.2f} ms cpu {r['cpu_percent_of_core']}"
                    )

        def median(values: list[float]) -> float:
            values = sorted(values)
            mid = len(values) // 2
            return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2

        results["overhead_runs"] = runs
        summary: dict[str, Any] = {}
        for level in runs:
            summary[level] = {}
            for name, rows in runs[level].items():
                cpu_keys = rows[0]["cpu_us_per_request"]
                summary[level][name] = {
                    "rps": median([r["rps"] for r in rows]),
                    "p50_ms": median([r["p50_ms"] for r in rows]),
                    "p99_ms": median([r["p99_ms"] for r in rows]),
                    "cpu_us_per_request": {
                        k: median([r["cpu_us_per_request"].get(k, 0.0) for r in rows])
                        for k in cpu_keys
                    },
                    "other_load_percent": median(
                        [r["cpu_percent_of_core"]["other (not this bench)"] for r in rows]
                    ),
                    "rps_all_rounds": [r["rps"] for r in rows],
                    "p50_ms_all_rounds": [r["p50_ms"] for r in rows],
                }
        results["overhead"] = summary
        d1 = summary["c1"]["direct"]["p50_ms"]
        d64 = summary["c64"]["direct"]["rps"]
        g1 = summary["c1"]["gateway_full"]["p50_ms"] - d1
        g1_exact = summary["c1"]["gateway_exact"]["p50_ms"] - d1
        g2 = summary["c64"]["gateway_full"]["rps"] / d64
        g2_exact = summary["c64"]["gateway_exact"]["rps"] / d64
        # G3's bare side forwards like the gateway does (HTTP/1.1 over asyncio protocols).
        g3 = summary["c64"]["gateway_full"]["rps"] / summary["c64"]["bare_raw"]["rps"]

        if do_clients:
            say("forwarding clients: the bare proxy with a default httpx.AsyncClient")
            url = f"http://127.0.0.1:{bare_ports['httpx']}/infer"
            wait_until(lambda: answers(url), "the httpx proxy", 30)
            meter = {"bare proxy": dep.procs["bare-httpx"], "worker": worker_a}
            wrk(url, warm, 64, script)
            results["clients"] = {
                "bare_httpx_c64": wrk(url, secs, 64, script, None, meter),
                "bare_aiohttp_c64_rps": summary["c64"]["bare_aiohttp"]["rps"],
                "bare_raw_c64_rps": summary["c64"]["bare_raw"]["rps"],
            }
        say("the price of a 429: gateway-shed (gate 1+0) in front of model d at c64")
        shed_url = f"http://127.0.0.1:{shed_port}/v2/models/d/infer"
        wait_until(lambda: httpx.post(shed_url, content=BODY).status_code in (200, 429), "shed", 30)
        wrk(shed_url, warm, 64, script)
        shed = wrk(shed_url, secs, 64, script, None, {"gateway": dep.procs["gateway-shed"]})
        shed["fraction_429"] = round(shed["non2xx"] / max(1, shed["requests"]), 4)
        results["rejection_cost"] = shed
        say(
            f"shed: {shed['rps']:.0f} answers/s, {shed['fraction_429']:.3f} of them 429, "
            f"gateway {shed['cpu_us_per_request'].get('gateway', 0):.0f} us CPU per answer"
        )

        profiles: dict[str, Any] = {}
        spy_s = 6 if not quick else 3
        if do_profile:
            for name in ("gateway_full", "gateway_quiet"):
                if name not in targets:
                    continue
                say(f"profiling {name} (py-spy, {spy_s}s) during a c64 run")
                url, headers, meter = targets[name]
                profiles[f"{name}_c64"] = profile_during(
                    meter["gateway"].serving_pid(),
                    spy_s,
                    root / f"spy-{name}.txt",
                    lambda u=url, h=headers: wrk(u, spy_s, 64, script, h),
                )
        for name in ("nginx", "gateway-shed", *variants, *(f"bare-{k}" for k in bare_ports)):
            dep.stop(name)

        # -- G6 --------------------------------------------------------------------------
        say(f"G6: gateway with the per-model gate {gate_concurrency}+{gate_queue}")
        gate_env = {
            "MODELGATE_GATEWAY_MODEL_CONCURRENCY": str(gate_concurrency),
            "MODELGATE_GATEWAY_MODEL_QUEUE": str(gate_queue),
            "MODELGATE_GATEWAY_SLOW_START_S": "0",
        }
        dep.start_gateway(**gate_env)
        dep.wait_serving({"a": {"m@1.0.0"}, "d": {"d@1.0.0"}})
        port = int(dep.gateway_url.rsplit(":", 1)[1])
        g6_headers = {"X-Model-Version": "^1", "X-Route-Key": "user-42"}
        meter6 = {"gateway": dep.gateway, "worker": worker_a}  # type: ignore[dict-item]

        def g6_pair(path: str, meter: dict[str, Proc], seconds: int) -> dict[str, Any]:
            def gen() -> LoadGen:
                return LoadGen("127.0.0.1", port, path, g6_headers)

            run_loadgen(lambda: gen().closed(64, 0.5, warm), {})
            quiet.wait(process_tree(os.getpid()))
            saturation = run_loadgen(lambda: gen().closed(64, warm, seconds), meter)
            top = saturation["goodput_rps"]
            quiet.wait(process_tree(os.getpid()))
            overload = run_loadgen(lambda: gen().open(2 * top, warm, seconds), meter)
            return {
                "max_rps": top,
                "saturation_closed_loop_64": saturation,
                "overload_2x_open_loop": overload,
                "goodput_ratio": overload["goodput_rps"] / top if top else 0.0,
                "reject_p99_ms": overload["rejected_latency"].get("p99_ms"),
                "reject_p99_service_ms": overload["rejected_service"].get("p99_ms"),
            }

        g6_run = g6_pair("/v2/models/m/infer", meter6, g6_secs)
        max_rps = g6_run["max_rps"]
        overload = g6_run["overload_2x_open_loop"]
        say(
            f"G6 gateway-bound: max {max_rps:.0f}/s; 2x offered: goodput "
            f"{overload['goodput_rps']:.0f}/s, statuses {overload['status_counts']}, 429 p99 "
            f"{g6_run['reject_p99_ms'] or float('nan'):.2f} ms"
        )
        g6_model = g6_pair(
            "/v2/models/d/infer",
            {"gateway": dep.gateway, "worker": dep.workers["d"][0]},
            4,  # type: ignore[dict-item]
        )
        say(
            f"G6 model-bound (d, {model_delay_ms} ms per request, gate {gate_concurrency}): max "
            f"{g6_model['max_rps']:.0f}/s; 2x: goodput "
            f"{g6_model['overload_2x_open_loop']['goodput_rps']:.0f}/s, 429 p99 "
            f"{g6_model['reject_p99_ms'] or float('nan'):.2f} ms"
        )
        results["g6"] = {
            "gateway_bound": g6_run,
            "model_bound": g6_model,
            "model_bound_setup": f"worker d: --fault-delay-ms {model_delay_ms} on every request "
            f"(a sleep, no CPU); gate {gate_concurrency}+{gate_queue} caps d at about "
            f"{gate_concurrency * 1000 / model_delay_ms:.0f}/s",
        }
        g6 = g6_run["goodput_ratio"]
        g6_reject = g6_run["reject_p99_ms"]
        g6_reject_service = g6_run["reject_p99_service_ms"]
        if do_profile:
            say(f"profiling the gateway (py-spy, {spy_s}s) during a 2x overload run")
            assert dep.gateway is not None
            profiles["gateway_overload_2x"] = profile_during(
                dep.gateway.serving_pid(),
                spy_s,
                root / "spy-2x.txt",
                lambda: run_loadgen(
                    lambda: LoadGen("127.0.0.1", port, "/v2/models/m/infer", g6_headers).open(
                        2 * max_rps, 0.5, spy_s
                    ),
                    {},
                ),
            )
        dep.stop_worker("a")
        dep.stop_worker("d")

        # -- G5 --------------------------------------------------------------------------
        say("G5: four workers of s@1.0.0; a second gateway with round robin beside the P2C one")
        for i in range(1, 5):
            dep.start_worker(f"s{i}", ["s@1.0.0"])
        rr_port = free_port()
        rr = dep.start(
            "gateway-rr",
            [*CLI, "serve", "--port", str(rr_port)],
            **gate_env,
            MODELGATE_GATEWAY_STRATEGY="round_robin",
        )
        healthy = {f"s{i}": {"s@1.0.0"} for i in range(1, 5)}
        dep.wait_serving(healthy)
        gateways = {
            "p2c": (dep.gateway_url, dep.gateway),
            "round_robin": (f"http://127.0.0.1:{rr_port}", rr),
        }
        s_path = "/v2/models/s/versions/1.0.0/infer"
        for name, (base_url, _) in gateways.items():
            wait_until(lambda u=base_url: answers(u + s_path), f"s through {name}", 60)
        dep.wait_serving(healthy, via=gateways["round_robin"][0])

        def s_meter(gateway: Proc) -> dict[str, Proc]:
            return {"gateway": gateway} | {f"worker {w}": p for w, (p, _) in dep.workers.items()}

        # Same load for both strategies: a fixed open-loop arrival rate, half of what the
        # healthy fleet answers through the P2C gateway with 16 connections back to back.
        def s_gen(base_url: str) -> LoadGen:
            return LoadGen("127.0.0.1", int(base_url.rsplit(":", 1)[1]), s_path, {})

        p2c_base = gateways["p2c"][0]
        run_loadgen(lambda: s_gen(p2c_base).closed(16, 0.5, warm), {})
        quiet.wait(process_tree(os.getpid()))
        capacity = run_loadgen(lambda: s_gen(p2c_base).closed(16, warm, 3), {})
        rate = round(0.5 * capacity["goodput_rps"])
        quiet.wait(process_tree(os.getpid()))
        base = run_loadgen(
            lambda: s_gen(p2c_base).open(rate, warm, g5_secs),
            s_meter(dep.gateway),  # type: ignore[arg-type]
        )
        base_p50 = base["ok_service"]["p50_ms"]
        delay_ms = round(9 * base_p50, 2)
        say(
            f"G5 healthy: capacity {capacity['goodput_rps']:.0f}/s; at {rate}/s P2C p50 "
            f"{base_p50:.2f} ms p99 {base['ok_service']['p99_ms']:.2f} ms "
            f"-> one worker +{delay_ms} ms"
        )
        dep.stop_worker("s4")
        dep.start_worker(
            "s4slow", ["s@1.0.0"], "--fault-delay-rate", "1.0", "--fault-delay-ms", str(delay_ms)
        )
        slowed = {f"s{i}": {"s@1.0.0"} for i in (1, 2, 3)} | {"s4slow": {"s@1.0.0"}}
        for base_url, _ in gateways.values():
            dep.wait_serving(slowed, absent=("s4",), via=base_url)
        g5: dict[str, Any] = {
            "healthy_capacity_closed_16": capacity,
            "rate_rps": rate,
            "healthy_p2c": base,
            "delay_ms": delay_ms,
            "runs": {"p2c": [], "round_robin": []},
        }
        for rnd in range(g5_rounds):
            for strategy in ("p2c", "round_robin") if rnd % 2 == 0 else ("round_robin", "p2c"):
                base_url, gateway = gateways[strategy]
                run_loadgen(lambda u=base_url: s_gen(u).open(rate, 0.5, 1), {})
                before = dep.worker_requests(base_url)
                quiet.wait(process_tree(os.getpid()))
                r = run_loadgen(
                    lambda u=base_url: s_gen(u).open(rate, warm, g5_secs), s_meter(gateway)
                )
                after = dep.worker_requests(base_url)
                share = {w: after.get(w, 0) - before.get(w, 0) for w in after}
                total = sum(share.values()) or 1
                r["share_per_worker"] = {w: round(v / total, 4) for w, v in sorted(share.items())}
                # From the send, not the due time: at half load no request waits for a
                # connection (see sent_over_2ms_late_fraction), and the generator's 1 ms
                # timer would otherwise add up to 1 ms to both sides.
                r["p50_ms"] = r["ok_service"].get("p50_ms", float("nan"))
                r["p99_ms"] = r["ok_service"].get("p99_ms", float("nan"))
                g5["runs"][strategy].append(r)
                say(
                    f"G5 {strategy}: p50 {r['p50_ms']:.2f} ms p99 {r['p99_ms']:.2f} ms, "
                    f"statuses {r['status_counts']}, slow worker share "
                    f"{r['share_per_worker'].get('s4slow', 0):.3f}, other load "
                    f"{r['cpu_percent_of_core']['other (not this bench)']}%"
                )
        for strategy, rows in g5["runs"].items():
            # The round with the lower p99 of the two (every round stays in the JSON).
            g5[strategy] = min(rows, key=lambda r: r["p99_ms"])
        results["g5"] = g5
        g5_ratio = g5["p2c"]["p99_ms"] / g5["round_robin"]["p99_ms"]
        results["profiles"] = profiles
    except BaseException:
        say(f"failed; process logs are kept in {root}")
        raise
    finally:
        dep.stop_all()

    total_s = time.monotonic() - started
    results["runtime_s"] = round(total_s, 1)
    results["waited_for_quiet_s"] = round(quiet.waited_s, 1)
    ratios = {
        "G1_added_p50_ms": round(g1, 3),
        "G1_exact_added_p50_ms": round(g1_exact, 3),
        "G1_nginx_added_p50_ms": round(summary["c1"]["nginx"]["p50_ms"] - d1, 3) if nginx else None,
        "G2_gateway_over_direct": round(g2, 3),
        "G2_exact_over_direct": round(g2_exact, 3),
        "G2_nginx_over_direct": round(summary["c64"]["nginx"]["rps"] / d64, 3) if nginx else None,
        "G2_bare_over_direct": round(summary["c64"]["bare_raw"]["rps"] / d64, 3),
        "G3_full_over_bare": round(g3, 3),
        "G3_full_over_exact": round(
            summary["c64"]["gateway_full"]["rps"] / summary["c64"]["gateway_exact"]["rps"], 3
        ),
        "G5_p99_p2c_over_rr": round(g5_ratio, 3),
        "G6_goodput_2x_over_max": round(g6, 3),
        "G6_reject_p99_ms": None if g6_reject is None else round(g6_reject, 2),
        "G6_model_bound_goodput_2x_over_max": round(g6_model["goodput_ratio"], 3),
        "G6_model_bound_reject_p99_ms": g6_model["reject_p99_ms"],
        "G6_reject_p99_service_ms": None
        if g6_reject_service is None
        else round(g6_reject_service, 2),
    }
    for name in ("gateway_quiet", "gateway_quiet_uvicorn", "gateway_quiet_raw"):
        if name in summary["c64"]:
            ratios[f"G1_{name}_added_p50_ms"] = round(summary["c1"][name]["p50_ms"] - d1, 3)
            ratios[f"G2_{name}_over_direct"] = round(summary["c64"][name]["rps"] / d64, 3)
            ratios[f"G3_{name}_over_bare"] = round(
                summary["c64"][name]["rps"] / summary["c64"]["bare_raw"]["rps"], 3
            )
    if "clients" in results:
        ratios["clients_httpx_over_aiohttp"] = round(
            results["clients"]["bare_httpx_c64"]["rps"]
            / results["clients"]["bare_aiohttp_c64_rps"],
            3,
        )
    results["ratios"] = ratios
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "bench_gateway.json").write_text(json.dumps(results, indent=2))
    shutil.rmtree(root, ignore_errors=True)

    for name, prof in results.get("profiles", {}).items():
        if prof.get("samples"):
            print(
                f"\n# py-spy {name}: {prof['samples']} samples, "
                f"busy {prof['busy_fraction_of_wall']}"
            )
            print("  area %  where")
            for pct_, frame in prof["areas"]:
                print(f"  {pct_:6.1f}  {frame}")
            print("  self %  frame")
            for pct_, frame in prof["self"][:10]:
                print(f"  {pct_:6.1f}  {frame}")
            print("  incl %  frame")
            for pct_, frame in prof["inclusive"][:12]:
                print(f"  {pct_:6.1f}  {frame}")
    s64, s1 = summary["c64"], summary["c1"]
    print(
        f"\n# {results['machine']['cpus']} CPUs; wrk -t1, c1 {c1_secs}s / c64 {secs}s per run, "
        f"median of {rounds} interleaved rounds; runtime {total_s:.0f}s"
    )
    print(
        f"{'path':22} {'c1 p50':>7} {'added':>6} {'c64 req/s':>9} {'/direct':>7} {'c64 p99':>8}"
        f" {'proxy CPU us/req c1, c64':>25}  {'other load % c64':>16}"
    )

    def proxy_cpu(level: str, name: str) -> float:
        row = summary[level][name]["cpu_us_per_request"]
        for k in ("gateway", "bare proxy", "nginx"):
            if k in row:
                return row[k]
        return row.get("worker", 0.0)

    for name in s64:
        other = s64[name]["other_load_percent"]
        print(
            f"{name:22} {s1[name]['p50_ms']:7.3f} {s1[name]['p50_ms'] - d1:6.3f} "
            f"{s64[name]['rps']:9.0f} {s64[name]['rps'] / d64:7.2f} {s64[name]['p99_ms']:8.1f}"
            f" {proxy_cpu('c1', name):12.0f}, {proxy_cpu('c64', name):11.0f}  {other:16.0f}"
        )
    if "clients" in results:
        print(
            f"bare proxy, httpx.AsyncClient: "
            f"{results['clients']['bare_httpx_c64']['rps']:.0f} req/s at c64 "
            f"({ratios['clients_httpx_over_aiohttp']:.2f}x aiohttp)"
        )
    print(
        f"G5: {g5['rate_rps']}/s open loop; p99 P2C {g5['p2c']['p99_ms']:.1f} ms vs round robin "
        f"{g5['round_robin']['p99_ms']:.1f} ms (healthy P2C p99 "
        f"{g5['healthy_p2c']['ok_service']['p99_ms']:.1f} ms; "
        f"one of 4 workers +{g5['delay_ms']} ms; "
        f"its share P2C {g5['p2c']['share_per_worker'].get('s4slow', 0):.3f}, RR "
        f"{g5['round_robin']['share_per_worker'].get('s4slow', 0):.3f})"
    )
    print(
        f"G6 gateway-bound: max {max_rps:.0f}/s (closed loop, 64 conns), "
        f"offered {2 * max_rps:.0f}/s open loop, goodput {overload['goodput_rps']:.0f}/s, "
        f"statuses {overload['status_counts']}, "
        f"429 p99 {g6_reject or float('nan'):.1f} ms from due time, "
        f"{g6_reject_service or float('nan'):.1f} ms from send"
    )
    print(
        f"G6 model-bound:   max {g6_model['max_rps']:.0f}/s, goodput at 2x "
        f"{g6_model['overload_2x_open_loop']['goodput_rps']:.0f}/s "
        f"({g6_model['goodput_ratio']:.2f}), "
        f"429 p99 {g6_model['reject_p99_ms'] or float('nan'):.1f} ms from due time, "
        f"{g6_model['reject_p99_service_ms'] or float('nan'):.1f} ms from send\n"
    )

    def verdict(ok: bool) -> str:
        return "ok" if ok else "MISS"

    rows = [
        ("G1 added p50 c1 (ms)", g1, "<= 0.3", verdict(g1 <= TARGETS["G1"])),
        ("G2 gateway/direct c64", g2, ">= 0.6", verdict(g2 >= TARGETS["G2"])),
        ("G2 nginx/direct c64", ratios["G2_nginx_over_direct"], "(reference)", ""),
        ("G3 full/bare c64", g3, ">= 0.85", verdict(g3 >= TARGETS["G3"])),
        ("G5 p99 P2C/RR", g5_ratio, "<= 0.2", verdict(g5_ratio <= TARGETS["G5"])),
        ("G6 goodput 2x/max", g6, ">= 0.9", verdict(g6 >= TARGETS["G6"])),
        (
            "G6 429 p99 (ms)",
            g6_reject,
            "<= 5",
            verdict(g6_reject is not None and g6_reject <= TARGETS["G6_reject_p99_ms"]),
        ),
        ("G6 model-bound goodput", g6_model["goodput_ratio"], ">= 0.9", "(diagnostic)"),
        ("G6 model-bound 429 p99", g6_model["reject_p99_ms"], "<= 5", "(diagnostic)"),
    ]
    print(f"{'target':24} {'measured':>9}  {'goal':>11}  verdict")
    for label, value, goal, v in rows:
        shown = "n/a" if value is None else f"{value:9.3f}"
        print(f"{label:24} {shown:>9}  {goal:>11}  {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
