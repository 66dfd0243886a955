"""Real worker processes for tests: started with the CLI a user would run on a port
reserved for the run, polled until ready within a bound."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.net import ROOT, free_port, poll_until


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
    args: list[str],
    log: Path,
    env: dict[str, str] | None = None,
    timeout_s: float = 60.0,
    port: int | None = None,
) -> WorkerProcess:
    """Start ``python -m modelgate worker`` with ``args`` on ``port`` (default: one reserved
    for the run) and wait (bounded) until it is ready; without ``MODELGATE_REDIS_URL`` in
    ``env`` it runs without Redis."""
    full_env = {**os.environ, **(env or {})}
    if "MODELGATE_REDIS_URL" not in (env or {}):
        full_env.pop("MODELGATE_REDIS_URL", None)
    full_env.setdefault("MODELGATE_WORKER_INTRA_OP_THREADS", "1")
    port = port or free_port()
    with log.open("ab") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "modelgate", "worker", "--port", str(port), *args],
            cwd=ROOT,
            env=full_env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    worker = WorkerProcess(process, port, log)
    with httpx.Client(timeout=2.0) as client:

        def ready() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"worker exited with {process.returncode}:\n{worker.output()}")
            return client.get(f"{worker.url}/v2/health/ready").status_code == 200

        try:
            poll_until(ready, f"worker on port {port} to be ready", timeout_s)
        except TimeoutError:
            worker.stop()
            raise AssertionError(
                f"worker not ready within {timeout_s}s:\n{worker.output()}"
            ) from None
    return worker
