"""The live stack the tools run against, on 127.0.0.1: ``modelgate serve`` on a fresh SQLite
registry (embedded mode, no Redis), with its gRPC port when the CLI has one, and two
``modelgate worker`` processes (``a`` and ``b``) serving model ``m`` at 1.0.0 and 1.1.0
(`backends.synthetic.scale_model`: ``output = input * 2`` over ``[batch, 4]`` FP32).

It is `bench.harness.Deployment` with short poll intervals (as `tests.support.fleet` sets
them), so ejection and readmission show within a second or two.
"""

from __future__ import annotations

import socket
import subprocess
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import httpx

from bench.harness import CLI, ROOT, Deployment, free_port, wait_until

__all__ = ["FAST_POLLS", "MODEL", "VERSIONS", "Stack", "WorkerPorts", "has_option", "listening"]

MODEL = "m"
VERSIONS = ("1.0.0", "1.1.0")
FAST_POLLS = {
    "MODELGATE_GATEWAY_WORKERS_POLL_S": "0.2",
    "MODELGATE_GATEWAY_REGISTRY_POLL_S": "0.5",
    "MODELGATE_GATEWAY_PROBE_INTERVAL_S": "0.5",
    "MODELGATE_WORKER_HEARTBEAT_INTERVAL_S": "0.5",
    "MODELGATE_WORKER_INTRA_OP_THREADS": "1",
    "MODELGATE_GATEWAY_LOG_LEVEL": "warning",
    "MODELGATE_WORKER_LOG_LEVEL": "warning",
}


def has_option(command: str, option: str) -> bool:
    """Whether ``modelgate COMMAND --help`` lists ``option`` (a feature that has landed)."""
    done = subprocess.run(
        [*CLI, command, "--help"], capture_output=True, text=True, cwd=ROOT, check=False
    )
    return option in done.stdout


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass(frozen=True)
class WorkerPorts:
    http: int
    grpc: int | None


class Stack:
    """A gateway and workers ``a`` and ``b`` under ``root``; `stop` ends every process."""

    def __init__(self, root: Path, workers: tuple[str, ...] = ("a", "b")) -> None:
        self.root = root
        self.dep = Deployment(root, **FAST_POLLS)
        self.worker_ids = workers
        self.worker_grpc = has_option("worker", "--grpc-port")
        self.gateway_grpc = has_option("serve", "--grpc-port")
        self.grpc_port: int | None = None
        self.ports: dict[str, WorkerPorts] = {}

    @property
    def url(self) -> str:
        """The gateway's HTTP base URL."""
        return self.dep.gateway_url

    @property
    def hostport(self) -> str:
        return self.url.removeprefix("http://")

    @property
    def grpc(self) -> str | None:
        """The gateway's gRPC ``host:port``, None when ``modelgate serve`` has no gRPC."""
        return f"127.0.0.1:{self.grpc_port}" if self.grpc_port else None

    def worker_http(self, worker: str = "a") -> str:
        return f"127.0.0.1:{self.ports[worker].http}"

    def worker_grpc_url(self, worker: str = "a") -> str | None:
        port = self.ports[worker].grpc
        return f"127.0.0.1:{port}" if port else None

    def admin(self) -> httpx.Client:
        client: httpx.Client = self.dep.admin()
        return client

    def start(self) -> None:
        """Registry, gateway, model ``m`` in both versions, and the workers, all serving."""
        dep = self.dep
        dep.setup()
        env: dict[str, str] = {}
        if self.gateway_grpc:
            self.grpc_port = free_port()
            env["MODELGATE_GATEWAY_GRPC_PORT"] = str(self.grpc_port)
        dep.start_gateway(**env)
        dep.publish(MODEL, list(VERSIONS))
        loads = [f"{MODEL}@{v}" for v in VERSIONS]
        for worker in self.worker_ids:
            grpc = free_port() if self.worker_grpc else None
            extra = ["--grpc-port", str(grpc)] if grpc else []
            port = dep.start_worker(worker, loads, *extra)
            self.ports[worker] = WorkerPorts(port, grpc)
        dep.wait_serving({w: set(loads) for w in self.worker_ids})
        grpc_ports = [self.grpc_port, *(p.grpc for p in self.ports.values())]
        for grpc_port in filter(None, grpc_ports):
            wait_until(partial(listening, grpc_port), f"gRPC on port {grpc_port}", 30)

    def stop(self) -> None:
        self.dep.stop_all()
