"""uvicorn vs granian for ``modelgate serve``, side by side in one run (needs ``wrk``).

Each server runs the same gateway app (``gateway.server:make_app``, one process) on a
fresh SQLite registry; wrk drives ``GET /v2/health/live`` (framework + server cost) and an
admin resolve (a database read per request). Prints requests/s and latency percentiles,
and the granian/uvicorn ratio.

    python -m bench.bench_server [--quick] [--seconds 8] [--connections 32] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

from bench.harness import Deployment, free_port, wait_until, wrk

APP = "gateway.server:make_app"
SERVERS = {
    "uvicorn": lambda port: [
        *(sys.executable, "-m", "uvicorn", APP, "--factory", "--port", str(port)),
        *("--log-level", "warning", "--no-access-log", "--loop", "uvloop", "--http", "httptools"),
    ],
    "granian": lambda port: [
        *(sys.executable, "-m", "granian", "--interface", "asgi", "--factory"),
        *("--port", str(port), "--log-level", "warning", "--no-ws", APP),
    ],
}


def measure(
    dep: Deployment, name: str, seconds: int, connections: int, publish: bool
) -> dict[str, Any]:
    """Start ``name`` serving the app (publishing model ``bench`` through it if
    ``publish``); wrk both endpoints; stop it."""
    port = free_port()
    dep.start(name, SERVERS[name](port))
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {dep.token}"}
    try:
        wait_until(lambda: httpx.get(f"{base}/v2/health/live").status_code == 200, name)
        if publish:
            dep.publish("bench", ["1.0.0"], via=base)
        resolve = f"{base}/admin/v1/models/bench/resolve?version=%5E1"
        return {
            "live": wrk(f"{base}/v2/health/live", seconds, connections, None, auth),
            "resolve": wrk(resolve, seconds, connections, None, auth),
        }
    finally:
        dep.stop(name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 s per run")
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install wrk)")
        return 2
    seconds = 2 if args.quick else args.seconds
    root = Path(tempfile.mkdtemp(prefix="mg-bench-"))
    dep = Deployment(root)
    try:
        dep.setup()
        results = {
            name: measure(dep, name, seconds, args.connections, publish=i == 0)
            for i, name in enumerate(SERVERS)
        }
    except BaseException:
        print(dep.log_tails(), flush=True)
        raise
    finally:
        dep.stop_all()
    shutil.rmtree(root, ignore_errors=True)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "bench_server.json").write_text(json.dumps(results, indent=2))
    print(f"# wrk -t1 -c{args.connections} -d{seconds}s, one server process each")
    print(f"{'endpoint':10} {'server':8} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8}")
    for endpoint in ("live", "resolve"):
        for name in SERVERS:
            r = results[name][endpoint]
            figures = f"{r['rps']:9.0f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} {r['non2xx']:8.0f}"
            print(f"{endpoint:10} {name:8} {figures}")
        ratio = results["granian"][endpoint]["rps"] / results["uvicorn"][endpoint]["rps"]
        print(f"{endpoint:10} granian/uvicorn throughput = {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
