"""Ports and bounded polling. Tests wait for conditions, never for time: each poll below
ends as soon as its condition holds and fails loudly at its bound.

Ports are handed over without a race: `free_port` keeps the port it found bound (not
listening) for the rest of the run, so no other process can be given it, by the kernel or
by another run's `free_port`, even while the server the test meant it for is stopped and
restarted. The servers tests start (uvicorn, redis-server, asyncio servers) set
``SO_REUSEADDR``, as the reservation does, and Linux lets them bind and listen beside it.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
POLL_INTERVAL_S = 0.05

# NOTE: held until the test process exits; a run uses a few dozen ports.
_RESERVED: list[socket.socket] = []


def _reserve(port: int = 0) -> int:
    sock = socket.socket()
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.close()
        raise
    _RESERVED.append(sock)
    reserved: int = sock.getsockname()[1]
    return reserved


def free_port() -> int:
    """A port on 127.0.0.1 reserved for this run (see the module docstring): a server that
    sets ``SO_REUSEADDR`` can bind it, now or after a restart; nothing listens on it until
    then, so a connection to it is refused."""
    return _reserve()


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive reserved ports (for ``modelgate demo --port P``,
    which also binds P+1 and P+2)."""
    for _ in range(50):
        first = _reserve()
        try:
            for offset in range(1, count):
                _reserve(first + offset)
        except OSError:
            continue
        return first
    raise RuntimeError(f"no {count} consecutive free ports on 127.0.0.1")


def poll_until(
    check: Callable[[], bool],
    what: str,
    timeout_s: float = 30.0,
    errors: tuple[type[BaseException], ...] = (httpx.HTTPError,),
) -> None:
    """Call ``check`` every few milliseconds until it is true (``errors`` count as "not
    yet"); raise `TimeoutError` naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if check():
                return
        except errors:
            pass
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(POLL_INTERVAL_S)


def listening(port: int, process: subprocess.Popen[bytes] | None = None) -> bool:
    """Whether something accepts connections on 127.0.0.1:``port``; raises if ``process``
    (the server meant to) has exited."""
    if process is not None and process.poll() is not None:
        raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_http(url: str, process: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    """Poll ``url`` until it answers 200 (bounded); fail at once if the process dies."""

    def up() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before {url} answered")
        return httpx.get(url, timeout=1.0).status_code == 200

    poll_until(up, url, timeout_s)


async def poll_until_async(
    check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 30.0
) -> None:
    """`poll_until` for an async ``check``, yielding to the event loop between tries."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(POLL_INTERVAL_S)
