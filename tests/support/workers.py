"""Real worker processes for tests: started with the CLI a user would run, polled until
ready within a bound, restarted on a fresh port when the one picked was taken meanwhile."""

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
    args: list[str], log: Path, env: dict[str, str] | None = None, timeout_s: float = 60.0
) -> WorkerProcess:
    """Start ``python -m modelgate worker`` with ``args`` and wait (bounded) until it is ready.

    NOTE: a free port found by binding and closing can be taken again before the worker
    binds it; that start fails with "address already in use" and is retried elsewhere."""
    full_env = {**os.environ, **(env or {})}
    if "MODELGATE_REDIS_URL" not in (env or {}):
        full_env.pop("MODELGATE_REDIS_URL", None)
    full_env.setdefault("MODELGATE_WORKER_INTRA_OP_THREADS", "1")
    for _ in range(3):
        port = free_port()
        with log.open("wb") as handle:
            process = subprocess.Popen(
                [sys.executable, "-m", "modelgate", "worker", "--port", str(port), *args],
                cwd=ROOT,
                env=full_env,
                stdout=handle,
                stderr=subprocess.STDOUT,
            )
        worker = WorkerProcess(process, port, log)
        with httpx.Client(timeout=2.0) as client:

            def ready(client: httpx.Client = client, worker: WorkerProcess = worker) -> bool:
                if worker.process.poll() is not None:
                    return True
                return client.get(f"{worker.url}/v2/health/ready").status_code == 200

            try:
                poll_until(ready, f"worker on port {port} to be ready", timeout_s)
            except TimeoutError:
                worker.stop()
                raise AssertionError(
                    f"worker not ready within {timeout_s}s:\n{worker.output()}"
                ) from None
        if process.poll() is None:
            return worker
        if "address already in use" not in worker.output().lower():
            raise AssertionError(f"worker exited with {process.returncode}:\n{worker.output()}")
    raise AssertionError(f"no free port for a worker after 3 tries:\n{worker.output()}")
