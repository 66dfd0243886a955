"""G5 in simulation: p99 with P2C vs round robin when 1 of 4 workers is slowed 10x.

No network: a discrete-event simulation drives the real
`gateway.balancing.balancer.Balancer` on a simulated clock. Each worker serves ``--slots``
requests at once (k servers, FIFO queue) with exponential service times, mean 1 ms (the
slowed one: 10 ms). Two load models, both run for each strategy with the same seeds:

- open loop (the G5 setting): Poisson arrivals at ``--load`` of the fleet's capacity
  (3 x k/1 ms + k/10 ms), whatever the latency;
- closed loop (what wrk-style HTTP benchmarks measure): ``--clients`` clients, each sending
  its next request when the previous one answers.

NOTE: in the open loop, round robin sends a quarter of the traffic to a worker with a
thirty-first of the capacity, so its queue grows without bound and its p99 depends on how
long the run is; the ratio is reported for a fixed request count, and the closed loop gives
a bounded comparison. ``to slow`` is the slowed worker's share of requests; ``req/s`` is
requests over the simulated time until the last answer. Then a µs/call microbenchmark of the
hot path on the real monotonic clock.

Run: ``python -m bench.bench_balancer [--requests N]``. Target: p99 ratio ≤ 0.2 (G5); the
same target over HTTP is ``bench.gateway_balancing``.
"""

from __future__ import annotations

import argparse
import heapq
import random
import sys
import time
from collections import deque
from dataclasses import dataclass, field

from bench.harness import per_call_us
from gateway.balancing.balancer import Balancer, BalancerSettings, Outcome, WorkerInfo

MODEL, VERSION = "resnet", "1.0.0"
FAST_S, SLOW_S = 0.001, 0.010
SLOW_WORKER = "w3"


class SimClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class SimWorker:
    mean_s: float
    slots: int
    busy: int = 0
    queue: deque[float] = field(default_factory=deque)


@dataclass
class Result:
    latencies: list[float]
    slow_share: float
    throughput: float  # requests per simulated second

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def fleet(slots: int) -> dict[str, SimWorker]:
    return {
        f"w{i}": SimWorker(SLOW_S if f"w{i}" == SLOW_WORKER else FAST_S, slots) for i in range(4)
    }


def simulate(
    strategy: str, *, requests: int, slots: int, load: float, clients: int, seed: int
) -> Result:
    """One run; ``clients`` > 0 makes it closed loop, else open loop at ``load``."""
    clock = SimClock()
    rng = random.Random(seed)
    balancer = Balancer(
        BalancerSettings(strategy=strategy, slow_start_s=0),
        clock=clock,
        rng=random.Random(seed + 1),
    )
    workers = fleet(slots)
    ready = frozenset({(MODEL, VERSION)})
    balancer.update({w: WorkerInfo(w, f"sim://{w}", ready, 0.0) for w in workers})
    capacity = sum(w.slots / w.mean_s for w in workers.values())
    # Events: (time, seq, kind, worker id, arrival time); kind 0 = arrival, 1 = completion.
    events: list[tuple[float, int, int, str, float]] = []
    seq = 0

    def push(at: float, kind: int, worker_id: str = "", arrived: float = 0.0) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (at, seq, kind, worker_id, arrived))

    def serve(worker_id: str, arrived: float) -> None:
        worker = workers[worker_id]
        worker.busy += 1
        push(clock.now + rng.expovariate(1.0 / worker.mean_s), 1, worker_id, arrived)

    issued = 0
    if clients:
        for _ in range(clients):
            push(0.0, 0)
        issued = clients
    else:
        push(0.0, 0)
        issued = 1
    latencies: list[float] = []
    to_slow = 0
    while events:
        at, _, kind, worker_id, arrived = heapq.heappop(events)
        clock.now = at
        if kind == 0:
            chosen = balancer.pick(MODEL, VERSION)
            balancer.started(chosen)
            to_slow += chosen == SLOW_WORKER
            worker = workers[chosen]
            if worker.busy < worker.slots:
                serve(chosen, at)
            else:
                worker.queue.append(at)
            if not clients and issued < requests:
                push(at + rng.expovariate(load * capacity), 0)
                issued += 1
            continue
        latency = at - arrived
        latencies.append(latency)
        balancer.finished(worker_id, latency, Outcome.OK)
        worker = workers[worker_id]
        worker.busy -= 1
        if worker.queue:
            serve(worker_id, worker.queue.popleft())
        if clients and issued < requests:
            push(at, 0)
            issued += 1
    return Result(latencies, to_slow / requests, requests / clock.now)


def microbench(n: int) -> list[tuple[str, float]]:
    return [row for size in (4, 64) for row in _microbench_fleet(size, n)]


def _microbench_fleet(size: int, n: int) -> list[tuple[str, float]]:
    balancer = Balancer(BalancerSettings(), rng=random.Random(1))
    ready = frozenset({(MODEL, VERSION)})
    balancer.update({f"w{i}": WorkerInfo(f"w{i}", "", ready, -100.0) for i in range(size)})
    for i in range(size):
        balancer.started(f"w{i}")
        balancer.finished(f"w{i}", 0.001 * (1 + i % 3), Outcome.OK)
    pick, started, finished = balancer.pick, balancer.started, balancer.finished
    tried = ("w0",)

    def cycle(_: int) -> None:
        chosen = pick(MODEL, VERSION)
        started(chosen)
        finished(chosen, 0.001, Outcome.OK)

    rows = [
        (f"pick, {size} workers", per_call_us(lambda _: pick(MODEL, VERSION), n)),
        (f"pick + started + finished, {size} workers", per_call_us(cycle, n)),
        (
            f"has_ready, {size} workers",
            per_call_us(lambda _: balancer.has_ready(MODEL, VERSION), n),
        ),
        (
            f"pick excluding one (a retry), {size} workers",
            per_call_us(lambda _: pick(MODEL, VERSION, tried), n),
        ),
    ]
    balancer.apply_remote_ejection("w1", time.monotonic() + 3600, 1)
    rows.append(
        (
            f"pick with a worker ejected, {size} workers",
            per_call_us(lambda _: pick(MODEL, VERSION), n),
        )
    )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--slots", type=int, default=4, help="concurrent requests per worker")
    parser.add_argument("--load", type=float, default=0.7, help="open-loop fraction of capacity")
    parser.add_argument("--clients", type=int, default=32, help="closed-loop concurrency")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    started = time.perf_counter()
    print(
        f"# 4 workers x {args.slots} slots, exp. service mean 1 ms, {SLOW_WORKER} 10 ms; "
        f"{args.requests} requests per run, seed {args.seed}"
    )
    print(
        f"{'load model':34} {'strategy':12} {'p50 ms':>8} {'p99 ms':>9} {'p99.9 ms':>9} "
        f"{'to slow':>8} {'req/s':>7}"
    )
    verdict = 0
    for label, clients in (
        (f"open loop, {args.load:.0%} of capacity", 0),
        (f"closed loop, {args.clients} clients", args.clients),
    ):
        p99 = {}
        for strategy in ("round_robin", "p2c"):
            result = simulate(
                strategy,
                requests=args.requests,
                slots=args.slots,
                load=args.load,
                clients=clients,
                seed=args.seed,
            )
            p99[strategy] = result.pct(0.99)
            print(
                f"{label:34} {strategy:12} {result.pct(0.5) * 1e3:8.2f} {p99[strategy] * 1e3:9.2f} "
                f"{result.pct(0.999) * 1e3:9.2f} {result.slow_share:8.1%} {result.throughput:7.0f}"
            )
        ratio = p99["p2c"] / p99["round_robin"]
        ok = ratio <= 0.2
        verdict |= 0 if ok else 1
        mark = "ok" if ok else "MISS"
        print(f"{label:34} p99 P2C / round robin = {ratio:.3f}  (G5 target ≤ 0.2: {mark})")
    print(f"\n{'hot path (real clock)':48} {'µs/call':>8}")
    for name, value in microbench(200_000):
        print(f"{name:48} {value:8.2f}")
    print(f"# took {time.perf_counter() - started:.1f} s")
    return verdict


if __name__ == "__main__":
    sys.exit(main())
