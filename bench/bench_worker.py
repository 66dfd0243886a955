"""Worker dynamic batching: throughput and latency with batching on vs off, one run.

A 3-layer 2048-wide MLP (``backends.synthetic.mlp_model``) is served by two worker
processes, one with dynamic batching (``--max-batch-size``, default 32) and one with it off
(batch size 1), both up at once; closed-loop clients send one-row JSON requests at
concurrency 1, 8, 32 and 64 over keep-alive connections on 127.0.0.1. Each level is cut
into ``--slices`` that alternate between the two workers so that other load on the machine
falls on both alike. Prints a table of ratios and the G4 verdicts last; ``--out DIR`` writes
every number as JSON (bounded: levels x seconds, about 45 s by default).

Needs only numpy, onnx, onnxruntime, msgspec, litestar and uvicorn (no database, pydantic
or prometheus-client), so it runs as is on a GPU machine: ``--providers auto`` picks CUDA
when it really runs, and the header names the device and providers. ``--quick`` measures
concurrency 1 and 32 only (the levels G4 is judged at), 2 s each.

    python -m bench.bench_worker [--quick] [--seconds 4] [--binary-output] [--out bench/out]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness import Proc, free_port, machine, wait_until

MODEL = "mlp"
VERSION = "1.0.0"
PATH = f"/v2/models/{MODEL}/versions/{VERSION}/infer"
LEVELS = (1, 8, 32, 64)


# -- the worker side (a subprocess of this script) ----------------------------------------


def serve(args: argparse.Namespace) -> None:
    """Run one worker on ``args.port`` serving ``args.model``; prints one JSON line when up."""
    import logging

    from backends.app import create_worker_app
    from backends.batcher import BatchPolicy
    from backends.dataplane import DataPlane, WorkerOptions
    from backends.metrics import Metrics
    from backends.runtime import RuntimeOptions, choose_device
    from backends.server import serve as run
    from backends.source import FileSource

    logging.basicConfig(level=logging.WARNING)
    try:
        from backends.metrics import PrometheusMetrics

        metrics: Metrics = PrometheusMetrics()
    except ImportError:
        metrics = Metrics()
    runtime = RuntimeOptions(providers=args.providers, intra_op_threads=args.intra_op_threads,
                             allow_spinning=args.spinning == "on")  # fmt: skip
    options = WorkerOptions(
        worker_id=f"bench-{args.port}",
        runtime=runtime,
        batch=BatchPolicy(
            max_batch_size=args.max_batch_size, max_queue_delay_us=args.max_queue_delay_us
        ),
    )
    device = choose_device(runtime)
    source = FileSource({(MODEL, VERSION): Path(args.model)})
    plane = DataPlane(options, source=source, metrics=metrics)
    app = create_worker_app(plane, startup_loads=[(MODEL, VERSION)])

    providers = [p if isinstance(p, str) else p[0] for p in device.providers]
    info = {"device": device.device, "providers": providers, "metrics": type(metrics).__name__}
    print(json.dumps(info), flush=True)
    run(app, plane, host="127.0.0.1", port=args.port, log_level="warning")


# -- the client side ----------------------------------------------------------------------


def _request(port: int, body: bytes) -> bytes:
    head = f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


async def _connection(port: int, requests: list[bytes], stop_at: float, record_from: float,
                      latencies: list[float], errors: list[str]) -> None:  # fmt: skip
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = 0
    try:
        while (now := time.perf_counter()) < stop_at:
            writer.write(requests[i % len(requests)])
            i += 1
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length)
            done = time.perf_counter()
            if not head.startswith(b"HTTP/1.1 200"):
                errors.append(head.split(b"\r\n", 1)[0].decode() + " " + body[:200].decode())
            elif now >= record_from:
                latencies.append(done - now)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def _measure(port: int, requests: list[bytes], concurrency: int, warmup_s: float,
                   seconds: float) -> tuple[list[float], list[str], float]:  # fmt: skip
    """One closed-loop run: latencies (s) of requests sent after the warm-up, errors, and the
    measured wall time."""
    latencies: list[float] = []
    errors: list[str] = []
    record_from = time.perf_counter() + warmup_s
    stop_at = record_from + seconds
    await asyncio.gather(*(
        _connection(port, requests, stop_at, record_from, latencies, errors)
        for _ in range(concurrency)
    ))  # fmt: skip
    return latencies, errors, time.perf_counter() - record_from


def _summary(concurrency: int, latencies: list[float], errors: list[str],
             elapsed: float) -> dict[str, Any]:  # fmt: skip
    lat = np.array(latencies) * 1000
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "seconds": elapsed,
        "throughput_rps": len(latencies) / elapsed,
        "p50_ms": float(np.percentile(lat, 50)) if lat.size else None,
        "p95_ms": float(np.percentile(lat, 95)) if lat.size else None,
        "p99_ms": float(np.percentile(lat, 99)) if lat.size else None,
        "mean_ms": float(lat.mean()) if lat.size else None,
    }


def _batch_totals(port: int) -> tuple[float, float]:
    """Rows and batches executed so far, from the worker's ``/metrics`` (0, 0 without it)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    rows = batches = 0.0
    if "modelgate_worker_batch_size_count" not in text:
        return float("nan"), 0.0
    for line in text.splitlines():
        if line.startswith("modelgate_worker_batch_size_sum"):
            rows += float(line.rsplit(" ", 1)[1])
        elif line.startswith("modelgate_worker_batch_size_count"):
            batches += float(line.rsplit(" ", 1)[1])
    return rows, batches


def _start_worker(
    args: argparse.Namespace, model: Path, batch: int
) -> tuple[Proc, int, dict[str, Any]]:
    """A worker subprocess (this module with ``--serve``), once ready (loaded and warm);
    its port and the device line it printed."""
    port = free_port()
    cmd = [sys.executable, "-m", "bench.bench_worker", "--serve", "--port", str(port),
           "--model", str(model), "--max-batch-size", str(batch),
           "--max-queue-delay-us", str(args.max_queue_delay_us), "--providers", args.providers,
           "--intra-op-threads", str(args.intra_op_threads),
           "--spinning", args.spinning]  # fmt: skip
    log = model.parent / f"worker-batch{batch}.log"
    proc = Proc(f"worker-batch{batch}", cmd, dict(os.environ), log)

    def ready() -> bool:
        if proc.popen.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            code = proc.popen.returncode
            raise SystemExit(f"worker (max batch {batch}) exited with {code}:\n{tail}")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", "/v2/health/ready")
            return conn.getresponse().status == 200
        finally:
            conn.close()

    wait_until(ready, f"the worker with max batch {batch} to be ready", 120)
    lines = log.read_text(errors="replace").splitlines()
    return proc, port, json.loads(next(line for line in lines if line.startswith("{")))


def _bodies(width: int, count: int = 16, binary_output: bool = False) -> list[bytes]:
    """One-row JSON requests; the response is JSON too unless ``binary_output``."""
    rng = np.random.default_rng(0)
    out = []
    for _ in range(count):
        row = rng.standard_normal(width).astype(np.float32).tolist()
        request: dict[str, Any] = {"inputs": [{"name": "input", "shape": [1, width],
                                               "datatype": "FP32", "data": row}]}  # fmt: skip
        if binary_output:
            request["parameters"] = {"binary_data_output": True}
        out.append(json.dumps(request).encode())
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _cell(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def _table(results: dict[str, Any]) -> str:
    rows = ["conc | mode | req/s    | p50 ms  | p95 ms  | p99 ms  | rows/batch | errors"]
    for mode in ("on", "off"):
        for r in results[mode]["levels"]:
            rows.append(
                f"{r['concurrency']:>4} | {mode:<4} | {r['throughput_rps']:>8.1f} | "
                f"{r['p50_ms']:>7.2f} | {r['p95_ms']:>7.2f} | {r['p99_ms']:>7.2f} | "
                f"{_cell(r['mean_batch_rows']):>10} | {r['errors']}"
            )
    rows.append("")
    rows.append("conc | throughput on/off | p50 on/off | p95 on/off | p99 on/off")
    for on, off in zip(results["on"]["levels"], results["off"]["levels"], strict=True):
        cells = [_ratio(on[k], off[k]) for k in ("throughput_rps", "p50_ms", "p95_ms", "p99_ms")]
        text = " | ".join(f"{c:>10.2f}" if c is not None else "       n/a" for c in cells)
        rows.append(f"{on['concurrency']:>4} | {text}")
    return "\n".join(rows)


def _verdict(results: dict[str, Any]) -> list[str]:
    by = {m: {r["concurrency"]: r for r in results[m]["levels"]} for m in ("on", "off")}
    lines = []
    if 32 in by["on"]:
        thr = _ratio(by["on"][32]["throughput_rps"], by["off"][32]["throughput_rps"]) or 0
        p95 = _ratio(by["on"][32]["p95_ms"], by["off"][32]["p95_ms"]) or 99
        lines.append(f"G4 c32 throughput on/off {thr:.2f} (target >= 4): "
                     f"{'PASS' if thr >= 4 else 'MISS'}")  # fmt: skip
        lines.append(f"G4 c32 p95 on/off {p95:.2f} (target <= 0.5): "
                     f"{'PASS' if p95 <= 0.5 else 'MISS'}")  # fmt: skip
    if 1 in by["on"]:
        p50 = _ratio(by["on"][1]["p50_ms"], by["off"][1]["p50_ms"]) or 99
        lines.append(f"c1 p50 on/off {p50:.2f} (target <= 1.10): "
                     f"{'PASS' if p50 <= 1.10 else 'MISS'}")  # fmt: skip
    return lines


def bench(args: argparse.Namespace) -> None:
    from backends.synthetic import mlp_model

    levels = tuple(int(c) for c in args.levels.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "mlp.onnx"
        model.write_bytes(mlp_model(width=args.width, layers=3))
        bodies = _bodies(args.width, binary_output=args.binary_output)
        results: dict[str, Any] = {"config": vars(args), "machine": machine()}
        # NOTE: both workers stay up and the modes alternate level by level, so that load
        # from anything else on the machine drifts into both sides alike.
        workers = {"on": args.max_batch_size, "off": 1}
        started: dict[str, tuple[Proc, int, dict[str, Any]]] = {}
        try:
            for mode, batch in workers.items():
                started[mode] = _start_worker(args, model, batch)
                results[mode] = {"max_batch_size": batch, "worker": started[mode][2], "levels": []}
            results["load_average_before"] = os.getloadavg()
            # NOTE: each level is cut into slices that alternate between the two workers
            # (on, off, off, on, ...), so that load from anything else on the machine
            # drifts into both sides alike.
            for c in levels:
                raw: dict[str, tuple[list[float], list[str], list[float]]] = {
                    m: ([], [], []) for m in workers
                }
                before = {m: _batch_totals(started[m][1]) for m in workers}
                for index in range(args.slices):
                    order = list(workers) if index % 2 == 0 else list(reversed(workers))
                    for mode in order:
                        port = started[mode][1]
                        requests = [_request(port, b) for b in bodies]
                        got = asyncio.run(_measure(port, requests, c, args.warmup,
                                                   args.seconds / args.slices))  # fmt: skip
                        raw[mode][0].extend(got[0])
                        raw[mode][1].extend(got[1])
                        raw[mode][2].append(got[2])
                for mode in workers:
                    lat, errs, times = raw[mode]
                    level = _summary(c, lat, errs, sum(times))
                    rows, batches = _batch_totals(started[mode][1])
                    done = batches - before[mode][1]
                    mean = (rows - before[mode][0]) / done if done else None
                    level["mean_batch_rows"] = mean if mean == mean else None  # NaN: no metrics
                    results[mode]["levels"].append(level)
                    print(f"batching {mode:<3} c={c:<3} {level['throughput_rps']:8.1f} req/s "
                          f"p50 {level['p50_ms']:.2f} ms p95 {level['p95_ms']:.2f} ms "
                          f"p99 {level['p99_ms']:.2f} ms errors {level['errors']}",
                          file=sys.stderr, flush=True)  # fmt: skip
            results["load_average_after"] = os.getloadavg()
        finally:
            for proc, _, _ in started.values():
                proc.stop(timeout_s=30)
    if args.out:
        out_dir = Path(args.out)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "bench_worker.json").write_text(json.dumps(results, indent=2))
    info = results["on"]["worker"]
    answers = "binary" if args.binary_output else "JSON"
    print(f"\nworker batching: {args.width}-wide 3-layer MLP, one-row JSON requests "
          f"({answers} responses), "
          f"device {info['device']} (providers {', '.join(info['providers'])}), "
          f"{args.seconds:g}s per level, max batch {args.max_batch_size}, "
          f"max queue delay {args.max_queue_delay_us} us, "
          f"intra-op threads {args.intra_op_threads or 'default'}, spinning {args.spinning}; "
          f"load average "
          f"{results['load_average_before'][0]:.1f} before, "
          f"{results['load_average_after'][0]:.1f} after")  # fmt: skip
    print(_table(results))
    print("\n".join(_verdict(results)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="levels 1 and 32, 2 s each")
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--model", default="", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=4.0, help="measured time per level")
    parser.add_argument("--warmup", type=float, default=0.3, help="unmeasured time per slice")
    parser.add_argument("--slices", type=int, default=4, help="alternating slices per level")
    parser.add_argument("--levels", default=",".join(map(str, LEVELS)))
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--max-queue-delay-us", type=int, default=0)
    parser.add_argument("--providers", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--intra-op-threads", type=int, default=0)
    parser.add_argument("--spinning", choices=["on", "off"], default="off",
                        help="ONNX Runtime thread-pool spin-waiting")  # fmt: skip
    parser.add_argument(
        "--binary-output",
        action="store_true",
        help="ask for the output in the binary extension (JSON request still)",
    )
    parser.add_argument("--out", default=None, help="write full results as JSON here")
    args = parser.parse_args()
    if args.quick:
        args.levels, args.seconds = "1,32", 2.0
    if args.serve:
        serve(args)
    else:
        bench(args)


if __name__ == "__main__":
    main()
