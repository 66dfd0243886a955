"""MLServer 1.7.1 + mlserver-sklearn behind the gateway as external OIP servers.

Two MLServer processes (``mlserver-a``, ``mlserver-b``) serve the same scikit-learn model
(`mlserver_model`: MLServer's ``iris`` at version ``v1``). The runner publishes ``iris``
1.0.0 with ``runtime: "external"`` and registers both by ``POST /admin/v1/workers`` with
``remote_version: "v1"``; then it checks, one row each: both are routed; JSON inference
through the gateway names an MLServer in ``X-Backend``; ``a`` registered a second time
over gRPC (``protocol: "grpc"``, as model ``iris-grpc``) answers a ModelInfer sent to the
gateway's gRPC port; with ``a`` stopped under 4 clients' traffic, ``a`` is
ejected and no request fails (they go on to ``b``); with both stopped, a request gets a 503; both
started again on their ports, they are readmitted and ``a`` serves again.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench.harness import Proc, free_port, wait_until
from bench.harness.tools import tool_bin
from bench.interop.grpc_call import grpc_infer
from bench.interop.report import Rows
from bench.interop.stack import Stack

__all__ = ["mlserver_rows"]

TOOL = "MLServer + mlserver-sklearn"
MODEL, VERSION, REMOTE_VERSION = "iris", "1.0.0", "v1"
GRPC_MODEL = "iris-grpc"
SETUP = Path(__file__).with_name("mlserver_model.py")
BODY = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}


class MLServer:
    """One ``mlserver start DIR`` on 127.0.0.1, restartable on the same ports."""

    def __init__(self, name: str, root: Path) -> None:
        self.name = name
        self.dir = root / name
        self.log = root / f"{name}.log"
        self.http, self.grpc = free_port(), free_port()
        self.proc: Proc | None = None
        # NOTE: the project's environment, less PYTHONPATH (its packages must not shadow
        # MLServer's imports) and less any MODELGATE_ setting.
        self.env = {
            k: v
            for k, v in os.environ.items()
            if k != "PYTHONPATH" and not k.startswith("MODELGATE_")
        }

    def prepare(self) -> dict[str, str]:
        python = tool_bin("mlserver", "python")
        args = [str(python), str(SETUP), str(self.dir), str(self.http), str(self.grpc)]
        done = subprocess.run(args, capture_output=True, text=True, timeout=120, check=True)
        versions: dict[str, str] = json.loads(done.stdout.strip().splitlines()[-1])
        return versions

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http}"

    def start(self) -> None:
        mlserver = tool_bin("mlserver", "mlserver")
        self.proc = Proc(self.name, [str(mlserver), "start", str(self.dir)], self.env, self.log)
        proc = self.proc

        def ready() -> bool:
            if proc.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log.read_text()[-300:]}")
            url = f"{self.url}/v2/models/{MODEL}/versions/{REMOTE_VERSION}/ready"
            return httpx.get(url, timeout=2).status_code == 200

        wait_until(ready, f"{self.name} to serve {MODEL}", 90)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None


def _rows_by_id(stack: Stack) -> dict[str, dict[str, Any]]:
    with stack.admin() as client:
        response = client.get("/admin/v1/workers")
        response.raise_for_status()
        return {r["id"]: r for r in response.json()}


def routed(row: dict[str, Any] | None, model: str = MODEL) -> bool:
    """Whether the gateway routes ``model`` 1.0.0 to this server: probed ready, not ejected."""
    if row is None or row.get("stale") or row.get("balancer") is None:
        return False
    balancer = row["balancer"]
    ready = f"{model}@{VERSION}" in balancer.get("ready", []) or any(
        i["model"] == model and i["version"] == VERSION and i["ready"] for i in row["loaded"]
    )
    return bool(ready) and balancer.get("ejected_until") is None


def _infer(stack: Stack) -> httpx.Response:
    return httpx.post(f"{stack.url}/v2/models/{MODEL}/infer", json=BODY, timeout=30)


def _traffic(stack: Stack, count: int) -> tuple[collections.Counter[str], list[str]]:
    """``count`` JSON requests: how many each X-Backend served, and each failure's line."""
    served: collections.Counter[str] = collections.Counter()
    failures = []
    for _ in range(count):
        r = _infer(stack)
        if r.status_code == 200:
            served[r.headers.get("x-backend", "?")] += 1
        else:
            failures.append(f"{r.status_code} {r.text[:120]}")
    return served, failures


def _register(stack: Stack, servers: list[MLServer]) -> str:
    with stack.admin() as client:
        client.post("/admin/v1/models", json={"name": MODEL})
        r = client.post(
            f"/admin/v1/models/{MODEL}/versions", json={"version": VERSION, "runtime": "external"}
        )
        if r.status_code != 201:
            raise RuntimeError(f"publish {MODEL} {VERSION} external: {r.status_code} {r.text}")
        for server in servers:
            serves = [{"model": MODEL, "version": VERSION, "remote_version": REMOTE_VERSION}]
            body = {"id": server.name, "url": server.url, "protocol": "http", "serves": serves}
            r = client.post("/admin/v1/workers", json=body)
            if r.status_code != 201:
                what = f"POST /admin/v1/workers {server.name}"
                raise RuntimeError(f"{what}: {r.status_code} {r.text}")
    t0 = time.monotonic()
    wait_until(lambda: all(routed(_rows_by_id(stack).get(s.name)) for s in servers), "routed", 30)
    return f"201 for both; routed {time.monotonic() - t0:.1f} s after registration"


def _serve_json(stack: Stack) -> str:
    r = _infer(stack)
    if r.status_code != 200:
        raise RuntimeError(f"POST /v2/models/{MODEL}/infer: {r.status_code} {r.text[:200]}")
    backend, doc = r.headers.get("x-backend"), r.json()
    if not (backend or "").startswith("mlserver-"):
        raise AssertionError(f"X-Backend is {backend!r}, not an MLServer")
    served, failures = _traffic(stack, 20)
    if failures:
        raise AssertionError(f"{len(failures)} of 20 failed: {failures[0]}")
    return (
        f"200, X-Backend {backend}, X-Model-Version {r.headers.get('x-model-version')}, "
        f"model_version {doc.get('model_version')}, outputs[0] {doc['outputs'][0]['data']}; "
        f"20 more: {dict(served)}"
    )


def _serve_grpc(stack: Stack, a: MLServer) -> str:
    """``iris-grpc`` 1.0.0 on ``a``'s gRPC port (``protocol: "grpc"``, remote ``iris``
    ``v1``), one ModelInfer through the gateway's gRPC port."""
    if stack.grpc is None:
        raise RuntimeError("the gateway has no gRPC port (modelgate serve --grpc-port)")
    model, server = GRPC_MODEL, f"{a.name}-grpc"
    with stack.admin() as client:
        client.post("/admin/v1/models", json={"name": model})
        r = client.post(
            f"/admin/v1/models/{model}/versions", json={"version": VERSION, "runtime": "external"}
        )
        if r.status_code != 201:
            raise RuntimeError(f"publish {model} {VERSION} external: {r.status_code} {r.text}")
        serves = [
            {"model": model, "version": VERSION, "remote_model": MODEL, "remote_version": "v1"}
        ]
        body = {"id": server, "url": f"grpc://127.0.0.1:{a.grpc}", "protocol": "grpc"}
        r = client.post("/admin/v1/workers", json=body | {"serves": serves})
        if r.status_code != 201:
            raise RuntimeError(f"POST /admin/v1/workers {server}: {r.status_code} {r.text}")
    wait_until(lambda: routed(_rows_by_id(stack).get(server), model), f"{server} routed", 30)
    return grpc_infer(stack.grpc, model)


class Background:
    """JSON requests from ``clients`` threads, each sequential, until `stop` (at most 5000
    each): what each X-Backend served, and each failure's line."""

    def __init__(self, stack: Stack, clients: int = 4) -> None:
        self.url = f"{stack.url}/v2/models/{MODEL}/infer"
        self.served: collections.Counter[str] = collections.Counter()
        self.failures: list[str] = []
        self._done = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        with httpx.Client(timeout=30) as client:
            for _ in range(5000):
                if self._done.is_set():
                    return
                try:
                    r = client.post(self.url, json=BODY)
                except httpx.HTTPError as exc:
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                if r.status_code == 200:
                    self.served[r.headers.get("x-backend", "?")] += 1
                else:
                    self.failures.append(f"{r.status_code} {r.text[:120]}")

    def stop(self) -> None:
        self._done.set()
        for thread in self._threads:
            thread.join(timeout=60)


def _eject_one(stack: Stack, a: MLServer, b: MLServer) -> str:
    """``a`` stopped (SIGTERM) once it has served some of 4 concurrent clients' traffic,
    which goes on until the gateway stops routing to it; then 20 requests more: all must
    succeed on ``b``."""
    load = Background(stack)
    try:
        wait_until(lambda: load.served[a.name] >= 10, f"{a.name} to serve some traffic", 30)
        before = dict(load.served)
        a.stop()
        t0 = time.monotonic()
        wait_until(lambda: not routed(_rows_by_id(stack).get(a.name)), f"{a.name} ejected", 30)
        took = time.monotonic() - t0
    finally:
        load.stop()
    served, failures = _traffic(stack, 20)
    if load.failures or failures or set(served) != {b.name}:
        raise AssertionError(
            f"with {a.name} stopping: {len(load.failures)} of {sum(load.served.values())} "
            f"failed ({load.failures[:1]}); after: served {dict(served)}, failed {failures[:1]}"
        )
    balancer = _rows_by_id(stack)[a.name]["balancer"] or {}
    view = {k: balancer.get(k) for k in ("ready", "ejected_until", "consecutive_failures")}
    return (
        f"{a.name} unroutable {took:.1f} s after it exited ({view}); 4 clients: {before} "
        f"before the stop, {dict(load.served)} in all, 0 failed; then 20 requests: "
        f"{dict(served)}, 0 failed"
    )


def _all_down(stack: Stack, b: MLServer) -> str:
    b.stop()
    wait_until(lambda: not routed(_rows_by_id(stack).get(b.name)), f"{b.name} ejected", 30)
    r = _infer(stack)
    if r.status_code != 503:
        raise AssertionError(f"expected 503 with no server up, got {r.status_code} {r.text[:200]}")
    return f"503, Retry-After {r.headers.get('retry-after')}, {r.text[:160]}"


def _readmit(stack: Stack, a: MLServer, b: MLServer) -> str:
    a.start()
    b.start()
    t0 = time.monotonic()
    names = (a.name, b.name)
    wait_until(lambda: all(routed(_rows_by_id(stack).get(n)) for n in names), "readmitted", 60)
    took = time.monotonic() - t0
    seen: collections.Counter[str] = collections.Counter()
    failures: list[str] = []
    for _ in range(10):
        served, failed = _traffic(stack, 20)
        seen.update(served)
        failures += failed
        if a.name in seen:
            break
    if failures or a.name not in seen:
        raise AssertionError(f"after restart: served {dict(seen)}, failed {failures[:1]}")
    return f"both routed {took:.1f} s after they were ready; served {dict(seen)}, 0 failed"


def mlserver_rows(stack: Stack, rows: Rows, root: Path) -> None:
    """Every MLServer row (see the module docstring); the servers are stopped at the end."""
    a, b = MLServer("mlserver-a", root), MLServer("mlserver-b", root)
    try:
        versions = a.prepare()
        b.prepare()
        version = f"{versions['mlserver']} (scikit-learn {versions['sklearn']})"
        a.start()
        b.start()
    except Exception as exc:
        rows.add(TOOL, "?", "two MLServers started", False, f"{type(exc).__name__}: {exc}")
        a.stop()
        b.stop()
        return
    try:
        steps = [
            ("registered by POST /admin/v1/workers", lambda: _register(stack, [a, b])),
            ("JSON inference via the gateway", lambda: _serve_json(stack)),
            (
                "a registered over gRPC too: ModelInfer via the gateway",
                lambda: _serve_grpc(stack, a),
            ),
            ("a stopped under traffic: ejected, b serves", lambda: _eject_one(stack, a, b)),
            ("both stopped: 503", lambda: _all_down(stack, b)),
            ("both started again: readmitted", lambda: _readmit(stack, a, b)),
        ]
        for i, (what, step) in enumerate(steps):
            if not rows.check(TOOL, version, what, step).ok and i == 0:
                break
    finally:
        a.stop()
        b.stop()
