"""uvicorn vs granian for ``modelgate serve``, side by side in one run (needs ``wrk``).

Each server runs the same gateway app (one process) on a fresh SQLite registry; wrk drives
``GET /v2/health/live`` (framework + server cost) and an admin resolve (a database read per
request). Prints requests/s and latency percentiles, and the granian/uvicorn ratio.
Usage: ``python bench/bench_server.py [--seconds 8] [--connections 32] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from backends.synthetic import scale_model

SERVERS = {
    "uvicorn": lambda port: [
        sys.executable,
        "-m",
        "uvicorn",
        "gateway.server:make_app",
        "--factory",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
        "--loop",
        "uvloop",
        "--http",
        "httptools",
    ],
    "granian": lambda port: [
        sys.executable,
        "-m",
        "granian",
        "--interface",
        "asgi",
        "--factory",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-ws",
        "gateway.server:make_app",
    ],
}


def wrk(url: str, seconds: int, connections: int, token: str) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-H",
         f"Authorization: Bearer {token}", url],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def pct(p: str) -> float:
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
        assert m, out
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": rps,
        "p50_ms": pct("50"),
        "p99_ms": pct("99"),
        "non2xx": float(errors.group(1)) if errors else 0.0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install wrk)")
        return 2
    root = Path(tempfile.mkdtemp(prefix="mg-bench-"))
    env = dict(
        os.environ,
        MODELGATE_DATABASE_URL=f"sqlite+aiosqlite:///{root}/r.db",
        MODELGATE_ARTIFACT_ROOT=str(root / "a"),
    )
    env.pop("MODELGATE_REDIS_URL", None)
    cli = [sys.executable, "-m", "modelgate"]
    subprocess.run([*cli, "db", "upgrade"], env=env, check=True, capture_output=True)
    token = subprocess.run(
        [*cli, "tokens", "create", "--name", "bench", "--scope", "admin"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    results: dict[str, dict[str, dict[str, float]]] = {}
    port = 18931
    for name, command in SERVERS.items():
        proc = subprocess.Popen(command(port), env=env)
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(200):
                try:
                    httpx.get(f"{base}/v2/health/live", timeout=0.5)
                    break
                except httpx.TransportError:
                    time.sleep(0.05)
            headers = {"Authorization": f"Bearer {token}"}
            if name == "uvicorn":
                httpx.post(f"{base}/admin/v1/models", json={"name": "bench"}, headers=headers)
                files = {"file": ("m.onnx", scale_model(), "application/octet-stream")}
                httpx.post(
                    f"{base}/admin/v1/models/bench/versions",
                    data={"version": "1.0.0"},
                    files=files,
                    headers=headers,
                )
            results[name] = {
                "live": wrk(f"{base}/v2/health/live", args.seconds, args.connections, token),
                "resolve": wrk(
                    f"{base}/admin/v1/models/bench/resolve?version=%5E1",
                    args.seconds,
                    args.connections,
                    token,
                ),
            }
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    shutil.rmtree(root, ignore_errors=True)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "bench_server.json").write_text(json.dumps(results, indent=2))
    print(f"# wrk -t1 -c{args.connections} -d{args.seconds}s, one server process each")
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
