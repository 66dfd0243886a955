"""A real deployment for end-to-end tests: gateway and worker processes on 127.0.0.1.

Every process is started with the CLI a user would run (``modelgate serve``, ``modelgate
worker``); readiness is awaited by polling with a bound, never by sleeping.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.support.isolation import KEYS
from tests.support.models import onnx_bytes
from tests.support.net import free_port, poll_until

CLI = [sys.executable, "-m", "modelgate"]


def wait_until(check: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    """Poll ``check`` (HTTP and tritonclient errors count as "not yet") until true, bounded."""
    from tritonclient.utils import InferenceServerException

    poll_until(check, what, timeout_s, errors=(httpx.HTTPError, InferenceServerException))


class Fleet:
    """A gateway plus workers sharing one registry database (and Redis when given)."""

    def __init__(
        self,
        root: Path,
        database_url: str,
        redis_url: str | None,
        redis_prefix: str = KEYS.prefix,
    ) -> None:
        self.root = root
        self.env = dict(os.environ)
        self.env.pop("MODELGATE_REDIS_URL", None)
        self.env.update(
            MODELGATE_DATABASE_URL=database_url,
            MODELGATE_ARTIFACT_ROOT=str(root / "artifacts"),
            MODELGATE_GATEWAY_WORKERS_POLL_S="0.2",
            MODELGATE_GATEWAY_REGISTRY_POLL_S="0.5",
            MODELGATE_GATEWAY_PROBE_INTERVAL_S="0.5",
            MODELGATE_WORKER_HEARTBEAT_INTERVAL_S="0.5",
            MODELGATE_WORKER_INTRA_OP_THREADS="1",
            MODELGATE_REDIS_PREFIX=redis_prefix,
        )
        if redis_url:
            self.env["MODELGATE_REDIS_URL"] = redis_url
        self.workers: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
        self.gateway: subprocess.Popen[bytes] | None = None
        self.gateway_url = ""
        self.token = ""

    def run_cli(self, *args: str) -> str:
        result = subprocess.run(
            [*CLI, *args], env=self.env, check=True, capture_output=True, text=True
        )
        return result.stdout.strip()

    def start_gateway(self, **env: str) -> None:
        self.run_cli("db", "upgrade")
        self.token = self.run_cli("tokens", "create", "--name", "e2e", "--scope", "admin")
        port = free_port()
        self.gateway = subprocess.Popen([*CLI, "serve", "--port", str(port)], env=self.env | env)
        self.gateway_url = f"http://127.0.0.1:{port}"
        wait_until(
            lambda: httpx.get(f"{self.gateway_url}/v2/health/ready").status_code == 200, "gateway"
        )

    def admin(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.gateway_url, headers={"Authorization": f"Bearer {self.token}"}, timeout=30
        )

    def publish(self, model: str, versions: dict[str, float]) -> None:
        with self.admin() as client:
            client.post("/admin/v1/models", json={"name": model})
            for version, scale in versions.items():
                files = {"file": ("m.onnx", onnx_bytes(scale), "application/octet-stream")}
                response = client.post(
                    f"/admin/v1/models/{model}/versions", data={"version": version}, files=files
                )
                assert response.status_code == 201, response.text

    def start_worker(
        self, worker_id: str, loads: list[str], port: int | None = None, *extra: str
    ) -> None:
        port = port or free_port()
        args = [
            *CLI,
            "worker",
            "--port",
            str(port),
            "--id",
            worker_id,
            "--max-queue-delay-us",
            "500",
        ]
        for load in loads:
            args += ["--load", load]
        self.workers[worker_id] = (subprocess.Popen([*args, *extra], env=self.env), port)

    def gateway_sees(self, model: str, version: str, workers: int) -> bool:
        with self.admin() as client:
            rows = client.get("/admin/v1/workers").json()
        serving = [
            r
            for r in rows
            if r["balancer"] is not None
            and not r["stale"]
            and any(
                i["model"] == model and i["version"] == version and i["ready"] for i in r["loaded"]
            )
        ]
        return len(serving) >= workers

    def wait_serving(self, model: str, version: str, workers: int, timeout_s: float = 60.0) -> None:
        wait_until(
            lambda: self.gateway_sees(model, version, workers),
            f"{workers} workers serving {model}@{version}",
            timeout_s,
        )

    def kill_worker(self, worker_id: str, sig: int = signal.SIGKILL) -> int:
        process, port = self.workers.pop(worker_id)
        process.send_signal(sig)
        process.wait(timeout=30)
        return port

    def stop(self) -> None:
        for process, _ in self.workers.values():
            process.terminate()
        for process, _ in self.workers.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        if self.gateway is not None:
            self.gateway.terminate()
            try:
                self.gateway.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.gateway.kill()


def infer_json(value: float = 1.0) -> dict[str, Any]:
    return {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [value] * 4}]}
