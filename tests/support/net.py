"""Ports and bounded polling. Tests wait for conditions, never for time: each poll below
ends as soon as its condition holds and fails loudly at its bound."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
POLL_INTERVAL_S = 0.05


def free_port() -> int:
    """A port that was free a moment ago (callers that start servers on it must handle
    losing it to another process: see `tests.support.workers.start_worker`)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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


def wait_http(url: str, process: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    """Poll ``url`` until it answers 200 (bounded); fail at once if the process dies."""

    def up() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before {url} answered")
        return httpx.get(url, timeout=1.0).status_code == 200

    poll_until(up, url, timeout_s)
