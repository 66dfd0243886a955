"""Issue 8 acceptance 4b: inference through a gateway while it takes a big publish.

One gateway, one worker serving ``m@1.0.0`` (`backends.synthetic.scale_model`), inference
from `LoadGen` (closed loop, 8 connections back to back). Side by side in one run:

* **idle**: inference alone for ``--seconds``;
* **publishing**: the same load while ``curl`` (its own process, so the client's GIL is not
  the gateway's) publishes a valid 300 MiB ONNX model (one big initializer) again and again
  under new versions until the window ends;
* **big upload**: one 400 MiB publish alone, then the gateway's RSS a few seconds later.

Ratios: inference throughput publishing / idle (target ≥ 0.7), the worst gap between two
answers while publishing (a stall), and the gateway's RSS growth during the publishes and
after the 400 MiB one (target < 100 MB). RSS is the serving process's ``VmRSS`` sampled
every 20 ms. Idle and publishing windows alternate for ``--rounds`` rounds (2; 1 with
``--quick``), so that drift in the machine's other load falls on both; the ratio is of
their sums.

    python -m bench.publish_under_load [--quick] [--seconds S] [--mib N] [--out DIR]
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.harness import CpuMeter, Deployment, LoadGen, Quiet, machine, run_loadgen

PATH = "/v2/models/m/infer"
CONNS = 8
TARGET_RATIO, TARGET_RSS_MB = 0.7, 100.0


def say(text: str) -> None:
    print(f"[publish_under_load] {text}", flush=True)


def big_model(path: Path, mib: int) -> Path:
    """A valid ONNX model, ``output = input + w``, whose initializer ``w`` is ``mib`` MiB."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    from backends.synthetic import IR_VERSION, OPSET

    width = mib * 1024 * 1024 // 4
    weight = numpy_helper.from_array(np.ones(width, dtype=np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Add", ["input", "w"], ["output"])],
        "big",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", width])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    # NOTE: onnx 1.23 writes IR 14 by default; onnxruntime reads at most 13.
    model.ir_version = IR_VERSION
    path.write_bytes(model.SerializeToString())
    return path


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class RssSampler:
    """Peak VmRSS of the gateway's serving process, sampled every 20 ms."""

    def __init__(self, gateway_pid: int) -> None:
        self.pid = gateway_pid
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb(self.pid))
            time.sleep(0.02)


def publish(
    dep: Deployment, artifact: Path, version: str, limit_rate: str | None = None
) -> dict[str, Any]:
    """One publish by ``curl`` in its own process (at most ``limit_rate`` bytes/s, curl's
    syntax, when given): its HTTP status and seconds."""
    started = time.monotonic()
    throttle = ["--limit-rate", limit_rate] if limit_rate else []
    out = subprocess.run(
        [
            "curl",
            *throttle,
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            f"Authorization: Bearer {dep.token}",
            "-F",
            f"version={version}",
            "-F",
            f"file=@{artifact};type=application/octet-stream",
            f"{dep.gateway_url}/admin/v1/models/big/versions",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    return {
        "version": version,
        "status": out.stdout.strip() or out.stderr.strip(),
        "seconds": round(time.monotonic() - started, 2),
    }


def gaps(gen: LoadGen) -> float:
    """The longest time, in ms, between two consecutive answers inside the window."""
    lo, hi = gen.window
    done = sorted(r[1] for r in gen.results if lo <= r[1] < hi)
    return max((b - a for a, b in itertools.pairwise(done)), default=0.0) * 1000


def load(
    dep: Deployment, warm_s: float, seconds: float, rate: float | None = None
) -> tuple[dict[str, Any], float]:
    """Closed loop (`CONNS` back to back), or open loop at ``rate`` when given."""
    port = int(dep.gateway_url.rsplit(":", 1)[1])
    gen = LoadGen("127.0.0.1", port, PATH, {})
    assert dep.gateway is not None

    def run() -> Any:
        return (
            gen.closed(CONNS, warm_s, seconds) if rate is None else gen.open(rate, warm_s, seconds)
        )

    out = run_loadgen(run, {"gateway": dep.gateway})
    return out, gaps(gen)


def _idle(
    dep: Deployment, args: argparse.Namespace, pid: int, rate: float | None = None
) -> dict[str, Any]:
    rss = rss_mb(pid)
    idle, gap = load(dep, 1.0, args.seconds, rate)
    say(
        f"idle{_how(rate, None)}: {idle['goodput_rps']:.0f} req/s, p99 "
        f"{idle['ok_latency'].get('p99_ms', 0):.1f} ms, longest gap {gap:.0f} ms, RSS {rss:.0f} MB"
    )
    return idle | {"longest_gap_ms": gap, "rss_mb": rss}


def _how(rate: float | None, limit_rate: str | None) -> str:
    loop = " (closed loop" if rate is None else f" (open loop at {rate:.0f}/s"
    return loop + (f", curl --limit-rate {limit_rate})" if limit_rate else ")")


def _publishing(
    dep: Deployment,
    args: argparse.Namespace,
    pid: int,
    artifact: Path,
    first: int,
    rate: float | None = None,
    limit_rate: str | None = None,
) -> dict[str, Any]:
    """Inference while ``curl`` publishes ``artifact`` as 1.0.<first>, 1.0.<first+1>, ..."""
    publishes: list[dict[str, Any]] = []
    stop = threading.Event()

    def publisher() -> None:
        n = first
        while not stop.is_set():
            publishes.append(publish(dep, artifact, f"1.0.{n}", limit_rate))
            n += 1

    rss = rss_mb(pid)
    with RssSampler(pid) as sampler:
        thread = threading.Thread(target=publisher)
        thread.start()
        busy, gap = load(dep, 0.5, args.seconds, rate)
        stop.set()
        thread.join()
    say(
        f"publishing{_how(rate, limit_rate)}: {busy['goodput_rps']:.0f} req/s, p99 "
        f"{busy['ok_latency'].get('p99_ms', 0):.1f} ms, longest gap {gap:.0f} ms; "
        f"{len(publishes)} publishes of {args.mib} MiB {[p['status'] for p in publishes]} in "
        f"{[p['seconds'] for p in publishes]} s; RSS {rss:.0f} -> peak {sampler.peak:.0f} MB "
        f"(+{sampler.peak - rss:.0f})"
    )
    return busy | {
        "longest_gap_ms": gap,
        "publishes": publishes,
        "rss_before_mb": rss,
        "rss_peak_mb": sampler.peak,
        "rss_growth_mb": sampler.peak - rss,
    }


def measure(dep: Deployment, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """``--rounds`` of (idle, publishing), alternating so that drift in the machine's other
    load falls on both; then one bigger publish alone."""
    assert dep.gateway is not None
    pid = dep.gateway.serving_pid()
    quiet = Quiet(budget_s=20.0)
    artifact = big_model(root / "big.onnx", args.mib)
    bigger = big_model(root / "bigger.onnx", args.big_mib)
    with dep.admin() as client:
        client.post("/admin/v1/models", json={"name": "big"}).raise_for_status()

    idles: list[dict[str, Any]] = []
    busies: list[dict[str, Any]] = []
    paced: list[dict[str, Any]] = []
    for _ in range(args.rounds):
        quiet.wait()
        idles.append(_idle(dep, args, pid))
        quiet.wait()
        busies.append(_publishing(dep, args, pid, artifact, 1 + 1000 * len(busies)))
        quiet.wait()
        paced.append(
            _publishing(dep, args, pid, artifact, 500 + 1000 * len(paced), None, args.limit_rate)
        )
    idle_rps = sum(r["goodput_rps"] for r in idles)

    def ratio_of(rounds: list[dict[str, Any]]) -> float:
        return sum(r["goodput_rps"] for r in rounds) / idle_rps if idle_rps else 0.0

    ratio, paced_ratio = ratio_of(busies), ratio_of(paced)
    # Open loop at half the idle saturation: does the gateway keep up with a steady load?
    rate = idle_rps / len(idles) / 2
    quiet.wait()
    open_idle = _idle(dep, args, pid, rate)
    quiet.wait()
    open_busy = _publishing(dep, args, pid, artifact, 900, rate)
    open_ratio = open_busy["goodput_rps"] / open_idle["goodput_rps"]
    busies += [open_busy]
    growth = max(r["rss_growth_mb"] for r in [*busies, *paced])
    publishes = [p for r in [*busies, *paced] for p in r["publishes"]]
    say(
        f"throughput publishing / idle over {args.rounds} rounds: {ratio:.2f} closed loop, "
        f"{paced_ratio:.2f} with curl --limit-rate {args.limit_rate}; open loop at "
        f"{rate:.0f}/s: {open_ratio:.2f}, p99 {open_idle['ok_latency'].get('p99_ms', 0):.1f} -> "
        f"{open_busy['ok_latency'].get('p99_ms', 0):.1f} ms"
    )

    quiet.wait()
    rss_before_big = rss_mb(pid)
    with RssSampler(pid) as big_sampler, CpuMeter({"gateway": dep.gateway}) as cpu:
        single = publish(dep, bigger, "2.0.0")
    time.sleep(3.0)  # NOTE: what the process keeps afterwards, not what it freed at once
    rss_after_big = rss_mb(pid)
    say(
        f"one {args.big_mib} MiB publish alone: {single['status']} in {single['seconds']} s "
        f"({args.big_mib / max(single['seconds'], 1e-9):.0f} MiB/s, gateway "
        f"{cpu.percent.get('gateway', 0):.0f}% of a core); RSS {rss_before_big:.0f} -> peak "
        f"{big_sampler.peak:.0f} -> {rss_after_big:.0f} MB 3 s later"
    )

    ok = all(p["status"] == "201" for p in [*publishes, single])
    return {
        "idle_rounds": idles,
        "publishing_rounds": busies[:-1],
        "paced_rounds": paced,
        "open_loop": {"rate": rate, "idle": open_idle, "publishing": open_busy},
        "throughput_ratio": ratio,
        "paced_throughput_ratio": paced_ratio,
        "open_loop_goodput_ratio": open_ratio,
        "longest_gap_ms": {
            "idle": max(r["longest_gap_ms"] for r in [*idles, open_idle]),
            "publishing": max(r["longest_gap_ms"] for r in [*busies, *paced]),
        },
        "rss_mb": {"growth": growth},
        "big_upload": single
        | {
            "rss_before_mb": rss_before_big,
            "rss_peak_mb": big_sampler.peak,
            "rss_after_3s_mb": rss_after_big,
        },
        "all_published": ok,
        "quiet_waited_s": quiet.waited_s,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one round of 6 s windows")
    parser.add_argument("--rounds", type=int, default=None, help="idle/publishing (default 2)")
    parser.add_argument("--seconds", type=float, default=None, help="each window (default 12)")
    parser.add_argument("--mib", type=int, default=300, help="the model published under load")
    parser.add_argument("--big-mib", type=int, default=400, help="the one published alone")
    parser.add_argument(
        "--limit-rate", default="110M", help="curl's pace in the paced rounds (110M: 1 GbE)"
    )
    parser.add_argument(
        "--upload-rate",
        default=None,
        help="MODELGATE_REGISTRY_UPLOAD_RATE_MIB_S for the gateway (default: the product's, 100; "
        "0 reads uploads as fast as they arrive)",
    )
    parser.add_argument("--out", type=Path, default=None, help="write the JSON here")
    args = parser.parse_args()
    pace = (
        {}
        if args.upload_rate is None
        else {"MODELGATE_REGISTRY_UPLOAD_RATE_MIB_S": args.upload_rate}
    )
    args.seconds = args.seconds or (6.0 if args.quick else 12.0)
    args.rounds = args.rounds or (1 if args.quick else 2)
    root = Path(tempfile.mkdtemp(prefix="mg-bench-publish-"))
    dep = Deployment(
        root,
        MODELGATE_WORKER_INTRA_OP_THREADS="1",
        MODELGATE_GATEWAY_LOG_LEVEL="warning",
        MODELGATE_WORKER_LOG_LEVEL="warning",
        MODELGATE_REGISTRY_MAX_ARTIFACT_BYTES=str(2 * 1024**3),
        **pace,
    )
    try:
        say(f"setting up in {root}")
        dep.setup()
        dep.start_gateway()
        dep.publish("m", ["1.0.0"])
        dep.start_worker("a", ["m@1.0.0"])
        dep.wait_serving({"a": {"m@1.0.0"}})
        results = measure(dep, args, root)
    except BaseException:
        say(f"failed; logs in {root}")
        dep.stop_all()
        print(dep.log_tails(), flush=True)
        raise
    dep.stop_all()
    results["machine"] = machine()
    results["settings"] = vars(args) | {"conns": CONNS, "out": str(args.out)}
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "publish_under_load.json").write_text(json.dumps(results, indent=2))
    shutil.rmtree(root, ignore_errors=True)
    ratio, growth = results["throughput_ratio"], results["rss_mb"]["growth"]
    after = results["big_upload"]["rss_after_3s_mb"] - results["big_upload"]["rss_before_mb"]
    paced, opened = results["paced_throughput_ratio"], results["open_loop_goodput_ratio"]
    gap = results["longest_gap_ms"]["publishing"]
    rows = [
        ("inference throughput publishing / idle (closed loop)", f"{ratio:.2f}",
         f">= {TARGET_RATIO}", ratio >= TARGET_RATIO),
        (f"  the same, curl --limit-rate {args.limit_rate}", f"{paced:.2f}",
         f">= {TARGET_RATIO}", paced >= TARGET_RATIO),
        ("  goodput at half the idle rate (open loop)", f"{opened:.2f}",
         f">= {TARGET_RATIO}", opened >= TARGET_RATIO),
        ("longest gap between answers while publishing (ms)", f"{gap:.0f}", "(report)", True),
        ("gateway RSS growth while publishing (MB)", f"{growth:.0f}", f"< {TARGET_RSS_MB:.0f}",
         growth < TARGET_RSS_MB),
        (f"RSS kept after one {args.big_mib} MiB publish (MB)", f"{after:.0f}",
         f"< {TARGET_RSS_MB:.0f}", after < TARGET_RSS_MB),
        ("every publish answered 201", str(results["all_published"]), "True",
         results["all_published"]),
    ]  # fmt: skip
    for name, value, target, ok in rows:
        print(f"{name:<54} {value:>8}  target {target:<8} {'met' if ok else 'MISSED'}")
    return 0 if all(r[3] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
