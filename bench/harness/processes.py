"""Starting and stopping what a benchmark measures: the ``modelgate`` CLI against a fresh
SQLite registry (embedded mode, no Redis), gateways, workers and nginx, all on 127.0.0.1.

Every process is one this bench started, stopped by its own id and its own children's ids.
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.harness.cpu import process_tree

__all__ = [
    "CLI",
    "ROOT",
    "Deployment",
    "Proc",
    "free_port",
    "nginx_binary",
    "nginx_conf",
    "wait_until",
]

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "modelgate"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    """Poll ``check`` every 50 ms; exceptions count as "not yet" until the deadline."""
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


class Proc:
    """A process this bench started, its output in ``log``."""

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
        return self.tree()[-1]

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


class Deployment:
    """A registry database, an admin token, a gateway and workers under ``root``.

    The environment is this process's without any ``MODELGATE_*`` variable, plus the
    registry's location, ``PYTHONPATH`` (so that processes can import `bench`) and ``env``.
    """

    def __init__(self, root: Path, **env: str) -> None:
        self.root = root
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MODELGATE_")}
        self.env.update(
            MODELGATE_DATABASE_URL=f"sqlite+aiosqlite:///{root}/r.db",
            MODELGATE_ARTIFACT_ROOT=str(root / "artifacts"),
            PYTHONPATH=str(ROOT),
        )
        self.env.update(env)
        self.procs: dict[str, Proc] = {}
        self.gateway: Proc | None = None
        self.gateway_url = ""
        self.gateway_env: dict[str, str] = {}
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

    def log_tails(self, lines: int = 5) -> str:
        """The last lines of every process's log, for a failed run on a machine that is
        handed back afterwards."""
        out = []
        for log in sorted(self.root.glob("*.log")):
            tail = log.read_text(errors="replace").splitlines()[-lines:]
            out += [f"== {log.name}", *tail]
        return "\n".join(out)

    def setup(self) -> None:
        """The schema, and an admin token for the admin API."""
        self.cli("db", "upgrade")
        self.token = self.cli("tokens", "create", "--name", "bench", "--scope", "admin")

    def start_gateway(self, **env: str) -> None:
        """(Re)start ``modelgate serve`` with ``env`` and wait until it is ready."""
        import httpx

        self.stop("gateway")
        port = free_port()
        self.gateway = self.start("gateway", [*CLI, "serve", "--port", str(port)], **env)
        self.gateway_url = f"http://127.0.0.1:{port}"
        self.gateway_env = dict(env)
        wait_until(
            lambda: httpx.get(f"{self.gateway_url}/v2/health/ready").status_code == 200,
            "the gateway",
        )

    def admin(self, via: str | None = None) -> Any:
        import httpx

        return httpx.Client(
            base_url=via or self.gateway_url,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=120,
        )

    def publish(
        self,
        model: str,
        versions: list[str],
        artifact: bytes | None = None,
        via: str | None = None,
    ) -> None:
        """Create ``model`` and publish each version; ``scale_model()`` unless ``artifact``."""
        if artifact is None:
            from backends.synthetic import scale_model

            artifact = scale_model()
        with self.admin(via) as c:
            c.post("/admin/v1/models", json={"name": model}).raise_for_status()
            for version in versions:
                files = {"file": (f"{model}.onnx", artifact, "application/octet-stream")}
                r = c.post(
                    f"/admin/v1/models/{model}/versions", data={"version": version}, files=files
                )
                assert r.status_code == 201, r.text

    def traffic(self, model: str, policy: dict[str, Any]) -> None:
        with self.admin() as c:
            c.put(f"/admin/v1/models/{model}/traffic", json=policy).raise_for_status()

    def start_worker(self, worker_id: str, loads: list[str], *extra: str) -> int:
        """``modelgate worker`` loading ``loads`` from the registry; returns its port."""
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
        """Worker id -> the ready versions the gateway routes to (not stale, not stopped)."""
        with self.admin(via) as c:
            rows = c.get("/admin/v1/workers").json()
        return {
            r["id"]: {f"{i['model']}@{i['version']}" for i in r["loaded"] if i["ready"]}
            for r in rows
            if r["balancer"] is not None and not r["stale"] and r.get("state") != "stopped"
        }

    def wait_serving(
        self,
        expect: dict[str, set[str]],
        absent: tuple[str, ...] = (),
        via: str | None = None,
        timeout_s: float = 90.0,
    ) -> None:
        def check() -> bool:
            seen = self.serving(via)
            return all(expect[w] <= seen.get(w, set()) for w in expect) and not any(
                w in seen for w in absent
            )

        wait_until(check, f"the gateway to see workers {sorted(expect)}", timeout_s)

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


def nginx_binary() -> str | None:
    return shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )


def nginx_conf(root: Path, port: int, upstream_port: int) -> Path:
    """One worker process, ``proxy_pass`` to a keep-alive upstream (``keepalive 128``)."""
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
