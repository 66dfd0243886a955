"""A real deployment for end-to-end tests: gateway and worker processes on 127.0.0.1.

Every process is started with the CLI a user would run (``modelgate serve``, ``modelgate
worker``) on a port reserved for the run; readiness is awaited by polling with a bound,
never by sleeping. A fleet remembers what each worker was started with, so `Fleet.restore`
can bring it back to that state after a test that killed, emptied or reloaded one.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support.isolation import KEYS
from tests.support.models import onnx_bytes
from tests.support.net import ROOT, free_port, poll_until
from tests.support.services import Service

CLI = [sys.executable, "-m", "modelgate"]


def wait_until(check: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    """Poll ``check`` (HTTP and tritonclient errors count as "not yet") until true, bounded."""
    from tritonclient.utils import InferenceServerException

    poll_until(check, what, timeout_s, errors=(httpx.HTTPError, InferenceServerException))


@dataclass(frozen=True)
class WorkerSpec:
    """How a fleet worker is started: its reserved port, ``--load`` refs and extra args,
    and its reserved gRPC port when it serves gRPC."""

    port: int
    loads: tuple[str, ...]
    extra: tuple[str, ...] = ()
    grpc_port: int | None = None


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
        #: The workers' control token (`backends.control`): load/unload send it.
        self.control_token = secrets.token_urlsafe(16)
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
            MODELGATE_WORKER_CONTROL_TOKEN=self.control_token,
        )
        if redis_url:
            self.env["MODELGATE_REDIS_URL"] = redis_url
        self.specs: dict[str, WorkerSpec] = {}
        self.workers: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
        self.gateway: subprocess.Popen[bytes] | None = None
        self.gateway_url = ""
        #: The gateway's gRPC target (``host:port``) when started with ``grpc=True``.
        self.gateway_grpc = ""
        self.token = ""
        self.models: list[str] = []
        #: What the fleet depends on that a test may stop (`tests.support.services.Service`).
        self.services: list[Service] = []

    def run_cli(self, *args: str) -> str:
        result = subprocess.run(
            [*CLI, *args], env=self.env, check=True, capture_output=True, text=True
        )
        return result.stdout.strip()

    def start_gateway(self, *, grpc: bool = False, log: Path | None = None, **env: str) -> None:
        """Start the gateway (serving gRPC too with ``grpc``: `gateway_grpc`), once ready;
        its stdout and stderr go to ``log`` when given."""
        self.run_cli("db", "upgrade")
        self.token = self.run_cli("tokens", "create", "--name", "e2e", "--scope", "admin")
        port = free_port()
        args = [*CLI, "serve", "--port", str(port)]
        if grpc:
            grpc_port = free_port()
            args += ["--grpc-port", str(grpc_port)]
            self.gateway_grpc = f"127.0.0.1:{grpc_port}"
        if log is None:
            self.gateway = subprocess.Popen(args, env=self.env | env, cwd=ROOT)
        else:
            with log.open("ab") as out:
                self.gateway = subprocess.Popen(
                    args, env=self.env | env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
                )
        self.gateway_url = f"http://127.0.0.1:{port}"
        gateway = self.gateway

        def ready() -> bool:
            if gateway.poll() is not None:
                raise RuntimeError(f"the gateway exited with {gateway.returncode}")
            return httpx.get(f"{self.gateway_url}/v2/health/ready").status_code == 200

        wait_until(ready, "gateway")

    @property
    def control_headers(self) -> dict[str, str]:
        """What a worker's load/unload call needs."""
        return {"Authorization": f"Bearer {self.control_token}"}

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
        if model not in self.models:
            self.models.append(model)

    def start_worker(
        self,
        worker_id: str,
        loads: list[str],
        port: int | None = None,
        *extra: str,
        grpc: bool = False,
    ) -> None:
        """Start (or restart) ``worker_id``; it keeps its reserved ports across restarts
        (``grpc``: it serves gRPC too, on a port of its own, `WorkerSpec.grpc_port`)."""
        known = self.specs.get(worker_id)
        port = port or (known.port if known is not None else free_port())
        grpc_port = None
        if grpc:
            known_grpc = known.grpc_port if known is not None else None
            grpc_port = known_grpc or free_port()
        self.specs[worker_id] = WorkerSpec(port, tuple(loads), tuple(extra), grpc_port)
        args = [*CLI, "worker", "--port", str(port), "--id", worker_id]
        if grpc_port is not None:
            args += ["--grpc-port", str(grpc_port)]
        args += ["--max-queue-delay-us", "500"]
        for load in loads:
            args += ["--load", load]
        log = (self.root / f"{worker_id}.log").open("ab")
        try:
            process = subprocess.Popen(
                [*args, *extra], env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
            )
        finally:
            log.close()
        self.workers[worker_id] = (process, port)

    def worker_log(self, worker_id: str) -> str:
        path = self.root / f"{worker_id}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def balancer_rows(self) -> dict[str, dict[str, Any]]:
        """The gateway's balancer view per worker id (workers it does not route to left out)."""
        with self.admin() as client:
            rows = client.get("/admin/v1/workers").json()
        return {r["id"]: r["balancer"] for r in rows if r["balancer"] is not None}

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
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        return port

    # -- back to the state the fleet was started in ------------------------------------

    def worker_loaded(self, worker_id: str, timeout_s: float = 30.0) -> set[str] | None:
        """``model@version`` the worker process itself has loaded and ready, once it is
        ready (a worker still starting is waited for); None when it is down or never gets
        ready within ``timeout_s``."""
        entry = self.workers.get(worker_id)
        if entry is None:
            return None
        process, port = entry
        url = f"http://127.0.0.1:{port}/v2"

        def ready() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"{worker_id} exited")
            return httpx.get(f"{url}/health/ready", timeout=5).status_code == 200

        try:
            wait_until(ready, f"{worker_id} to be ready", timeout_s)
            index = httpx.post(f"{url}/repository/index", timeout=10).json()
        except (RuntimeError, TimeoutError, httpx.HTTPError):
            return None
        return {f"{m['name']}@{m['version']}" for m in index if m["state"] == "READY"}

    def restore(self, timeout_s: float = 60.0) -> None:
        """Undo what a test did to the fleet: every service it depends on running and the
        gateway degraded on none, no traffic policy on any published model, and every
        worker running with exactly what it was started with (a dead, missing or reloaded
        one is restarted on its port), each seen by the gateway ready for all of it and not
        ejected."""
        for service in self.services:
            if not service.running:
                service.start()
        wait_until(
            lambda: self.degraded() == [], "the gateway to be degraded on nothing", timeout_s
        )
        with self.admin() as client:
            for model in self.models:
                response = client.delete(f"/admin/v1/models/{model}/traffic")
                assert response.status_code in (204, 404), response.text
        for worker_id, spec in self.specs.items():
            if self.worker_loaded(worker_id) == set(spec.loads):
                continue
            if worker_id in self.workers:
                self.kill_worker(worker_id, signal.SIGTERM)
            self.start_worker(
                worker_id,
                list(spec.loads),
                spec.port,
                *spec.extra,
                grpc=spec.grpc_port is not None,
            )
        self.wait_registry_synced(timeout_s)
        for worker_id, spec in self.specs.items():
            self.wait_worker_serving(worker_id, spec.loads, timeout_s)

    def wait_worker_serving(
        self, worker_id: str, loads: tuple[str, ...], timeout_s: float = 60.0
    ) -> None:
        def serving() -> bool:
            process = self.workers[worker_id][0]
            if process.poll() is not None:
                raise RuntimeError(f"{worker_id} exited:\n{self.worker_log(worker_id)}")
            row = self.balancer_rows().get(worker_id)
            return (
                row is not None and row["ejected_until"] is None and set(loads) <= set(row["ready"])
            )

        wait_until(serving, f"the gateway to route {', '.join(loads)} to {worker_id}", timeout_s)

    def degraded(self) -> list[str]:
        """The sources the gateway reports failing (``/v2/health/ready``)."""
        doc = httpx.get(f"{self.gateway_url}/v2/health/ready", timeout=10).json()
        return list(doc["degraded"])

    def registry_revision(self) -> int:
        """The revision of the registry's latest change (its audit log head)."""
        with self.admin() as client:
            items = client.get("/admin/v1/audit", params={"limit": 1}).json()["items"]
        return int(items[0]["revision"]) if items else 0

    def gateway_revision(self) -> int:
        """The registry revision the gateway routes by (its metric)."""
        text = httpx.get(f"{self.gateway_url}/metrics", timeout=10).text
        match = re.search(r"^modelgate_gateway_registry_revision (\S+)", text, re.M)
        return int(float(match.group(1))) if match else -1

    def wait_registry_synced(self, timeout_s: float = 30.0) -> None:
        """Until the gateway routes by the registry's latest change."""
        target = self.registry_revision()
        wait_until(
            lambda: self.gateway_revision() >= target,
            f"the gateway to load registry revision {target}",
            timeout_s,
        )

    def stop(self) -> None:
        """SIGTERM every worker, then the gateway; each gets 20 s to exit before SIGKILL."""
        for process, _ in self.workers.values():
            process.terminate()
        named = [(f"worker {w}", p) for w, (p, _) in self.workers.items()]
        if self.gateway is not None:
            self.gateway.terminate()
            named.append(("the gateway", self.gateway))
        for name, process in named:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                print(f"{name} did not exit within 20 s of SIGTERM; killed", file=sys.stderr)
                process.kill()
                process.wait()


def infer_json(value: float = 1.0) -> dict[str, Any]:
    return {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [value] * 4}]}
