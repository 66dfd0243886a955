"""Gateway vs direct to the worker with perf_analyzer 2.51 (Triton's own tool), over HTTP
and gRPC, at concurrency 1 and 16, side by side in one run.

One ``modelgate serve`` (SQLite, embedded mode, gRPC on when the CLI has it) and one
``modelgate worker`` ``a`` serving ``m@1.0.0`` (`backends.synthetic.scale_model`, one row of
4 FP32 per request, ``MODELGATE_WORKER_INTRA_OP_THREADS=1``, default batching), all on
127.0.0.1. Paths, each at concurrency 1 and 16 (perf_analyzer's synchronous clients):

* ``direct``: perf_analyzer to the worker's own port, ``-x 1.0.0``;
* ``gateway``: the same through the gateway, ``-x 1.0.0`` (an exact pin: no policy);
* ``gateway_range``: through the gateway with ``-x ^1.0`` (a range resolved per request).

Each measurement is perf_analyzer's own: ``-p`` windows (2 s, 1 s with ``--quick``), the
first three taken as stable (``-s 1000 -r 3``), so a run is bounded. Rounds interleave the
paths (reversed every other round) and the median is reported; each run waits for the
rest of the (shared) machine to be quiet first. Printed last: per protocol and level,
throughput gateway / direct and the p50 and p99 the gateway adds, and the gateway's CPU
per request.

With ``--profile``, py-spy then samples the gateway process for 5 s during a c16 run per
protocol, and the profiles are printed before the ratios.

    python -m bench.perf_analyzer [--quick] [--rounds N] [--profile] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from statistics import median
from typing import Any

from bench.harness import (
    CpuMeter,
    Deployment,
    Proc,
    Quiet,
    free_port,
    machine,
    print_profile,
    profile_during,
    wait_until,
)
from bench.harness.tools import TOOLS, perf_analyzer
from bench.interop.perf_rows import perf_version
from bench.interop.stack import FAST_POLLS, has_option, listening

LEVELS = (1, 16)
PATHS = ("direct", "gateway", "gateway_range")
VERSION_FLAG = {"direct": "1.0.0", "gateway": "1.0.0", "gateway_range": "^1.0"}


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


class Bench:
    """The deployment and the perf_analyzer targets: (protocol, path) -> ``host:port``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dep = Deployment(root, **FAST_POLLS)
        self.targets: dict[tuple[str, str], str] = {}
        self.meters: dict[tuple[str, str], dict[str, Proc]] = {}

    def start(self) -> None:
        dep = self.dep
        dep.setup()
        grpc_gw = free_port() if has_option("serve", "--grpc-port") else None
        env = {"MODELGATE_GATEWAY_GRPC_PORT": str(grpc_gw)} if grpc_gw else {}
        dep.start_gateway(**env)
        dep.publish("m", ["1.0.0"])
        grpc_w = free_port() if has_option("worker", "--grpc-port") else None
        port = dep.start_worker("a", ["m@1.0.0"], *(["--grpc-port", str(grpc_w)] if grpc_w else []))
        dep.wait_serving({"a": {"m@1.0.0"}})
        gw = dep.gateway_url.removeprefix("http://")
        worker, gateway = dep.workers["a"][0], dep.gateway
        assert gateway is not None
        hosts = {"http": (f"127.0.0.1:{port}", gw)}
        if grpc_w and grpc_gw:
            for p in (grpc_w, grpc_gw):
                wait_until(partial(listening, p), f"gRPC on {p}", 30)
            hosts["grpc"] = (f"127.0.0.1:{grpc_w}", f"127.0.0.1:{grpc_gw}")
        for proto, (direct, via) in hosts.items():
            self.targets[(proto, "direct")] = direct
            self.meters[(proto, "direct")] = {"worker": worker}
            for path in ("gateway", "gateway_range"):
                self.targets[(proto, path)] = via
                self.meters[(proto, path)] = {"gateway": gateway, "worker": worker}

    def run(self, proto: str, path: str, level: int, window_ms: int) -> dict[str, Any]:
        """One perf_analyzer measurement; its figures and the CPU per request."""
        args = ["-m", "m", "-u", self.targets[(proto, path)], "-i", proto]
        args += ["-x", VERSION_FLAG[path], "--concurrency-range", str(level)]
        args += ["-p", str(window_ms), "-s", "1000", "-r", "3"]
        with CpuMeter(self.meters[(proto, path)]) as cpu:
            result = perf_analyzer(args, timeout_s=120)
        if not result.ok:
            raise RuntimeError(f"perf_analyzer {' '.join(args)}: {result.summary}")
        rps = result.throughput
        return {
            "rps": rps,
            "p50_ms": result.latency_ms(50),
            "p99_ms": result.latency_ms(99),
            # NOTE: CPU over the whole run (warm-up windows too) at the measured rate.
            "cpu_us_per_request": {
                k: round(cpu.percent[k] / 100 / rps * 1e6, 1)
                for k in ("gateway", "worker")
                if k in cpu.percent
            },
            "other_load_percent": cpu.percent["other (not this bench)"],
        }


def profiles(bench: Bench) -> dict[str, Any]:
    """py-spy of the gateway process for 5 s under a c16 run, per protocol."""
    gateway = bench.dep.gateway
    assert gateway is not None
    out = {}
    for proto in sorted({proto for proto, _ in bench.targets}):
        say(f"profiling the gateway (py-spy, 5 s) under {proto} c16")
        out[f"gateway_{proto}_c16"] = profile_during(
            gateway.serving_pid(),
            5,
            bench.root / f"spy-{proto}.txt",
            partial(bench.run, proto, "gateway", 16, 2000),
        )
    return out


def _ratios(summary: dict[str, Any]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for key, paths in summary.items():
        direct = paths.get("direct")
        for path in [p for p in ("gateway", "gateway_range") if p in paths and direct]:
            g = paths[path]
            out[f"{key} {path}"] = {
                "throughput_over_direct": round(g["rps"] / direct["rps"], 3),
                "added_p50_ms": round(g["p50_ms"] - direct["p50_ms"], 3),
                "added_p99_ms": round(g["p99_ms"] - direct["p99_ms"], 3),
                "gateway_cpu_us_per_request": g["cpu_us_per_request"].get("gateway", 0.0),
            }
    return out


def measure(bench: Bench, rounds: int, window_ms: int, quiet: Quiet) -> dict[str, Any]:
    """Warm every path up, then the interleaved rounds. A path whose perf_analyzer run
    fails is reported under ``failed`` with its reason and left out from then on."""
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
    failed: dict[str, str] = {}
    protos = sorted({proto for proto, _ in bench.targets})
    for proto in protos:
        for path in PATHS:
            try:
                bench.run(proto, path, 16, 500)  # warm-up, not recorded
            except RuntimeError as exc:
                failed[f"{proto} {path}"] = str(exc)
                say(f"{proto} {path} left out: {exc}")
    order = [
        (proto, level, path)
        for proto in protos
        for level in LEVELS
        for path in PATHS
        if f"{proto} {path}" not in failed
    ]
    for rnd in range(rounds):
        for proto, level, path in order if rnd % 2 == 0 else list(reversed(order)):
            if f"{proto} {path}" in failed:
                continue
            quiet.wait()
            try:
                r = bench.run(proto, path, level, window_ms)
            except RuntimeError as exc:
                failed[f"{proto} {path}"] = str(exc)
                say(f"{proto} {path} left out: {exc}")
                continue
            runs.setdefault(f"{proto} c{level}", {}).setdefault(path, []).append(r)
            say(
                f"{proto} c{level:<2} {path:13} {r['rps']:7.0f} infer/s p50 {r['p50_ms']:.3f} "
                f"p99 {r['p99_ms']:.3f} ms cpu/req {r['cpu_us_per_request']} "
                f"other {r['other_load_percent']:.0f}%"
            )
    for key, paths in runs.items():
        for path in [p for p in paths if f"{key.split()[0]} {p}" in failed]:
            del paths[path]
    summary = {
        key: {
            path: {
                "rps": median(r["rps"] for r in rs),
                "p50_ms": median(r["p50_ms"] for r in rs),
                "p99_ms": median(r["p99_ms"] for r in rs),
                "cpu_us_per_request": {
                    k: median(r["cpu_us_per_request"].get(k, 0.0) for r in rs)
                    for k in rs[0]["cpu_us_per_request"]
                },
                "other_load_percent": median(r["other_load_percent"] for r in rs),
            }
            for path, rs in paths.items()
        }
        for key, paths in runs.items()
    }
    return {"runs": runs, "summary": summary, "ratios": _ratios(summary), "failed": failed}


def report(results: dict[str, Any]) -> None:
    print(
        f"\n# perf_analyzer {results['perf_analyzer']}, {results['mode']}, median of "
        f"{results['rounds']} rounds, {results['window_ms']} ms windows; "
        f"{results['machine']['cpus']} CPUs; runtime {results['runtime_s']:.0f} s"
    )
    if "grpc" not in {k.split()[0] for k in results["summary"]}:
        print("# gRPC: not measured (modelgate serve or worker has no --grpc-port)")
    print(
        f"{'protocol, level':16} {'path':14} {'infer/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'gw CPU us/req':>13} {'other %':>7}"
    )
    for key, paths in results["summary"].items():
        for path, s in paths.items():
            print(
                f"{key:16} {path:14} {s['rps']:8.0f} {s['p50_ms']:7.3f} {s['p99_ms']:7.3f} "
                f"{s['cpu_us_per_request'].get('gateway', 0.0):13.0f} "
                f"{s['other_load_percent']:7.0f}"
            )
    for path, why in results["failed"].items():
        print(f"# {path}: not measured: {why}")
    print(f"\n{'ratio':30} {'gw/direct':>9} {'+p50 ms':>8} {'+p99 ms':>8}")
    for key, r in results["ratios"].items():
        print(
            f"{key:30} {r['throughput_over_direct']:9.3f} {r['added_p50_ms']:8.3f} "
            f"{r['added_p99_ms']:8.3f}"
        )


def main() -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--quick", action="store_true", help="1 s windows, one round")
    p.add_argument("--rounds", type=int, help="interleaved rounds (default 3, 1 with --quick)")
    p.add_argument("--out", type=Path, help="write the JSON of every number here")
    p.add_argument("--profile", action="store_true", help="py-spy the gateway at c16")
    args = p.parse_args()
    if not (TOOLS / "perf_analyzer" / "bin" / "perf_analyzer").exists():
        print("perf_analyzer is not installed: run `make interop-env`")
        return 2
    rounds = args.rounds or (1 if args.quick else 3)
    window_ms = 1000 if args.quick else 2000
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="mg-bench-pa-"))
    bench = Bench(root)
    quiet = Quiet(budget_s=10.0 if args.quick else 30.0)
    try:
        bench.start()
        say(f"ready: {bench.targets}")
        results = measure(bench, rounds, window_ms, quiet)
        results["profiles"] = profiles(bench) if args.profile else {}
    except BaseException:
        say(f"failed; process logs are kept in {root}")
        bench.dep.stop_all()
        print(bench.dep.log_tails(), flush=True)
        raise
    bench.dep.stop_all()
    shutil.rmtree(root, ignore_errors=True)
    results |= {
        "perf_analyzer": perf_version(),
        "mode": "quick" if args.quick else "full",
        "rounds": rounds,
        "window_ms": window_ms,
        "machine": machine(),
        "load_average": os.getloadavg(),
        "runtime_s": round(time.monotonic() - started, 1),
        "waited_for_quiet_s": round(quiet.waited_s, 1),
    }
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "perf_analyzer.json").write_text(json.dumps(results, indent=2))
    for label, prof in results["profiles"].items():
        print_profile(label, prof)
    report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
