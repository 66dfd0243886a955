"""``modelgate demo``: the embedded end-to-end tour on one machine (SQLite, no Redis).

It starts a gateway process on a fresh SQLite file under ``./var/demo``, makes an admin
token, publishes a generated ONNX model in several versions, starts two local workers,
shows how constraints resolve, sends traffic through the gateway under a 90/10 canary
split, rolls a good version out step by step to promotion and watches a faulty one roll
back by itself (modelgate/cli/demo_rollouts.py), prints commands to try, and ends its tour
with the dashboard's URL and a read token to open it with; then it keeps serving (unless
``--no-keep``).

The gateway and workers share a control token made for the run, so that ``modelgate
workers load|unload`` place versions on the demo's workers.

A busy port (the gateway's or a worker's) is refused before anything starts. The children
run in sessions of their own, so Ctrl-C reaches only the demo, which stops them with
SIGTERM and waits: they shut down gracefully, and nothing prints a traceback.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from rich.table import Table

from backends.synthetic import scale_model
from modelgate.cli.demo_rollouts import publish_candidates, rollout_story
from modelgate.cli.output import stdout_console

__all__ = ["DemoError", "run_demo"]

ROOT = Path("var/demo")
console = stdout_console()  # full width and no colour when piped, like every command


class DemoError(Exception):
    """The demo cannot run as asked (the CLI prints it as one line, exit code 2)."""


def _check_free(port: int, what: str) -> None:
    """Refuse ``port`` when a server already listens there, as the gateway's bind would."""
    with socket.socket() as probe:
        # NOTE: SO_REUSEADDR as uvicorn sets it: only a listening socket makes this fail.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            raise DemoError(
                f"port {port} ({what}) is already in use on 127.0.0.1; stop what listens "
                f"there or choose another with --port (the demo uses PORT, PORT+1 and PORT+2)"
            ) from None


def _env(root: Path) -> dict[str, str]:
    """The children's environment: the demo's SQLite and store, no Redis, and a control
    token made for this run, which the workers require for load/unload and the gateway
    sends them (so ``modelgate workers load|unload`` work against the demo)."""
    env = dict(os.environ)
    env.pop("MODELGATE_REDIS_URL", None)
    control = secrets.token_urlsafe(32)
    env["MODELGATE_WORKER_CONTROL_TOKEN"] = control
    env["MODELGATE_GATEWAY_WORKER_CONTROL_TOKEN"] = control
    env["MODELGATE_DATABASE_URL"] = f"sqlite+aiosqlite:///{(root / 'registry.db').resolve()}"
    env["MODELGATE_ARTIFACT_ROOT"] = str((root / "artifacts").resolve())
    return env


def _cli(*args: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "modelgate", *args],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        start_new_session=True,
    )
    return result.stdout.strip()


def _wait_ready(url: str, process: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the gateway exited with code {process.returncode}")
        try:
            if httpx.get(f"{url}/v2/health/live", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit(f"the gateway did not answer on {url} within {timeout_s:.0f}s")


def _tour(client: httpx.Client, model: str) -> None:
    client.post("/admin/v1/models", json={"name": model, "description": "generated y = x * k"})
    published = Table("version", "scale", "sha256", title=f"published {model}")
    for version, scale in (("1.0.0", 1.0), ("1.1.0", 1.5), ("1.2.0-rc.1", 2.0), ("2.0.0", 3.0)):
        files = {
            "file": (f"{model}-{version}.onnx", scale_model(scale), "application/octet-stream")
        }
        out = client.post(
            f"/admin/v1/models/{model}/versions", data={"version": version}, files=files
        )
        out.raise_for_status()
        published.add_row(version, str(scale), out.json()["sha256"][:16] + "…")
    console.print(published)
    _resolutions(client, model, "resolution")
    client.patch(f"/admin/v1/models/{model}/versions/2.0.0", json={"status": "deprecated"})
    client.put(f"/admin/v1/models/{model}/aliases/canary", json={"version": "1.2.0-rc.1"})
    _resolutions(client, model, "after deprecating 2.0.0 and pointing alias canary at 1.2.0-rc.1")


def _start_workers(
    env: dict[str, str], port: int, loads: list[str]
) -> list[subprocess.Popen[bytes]]:
    workers = []
    for n in (1, 2):
        args = [sys.executable, "-m", "modelgate", "worker", "--port", str(port + n), "--id",
                f"demo-worker-{n}", "--log-level", "warning"]  # fmt: skip
        for ref in loads:
            args += ["--load", ref]
        workers.append(subprocess.Popen(args, env=env, start_new_session=True))
    return workers


def _wait_workers(client: httpx.Client, loads: list[str], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rows = client.get("/admin/v1/workers").json()
        if sum(1 for r in rows if r["balancer"] and set(loads) <= set(r["balancer"]["ready"])) >= 2:
            return
        time.sleep(0.2)
    raise SystemExit("the demo workers did not become ready within a minute")


def _traffic(client: httpx.Client, model: str) -> None:
    client.put(
        f"/admin/v1/models/{model}/traffic",
        json={"arms": [{"version": "1.1.0", "weight": 90}, {"version": "2.0.0", "weight": 10}]},
    ).raise_for_status()
    time.sleep(0.5)  # NOTE: a human-facing pause; the gateway reloads within milliseconds
    body = {
        "inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 1, 1, 1]}]
    }
    versions: collections.Counter[str] = collections.Counter()
    workers: collections.Counter[str] = collections.Counter()
    for _ in range(500):
        response = client.post(f"/v2/models/{model}/infer", json=body)
        response.raise_for_status()
        versions[response.headers["x-model-version"]] += 1
        workers[response.headers["x-backend"]] += 1
    table = Table("served by", "requests", title="500 requests, policy 1.1.0=90 / 2.0.0=10")
    for name, count in sorted(versions.items()):
        table.add_row(f"version {name}", str(count))
    for name, count in sorted(workers.items()):
        table.add_row(f"worker {name}", str(count))
    console.print(table)
    sticky = {
        client.post(
            f"/v2/models/{model}/infer", json=body, headers={"X-Route-Key": "user-42"}
        ).headers["x-model-version"]
        for _ in range(20)
    }
    console.print(f"X-Route-Key user-42, 20 requests → always {', '.join(sorted(sticky))}")


def _resolutions(client: httpx.Client, model: str, title: str) -> None:
    table = Table("reference", "resolves to", "candidates", title=title)
    for ref in ("^1.0", "~1.1", "stable", "latest", "^1.2.0-rc.1", "2.0.0", "canary", "^3"):
        response = client.get(f"/admin/v1/models/{model}/resolve", params={"version": ref})
        body: dict[str, Any] = response.json()
        if response.status_code == 200:
            table.add_row(ref, body["version"], ", ".join(body["candidates"]))
        else:
            table.add_row(ref, f"[red]{response.status_code}[/red]", body.get("error", ""))
    console.print(table)


def _dashboard(url: str, viewer: str) -> None:
    """The tour's last lines: where the dashboard is, and a read token to sign in with."""
    console.print(
        f"[bold]Dashboard[/bold]: {url}/ui (the fleet live: split, workers, rollouts)\n"
        f"  sign in with this read token (the admin token above can also pause, resume, "
        f"promote or abort rollouts and move aliases):\n"
        f"  {viewer}",
        soft_wrap=True,
        highlight=False,
    )


def run_demo(*, port: int = 8000, keep: bool = True) -> None:
    """Run the tour against a fresh embedded deployment; serve on until Ctrl-C when ``keep``.

    Raises `DemoError` (before starting anything) when a port it needs is taken."""
    _check_free(port, "the gateway")
    for n in (1, 2):
        _check_free(port + n, f"demo worker {n}")
    processes: list[subprocess.Popen[bytes]] = []
    terminate = signal.signal(signal.SIGTERM, _interrupt)
    try:
        _run(port, keep, processes)
    except KeyboardInterrupt:
        console.print("\nstopping the demo")
    finally:
        # NOTE: a second Ctrl-C must not cut the shutdown short and leave children behind.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            _stop(processes)
        finally:
            signal.signal(signal.SIGINT, previous)
            signal.signal(signal.SIGTERM, terminate)


def _interrupt(_signum: int, _frame: object) -> None:
    """SIGTERM (``kill``, ``timeout``, a supervisor: sent to the demo alone, not to its
    children) stops the demo as Ctrl-C does, its workers and gateway with it."""
    raise KeyboardInterrupt


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _run(port: int, keep: bool, processes: list[subprocess.Popen[bytes]]) -> None:
    shutil.rmtree(ROOT, ignore_errors=True)
    ROOT.mkdir(parents=True)
    env = _env(ROOT)
    _cli("db", "upgrade", env=env)
    token = _cli("tokens", "create", "--name", "demo-admin", "--scope", "admin", env=env)
    viewer = _cli("tokens", "create", "--name", "demo-dashboard", "--scope", "read", env=env)
    url = f"http://127.0.0.1:{port}"
    console.print(
        f"[bold]modelgate demo[/bold]: gateway on {url}, SQLite at {ROOT}/registry.db,"
        f" gateway log (access lines, rollout steps) in {ROOT}/gateway.log"
    )
    # NOTE: the gateway logs to a file, so that its access lines do not tear the live views.
    with (ROOT / "gateway.log").open("ab") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "modelgate", "serve", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    processes.append(server)
    _wait_ready(url, server)
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30.0) as client:
        _tour(client, "resnet-demo")
        loads = [f"resnet-demo@{v}" for v in ("1.0.0", "1.1.0", "2.0.0")]
        loads += publish_candidates(client, "resnet-demo")
        processes.extend(_start_workers(env, port, loads))
        _wait_workers(client, loads)
        _traffic(client, "resnet-demo")
        rollout_story(client, url, "resnet-demo", console)
    console.print("\n[bold]Try it[/bold] (admin token below):\n", soft_wrap=True)
    infer = '{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}'
    console.print(
        f"  curl -si {url}/v2/models/resnet-demo/versions/%5E1.0/infer -d '{infer}'\n"
        f"  export TOKEN={token}\n"
        f'  curl -s -H "Authorization: Bearer $TOKEN" \'{url}/admin/v1/models/resnet-demo/'
        "resolve?version=%5E1.0' | python -m json.tool\n"
        f'  curl -s -H "Authorization: Bearer $TOKEN" {url}/admin/v1/audit'
        " | python -m json.tool\n"
        f"  modelgate --url {url} --token $TOKEN rollout list resnet-demo\n"
        f"  modelgate --url {url} --token $TOKEN workers unload resnet-demo 1.3.0"
        "   # and workers load resnet-demo 1.3.0: on every demo worker, waited for\n"
        f"  while :; do curl -s -o /dev/null {url}/v2/models/resnet-demo/infer -d '{infer}';"
        " done &   # traffic, so that rollout steps can be judged\n"
        f"  MODELGATE_URL={url} MODELGATE_TOKEN=$TOKEN examples/rollout.sh resnet-demo"
        " 1.1.0 --steps 25,100 --interval 5 --min-requests 20   # back to 1.1.0, stepwise\n"
        f"  open {url}/schema for the OpenAPI document\n",
        soft_wrap=True,
        highlight=False,
    )
    _dashboard(url, viewer)
    if keep:
        console.print("serving; Ctrl-C stops the demo")
        with contextlib.suppress(KeyboardInterrupt):
            server.wait()
