"""Everything the GPU machine measures, in one run (see shared/GPU.md).

1. Which execution provider the worker picks (CUDA must really run), and the MLP's raw
   ONNX Runtime time per batch at batch 1 vs 32 (the batching ceiling on this device).
2. ``bench/bench_worker.py`` on CUDA: batched vs unbatched worker (G4 on the GPU, G8 first half).
3. Gateway vs direct to the same CUDA worker at concurrency 64 (G8 second half): a real
   ``modelgate serve`` (uvicorn, embedded SQLite) in front of a ``modelgate worker``.
Prints a short table last; full numbers go to ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def raw_session(width: int, rows: tuple[int, ...] = (1, 32)) -> dict[str, Any]:
    import numpy as np
    import onnxruntime as ort

    from backends.synthetic import mlp_model

    session = ort.InferenceSession(
        mlp_model(width), providers=["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    out: dict[str, Any] = {"providers": session.get_providers()}
    for n in rows:
        x = np.random.default_rng(0).standard_normal((n, width)).astype(np.float32)
        for _ in range(20):
            session.run(None, {"input": x})
        start, runs = time.perf_counter(), 0
        while time.perf_counter() - start < 1.0:
            session.run(None, {"input": x})
            runs += 1
        ms = (time.perf_counter() - start) / runs * 1000
        out[f"batch{n}_ms"] = ms
        out[f"batch{n}_rows_per_s"] = n / ms * 1000
    return out


async def closed_loop(url: str, body: bytes, concurrency: int, seconds: float) -> dict[str, float]:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def client() -> None:
            nonlocal errors
            while time.perf_counter() < stop:
                sent = time.perf_counter()
                async with session.post(url, data=body) as response:
                    await response.read()
                    if response.status != 200:
                        errors += 1
                latencies.append(time.perf_counter() - sent)

        await asyncio.gather(*(client() for _ in range(concurrency)))
    latencies.sort()
    return {
        "rps": len(latencies) / seconds,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "errors": errors,
    }


def gateway_vs_direct(width: int, seconds: float, providers: str = "cuda") -> dict[str, Any]:
    import httpx

    from backends.synthetic import mlp_model

    root = Path(tempfile.mkdtemp(prefix="mg-gpu-"))
    env = dict(
        os.environ,
        MODELGATE_DATABASE_URL=f"sqlite+aiosqlite:///{root}/r.db",
        MODELGATE_ARTIFACT_ROOT=str(root / "a"),
        MODELGATE_GATEWAY_SERVER="uvicorn",
        MODELGATE_GATEWAY_ACCESS_LOG="false",
        MODELGATE_GATEWAY_WORKERS_POLL_S="0.2",
        MODELGATE_REGISTRY_MAX_ARTIFACT_BYTES=str(1 << 30),
    )
    env.pop("MODELGATE_REDIS_URL", None)
    cli = [sys.executable, "-m", "modelgate"]
    subprocess.run([*cli, "db", "upgrade"], env=env, check=True, capture_output=True)
    token = subprocess.run(
        [*cli, "tokens", "create", "--name", "gpu", "--scope", "admin"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    gw_port, w_port = free_port(), free_port()
    procs = [subprocess.Popen([*cli, "serve", "--port", str(gw_port)], env=env)]
    try:
        base = f"http://127.0.0.1:{gw_port}"
        for _ in range(300):
            try:
                if httpx.get(f"{base}/v2/health/ready").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        headers = {"Authorization": f"Bearer {token}"}
        httpx.post(
            f"{base}/admin/v1/models", json={"name": "mlp"}, headers=headers
        ).raise_for_status()
        httpx.post(
            f"{base}/admin/v1/models/mlp/versions",
            data={"version": "1.0.0"},
            headers=headers,
            files={"file": ("mlp.onnx", mlp_model(width), "application/octet-stream")},
            timeout=120,
        ).raise_for_status()
        procs.append(
            subprocess.Popen(
                [
                    *cli,
                    "worker",
                    "--port",
                    str(w_port),
                    "--id",
                    "gpu-0",
                    "--load",
                    "mlp@1.0.0",
                    "--providers",
                    providers,
                ],
                env=env,
            )
        )
        for _ in range(600):
            rows = httpx.get(f"{base}/admin/v1/workers", headers=headers).json()
            if rows and rows[0]["balancer"] and "mlp@1.0.0" in rows[0]["balancer"]["ready"]:
                break
            time.sleep(0.1)
        body = json.dumps(
            {
                "inputs": [
                    {
                        "name": "input",
                        "shape": [1, width],
                        "datatype": "FP32",
                        "data": [0.5] * width,
                    }
                ]
            }
        ).encode()
        direct = f"http://127.0.0.1:{w_port}/v2/models/mlp/versions/1.0.0/infer"
        via = f"{base}/v2/models/mlp/versions/%5E1/infer"
        asyncio.run(closed_loop(direct, body, 64, 1.0))
        asyncio.run(closed_loop(via, body, 64, 1.0))
        result = {
            "direct": asyncio.run(closed_loop(direct, body, 64, seconds)),
            "gateway": asyncio.run(closed_loop(via, body, 64, seconds)),
            "direct_c1": asyncio.run(closed_loop(direct, body, 1, seconds / 2)),
            "gateway_c1": asyncio.run(closed_loop(via, body, 1, seconds / 2)),
        }
        result["ratio"] = result["gateway"]["rps"] / result["direct"]["rps"]
        return result
    finally:
        for proc in reversed(procs):
            proc.terminate()
            proc.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "bench/out")))
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--providers", default="cuda", choices=["cuda", "cpu"], help="cpu: dry run")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    from backends.runtime import RuntimeOptions, choose_device

    results: dict[str, Any] = {"device": choose_device(RuntimeOptions()).device}
    results["raw"] = raw_session(args.width)
    worker = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "bench_worker.py"),
            "--providers",
            args.providers,
            "--binary-output",
            "--seconds",
            "3",
            "--out",
            str(args.out / "worker"),
        ],
        capture_output=True,
        text=True,
    )
    results["worker_stdout"] = worker.stdout[-4000:]
    print(worker.stdout[-3000:], worker.stderr[-2000:] if worker.returncode else "")
    results["gateway"] = gateway_vs_direct(args.width, args.seconds, args.providers)
    (args.out / "bench_gpu.json").write_text(json.dumps(results, indent=2))
    raw, gw = results["raw"], results["gateway"]
    print(f"device: {results['device']}  providers: {raw['providers']}")
    print(
        f"raw ORT  batch 1: {raw['batch1_ms']:.3f} ms   batch 32: {raw['batch32_ms']:.3f} ms "
        f"(ceiling {raw['batch32_rows_per_s'] / raw['batch1_rows_per_s']:.1f}x rows/s)"
    )
    direct, via = gw["direct"], gw["gateway"]
    print(
        f"c64 JSON  direct {direct['rps']:.0f} req/s p99 {direct['p99_ms']:.1f} ms | "
        f"gateway {via['rps']:.0f} req/s p99 {via['p99_ms']:.1f} ms | ratio {gw['ratio']:.2f}"
    )
    c1_direct, c1_via = gw["direct_c1"]["p50_ms"], gw["gateway_c1"]["p50_ms"]
    print(f"c1  p50   direct {c1_direct:.2f} ms | gateway {c1_via:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
