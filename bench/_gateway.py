"""What the gateway targets share: the options, one deployment, and the verdict table.

Everything runs on 127.0.0.1 with the CLI a user would run (``modelgate serve``,
``modelgate worker``) against a fresh SQLite registry in a temporary directory (embedded
mode, no Redis); the model is ``backends.synthetic.scale_model()`` and each request is one
JSON row. Model ``m`` has versions 1.0.0 and 1.1.0 under a 90/10 sticky traffic policy,
``s`` (G5) and ``d`` (G6's model-bound case) one version each; worker ``a`` serves ``m``
and worker ``d`` sleeps 40 ms per request.

The machine is shared with other sessions' tests: each measured run starts once the rest of
the machine has used under 25% of a core for 0.3 s (within a budget for the whole run).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.harness import BODY, Deployment, Quiet, machine, print_profile, wrk_script

#: The reference targets; docs/BENCHMARKS.md lists them with every recorded run.
TARGETS = {"G1": 0.3, "G2": 0.6, "G3": 0.85, "G5": 0.2, "G6": 0.9, "G6_reject_p99_ms": 5.0}
#: The full feature path: a range to resolve and a route key under the sticky policy.
FULL_HEADERS = {"X-Model-Version": "^1", "X-Route-Key": "user-42"}
#: A verdict row: label, measured value, goal, verdict.
Row = tuple[str, float | None, str, str]


def parser(doc: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="short runs")
    p.add_argument("--out", type=Path, help="write the JSON of every number here")
    p.add_argument("--seconds", type=int, help="seconds per measured wrk run")
    p.add_argument(
        "--profile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="py-spy profiles of the gateway (default: on, off with --quick)",
    )
    p.add_argument(
        "--clients",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="G3 only: the bare proxy with httpx too (default: on, off with --quick)",
    )
    return p


@dataclass(frozen=True)
class Plan:
    """How long and how often each part runs; ``--quick`` shortens everything."""

    quick: bool
    wrk_seconds: int
    c1_seconds: int
    warmup_seconds: int
    rounds: int
    g5_seconds: int
    g5_rounds: int
    g6_seconds: int
    profile: bool
    clients: bool
    spy_seconds: int
    gate_concurrency: int = 32
    gate_queue: int = 32
    model_delay_ms: int = 40

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Plan:
        quick = bool(args.quick)
        return cls(
            quick=quick,
            wrk_seconds=int(args.seconds or (2 if quick else 3)),
            c1_seconds=2,
            warmup_seconds=1,
            rounds=1 if quick else 3,
            g5_seconds=4 if quick else 5,
            g5_rounds=1 if quick else 2,
            g6_seconds=3 if quick else 5,
            profile=args.profile if args.profile is not None else not quick,
            clients=args.clients if args.clients is not None else not quick,
            spy_seconds=3 if quick else 6,
        )

    @property
    def gate_env(self) -> dict[str, str]:
        """The per-model gate (32 + 32) and no slow start, for G5 and G6."""
        return {
            "MODELGATE_GATEWAY_MODEL_CONCURRENCY": str(self.gate_concurrency),
            "MODELGATE_GATEWAY_MODEL_QUEUE": str(self.gate_queue),
            "MODELGATE_GATEWAY_SLOW_START_S": "0",
        }


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def answers(url: str, **headers: str) -> bool:
    import httpx

    r = httpx.post(url, content=BODY, headers={"content-type": "application/json", **headers})
    return r.status_code == 200


class Run:
    """One deployment and the results of everything measured on it."""

    def __init__(self, name: str, args: argparse.Namespace) -> None:
        self.name = name
        self.args = args
        self.plan = Plan.from_args(args)
        self.started = time.monotonic()
        self.quiet = Quiet(budget_s=10.0 if self.plan.quick else 30.0)
        self.root = Path(tempfile.mkdtemp(prefix="mg-bench-gw-"))
        self.dep = Deployment(
            self.root,
            MODELGATE_WORKER_INTRA_OP_THREADS="1",
            MODELGATE_GATEWAY_LOG_LEVEL="warning",
            MODELGATE_WORKER_LOG_LEVEL="warning",
        )
        self.script = wrk_script(self.root)
        self.results: dict[str, Any] = {"machine": machine(), "mode": self.mode}
        self.results["settings"] = asdict(self.plan) | {
            "worker": "uvicorn+Litestar worker, MODELGATE_WORKER_INTRA_OP_THREADS=1, defaults",
            "model": "backends.synthetic.scale_model() (x * 2, 4 floats), JSON body of one row",
        }
        self.results["profiles"] = {}

    @property
    def mode(self) -> str:
        return "quick" if self.plan.quick else "full"

    @property
    def runtime_s(self) -> float:
        return time.monotonic() - self.started

    def setup(self) -> None:
        """The registry with models m, s, d and the gateway with default settings."""
        dep = self.dep
        say(f"setting up in {self.root}")
        dep.setup()
        dep.start_gateway()
        dep.publish("m", ["1.0.0", "1.1.0"])
        dep.publish("s", ["1.0.0"])
        dep.traffic(
            "m",
            {
                "arms": [{"version": "1.0.0", "weight": 90}, {"version": "1.1.0", "weight": 10}],
                "sticky_header": "X-Route-Key",
            },
        )
        dep.publish("d", ["1.0.0"])

    def ensure_workers(self, *ids: str) -> None:
        """Workers ``a`` (m@1.0.0, m@1.1.0) and ``d`` (every request sleeps 40 ms), those of
        ``ids`` not yet up; then wait until the gateway routes to them."""
        delay = str(self.plan.model_delay_ms)
        specs = {
            "a": (["m@1.0.0", "m@1.1.0"], ()),
            "d": (["d@1.0.0"], ("--fault-delay-rate", "1.0", "--fault-delay-ms", delay)),
        }
        for worker_id in ids:
            if worker_id not in self.dep.workers:
                loads, extra = specs[worker_id]
                self.dep.start_worker(worker_id, loads, *extra)
        self.dep.wait_serving({w: set(specs[w][0]) for w in ids})

    def ensure_gateway(self, **env: str) -> None:
        """The gateway with exactly ``env`` on top of the deployment's (restarted if not)."""
        if self.dep.gateway_env != env:
            self.dep.start_gateway(**env)

    @property
    def direct_url(self) -> str:
        return f"http://127.0.0.1:{self.dep.workers['a'][1]}/v2/models/m/versions/1.0.0/infer"

    def finish(self) -> None:
        """Stop every process; record the run time, write the JSON, clean up."""
        self.dep.stop_all()
        self.results["runtime_s"] = round(self.runtime_s, 1)
        self.results["waited_for_quiet_s"] = round(self.quiet.waited_s, 1)
        if self.args.out:
            self.args.out.mkdir(parents=True, exist_ok=True)
            (self.args.out / f"{self.name}.json").write_text(json.dumps(self.results, indent=2))
        shutil.rmtree(self.root, ignore_errors=True)

    def failed(self) -> None:
        say(f"failed; process logs are kept in {self.root}")
        self.dep.stop_all()
        print(self.dep.log_tails(), flush=True)


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISS"


def print_targets(rows: list[Row]) -> None:
    print(f"{'target':24} {'measured':>9}  {'goal':>11}  verdict")
    for label, value, goal, v in rows:
        shown = "n/a" if value is None else f"{value:9.3f}"
        print(f"{label:24} {shown:>9}  {goal:>11}  {v}")


def main(
    doc: str, name: str, measure: Callable[[Run], None], report: Callable[[Run], list[Row]]
) -> int:
    """Parse the options, set up, ``measure``, write the JSON; print the profiles, then
    ``report``'s lines, and its verdict rows last."""
    args = parser(doc).parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install wrk)")
        return 2
    run = Run(name, args)
    try:
        run.setup()
        measure(run)
    except BaseException:
        run.failed()
        raise
    run.finish()
    for label, prof in run.results["profiles"].items():
        print_profile(label, prof)
    cpus, took = run.results["machine"]["cpus"], run.results["runtime_s"]
    print(f"\n# {name}, {run.mode} mode, {cpus} CPUs; runtime {took:.0f}s")
    rows = report(run)
    print()
    print_targets(rows)
    return 0
