"""Everything a machine with a CUDA device measures, in one run (G4 and G8 on the GPU).

The targets are those listed in docs/BENCHMARKS.md.

1. Which execution provider the worker picks (CUDA must really run), and the MLP's raw
   ONNX Runtime time per batch at batch 1 vs 32 (the batching ceiling on this device).
2. `bench.bench_worker` on CUDA: batched vs unbatched worker (G4 on the GPU, G8 first half).
3. Gateway vs direct to the same CUDA worker at concurrency 64 and 1 (G8 second half): a
   real ``modelgate serve`` (uvicorn, embedded SQLite) in front of a ``modelgate worker``,
   driven by `bench.harness.LoadGen` (closed loop).

Prints a short table last; full numbers go to ``--out`` (JSON). ``--providers cpu`` is a
dry run on a machine without a GPU.

    python -m bench.bench_gpu [--out DIR] [--providers cuda|cpu] [--seconds 6]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import ROOT, Deployment, LoadGen, run_loadgen


def raw_session(width: int, rows: tuple[int, ...] = (1, 32)) -> dict[str, Any]:
    """ONNX Runtime alone: ms per run of the MLP at each batch size, 1 s each."""
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


def closed_loop(
    port: int, path: str, body: bytes, concurrency: int, seconds: float
) -> dict[str, Any]:
    """``concurrency`` connections back to back for ``seconds`` after 0.5 s of warm-up."""
    gen = LoadGen("127.0.0.1", port, path, {}, body)
    r = run_loadgen(lambda: gen.closed(concurrency, 0.5, seconds))
    ok = r["ok_service"]
    return {
        "rps": r["goodput_rps"],
        "p50_ms": ok.get("p50_ms", float("nan")),
        "p99_ms": ok.get("p99_ms", float("nan")),
        "status_counts": r["status_counts"],
    }


def gateway_vs_direct(width: int, seconds: float, providers: str = "cuda") -> dict[str, Any]:
    """A gateway and one worker of the MLP; c64 and c1, direct and through the gateway."""
    from backends.synthetic import mlp_model

    root = Path(tempfile.mkdtemp(prefix="mg-gpu-"))
    dep = Deployment(
        root,
        MODELGATE_GATEWAY_SERVER="uvicorn",
        MODELGATE_GATEWAY_LOG_LEVEL="warning",
        MODELGATE_GATEWAY_WORKERS_POLL_S="0.2",
        MODELGATE_REGISTRY_MAX_ARTIFACT_BYTES=str(1 << 30),
    )
    try:
        dep.setup()
        dep.start_gateway()
        dep.publish("mlp", ["1.0.0"], artifact=mlp_model(width))
        w_port = dep.start_worker("gpu-0", ["mlp@1.0.0"], "--providers", providers)
        dep.wait_serving({"gpu-0": {"mlp@1.0.0"}}, timeout_s=120)
        row = {"name": "input", "shape": [1, width], "datatype": "FP32", "data": [0.5] * width}
        body = json.dumps({"inputs": [row]}).encode()
        gw_port = int(dep.gateway_url.rsplit(":", 1)[1])
        direct = (w_port, "/v2/models/mlp/versions/1.0.0/infer")
        via = (gw_port, "/v2/models/mlp/versions/%5E1/infer")
        closed_loop(*direct, body, 64, 1.0)
        closed_loop(*via, body, 64, 1.0)
        result: dict[str, Any] = {
            "direct": closed_loop(*direct, body, 64, seconds),
            "gateway": closed_loop(*via, body, 64, seconds),
            "direct_c1": closed_loop(*direct, body, 1, seconds / 2),
            "gateway_c1": closed_loop(*via, body, 1, seconds / 2),
        }
        result["ratio"] = result["gateway"]["rps"] / result["direct"]["rps"]
    except BaseException:
        dep.stop_all()
        print(f"failed; process logs are kept in {root}\n{dep.log_tails()}", flush=True)
        raise
    dep.stop_all()
    shutil.rmtree(root, ignore_errors=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
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
        [sys.executable, "-m", "bench.bench_worker", "--providers", args.providers,
         "--binary-output", "--seconds", "3", "--out", str(args.out / "worker")],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
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
