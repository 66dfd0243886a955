"""`gateway.balancing.balancer`: P2C and round-robin, slow start, worker sets, probe overrides.

Everything runs on a fake clock and a seeded RNG; preferences are asserted as proportions
over many picks, never as times. Ejection and panic routing are in `test_outliers.py`.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from gateway.balancing.balancer import Balancer, BalancerSettings, Outcome, WorkerInfo
from gateway.errors import NoReadyWorker
from gateway.settings import GatewaySettings
from modelgate.core.errors import ModelgateError

MODEL = "resnet"
V1 = "1.0.0"
V2 = "2.0.0"


class FakeClock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def info(worker_id: str, *versions: str, started_at: float = -1000.0) -> WorkerInfo:
    ready = frozenset((MODEL, v) for v in (versions or (V1,)))
    return WorkerInfo(worker_id, f"http://{worker_id}:9000", ready, started_at)


def fleet(*infos: WorkerInfo) -> dict[str, WorkerInfo]:
    return {i.id: i for i in infos}


def make(
    n: int = 4, *, seed: int = 7, clock: FakeClock | None = None, **overrides: object
) -> tuple[Balancer, FakeClock]:
    clock = clock if clock is not None else FakeClock()
    balancer = Balancer(
        BalancerSettings(**overrides),  # type: ignore[arg-type]
        clock=clock,
        rng=random.Random(seed),
    )
    balancer.update(fleet(*(info(f"w{i}") for i in range(n))))
    return balancer, clock


def measure(balancer: Balancer, worker_id: str, latency_s: float, times: int = 20) -> None:
    for _ in range(times):
        balancer.started(worker_id)
        balancer.finished(worker_id, latency_s, Outcome.OK)


def picks(balancer: Balancer, n: int, **kwargs: object) -> Counter[str]:
    return Counter(balancer.pick(MODEL, V1, **kwargs) for _ in range(n))  # type: ignore[arg-type]


# -- P2C ------------------------------------------------------------------------------


def test_p2c_never_picks_the_most_loaded_of_equals() -> None:
    balancer, _ = make(4)
    for _ in range(5):
        balancer.started("w2")
    counts = picks(balancer, 3000)
    assert counts["w2"] == 0
    for other in ("w0", "w1", "w3"):
        assert 0.28 < counts[other] / 3000 < 0.39


def test_p2c_spreads_evenly_over_idle_equal_workers() -> None:
    balancer, _ = make(4)
    counts = picks(balancer, 4000)
    assert set(counts) == {"w0", "w1", "w2", "w3"}
    assert all(0.21 < c / 4000 < 0.29 for c in counts.values())


def test_p2c_score_weighs_latency_against_in_flight() -> None:
    balancer, _ = make(2)
    measure(balancer, "w0", 0.001)
    measure(balancer, "w1", 0.003)
    balancer.started("w0")  # w0: (1 + 1) * 1 ms = 2 ms beats w1: 1 * 3 ms
    assert set(picks(balancer, 50)) == {"w0"}
    balancer.started("w0")
    balancer.started("w0")  # w0: (3 + 1) * 1 ms = 4 ms loses to w1: 3 ms
    assert set(picks(balancer, 50)) == {"w1"}


def test_p2c_sends_little_to_a_slow_worker_under_load() -> None:
    balancer, _ = make(4)
    service = {"w0": 0.001, "w1": 0.001, "w2": 0.001, "w3": 0.010}
    for worker_id, latency in service.items():
        measure(balancer, worker_id, latency, times=1)
    in_flight: list[str] = []
    counts: Counter[str] = Counter()
    for _ in range(4000):
        chosen = balancer.pick(MODEL, V1)
        counts[chosen] += 1
        balancer.started(chosen)
        in_flight.append(chosen)
        if len(in_flight) > 40:  # a closed loop: 40 requests in flight, oldest ends first
            done = in_flight.pop(0)
            balancer.finished(done, service[done], Outcome.OK)
    assert 0.005 < counts["w3"] / 4000 < 0.08  # some, to stay measured; far below 1/4
    assert all(counts[w] / 4000 > 0.28 for w in ("w0", "w1", "w2"))


def test_one_slow_sample_does_not_keep_a_worker_out_of_concurrent_traffic() -> None:
    # The PostgreSQL-outage test's failure: one 50 ms answer (a CPU stall) left w1's
    # average 30x w0's; with 8 in flight (w0's score at most 9x its latency) w1 could never
    # win P2C again, so never got the sample that would correct it. With ewma_ttl_s=0 it
    # gets none of the last 1,000 requests.
    balancer, clock = make(2, ewma_ttl_s=2.0)
    measure(balancer, "w0", 0.0005)
    measure(balancer, "w1", 0.0005)
    measure(balancer, "w1", 0.050, times=1)
    in_flight: list[str] = []
    counts: Counter[str] = Counter()
    for step in range(4000):  # 8 in flight, 1 ms apart, both now equally fast: 4 s
        clock.now += 0.001
        chosen = balancer.pick(MODEL, V1)
        balancer.started(chosen)
        in_flight.append(chosen)
        if len(in_flight) >= 8:
            balancer.finished(in_flight.pop(0), 0.0005, Outcome.OK)
        if step >= 3000:
            counts[chosen] += 1
    # Tried again after 2 s without a sample, and its first new sample replaces the stale
    # average (blended in, 15 ms would still be 10 ms: out for another TTL, and another).
    assert 0.3 < counts["w1"] / 1000 < 0.7


def test_unmeasured_worker_is_assumed_as_fast_as_its_peer() -> None:
    balancer, _ = make(2)
    measure(balancer, "w0", 0.005)
    balancer.started("w0")  # w0: 2 * 5 ms; w1 (unmeasured, taken as 5 ms): 1 * 5 ms
    assert set(picks(balancer, 50)) == {"w1"}


def test_ewma_tracks_ok_samples_only() -> None:
    balancer, _ = make(1, ewma_alpha=0.5)
    measure(balancer, "w0", 0.010, times=1)
    balancer.started("w0")
    balancer.finished("w0", 0.020, Outcome.OK)
    balancer.started("w0")
    balancer.finished("w0", 5.0, Outcome.FAILURE)
    balancer.started("w0")
    balancer.finished("w0", 9.0, Outcome.UNAVAILABLE)
    [row] = balancer.snapshot()
    assert row["ewma_ms"] == pytest.approx(15.0)
    assert row["in_flight"] == 0


def test_single_candidate_is_chosen_without_sampling() -> None:
    balancer, _ = make(1)
    assert set(picks(balancer, 10)) == {"w0"}


def test_excluded_workers_are_not_picked() -> None:
    balancer, _ = make(3)
    assert set(picks(balancer, 200, exclude={"w0", "w2"})) == {"w1"}
    assert set(picks(balancer, 200, exclude=["w1"])) == {"w0", "w2"}


# -- errors ---------------------------------------------------------------------------


def test_no_worker_loaded_is_a_503_naming_model_and_version() -> None:
    balancer, _ = make(2)
    with pytest.raises(NoReadyWorker) as caught:
        balancer.pick(MODEL, V2)
    error = caught.value
    assert isinstance(error, ModelgateError)
    assert error.status_code == 503
    assert error.headers == {"Retry-After": "1"}
    assert error.message == (
        'no worker can serve "resnet" version 2.0.0: no worker has it loaded and ready'
    )
    assert balancer.has_ready(MODEL, V2) is False


def test_all_excluded_says_they_were_tried() -> None:
    balancer, _ = make(3)
    with pytest.raises(NoReadyWorker, match="all 3 workers with it ready were already tried"):
        balancer.pick(MODEL, V1, exclude={"w0", "w1", "w2", "elsewhere"})


def test_empty_balancer_has_nothing_ready() -> None:
    balancer = Balancer(BalancerSettings(), clock=FakeClock(), rng=random.Random(1))
    assert balancer.has_ready(MODEL, V1) is False
    with pytest.raises(NoReadyWorker):
        balancer.pick(MODEL, V1)


# -- round robin ----------------------------------------------------------------------


def test_round_robin_cycles_in_order() -> None:
    balancer, _ = make(3, strategy="round_robin")
    measure(balancer, "w0", 0.050)  # latency and load do not matter to round robin
    balancer.started("w0")
    assert [balancer.pick(MODEL, V1) for _ in range(7)] == [
        "w0", "w1", "w2", "w0", "w1", "w2", "w0",
    ]  # fmt: skip


def test_round_robin_skips_excluded() -> None:
    balancer, _ = make(3, strategy="round_robin")
    assert {balancer.pick(MODEL, V1, exclude={"w1"}) for _ in range(6)} == {"w0", "w2"}


# -- slow start -----------------------------------------------------------------------


def test_slow_start_weight_ramps_linearly_from_first_seen() -> None:
    clock = FakeClock(100.0)
    balancer = Balancer(BalancerSettings(), clock=clock, rng=random.Random(1))
    balancer.update(fleet(info("old"), info("new", started_at=100.0)))

    def weight() -> float:
        return float(next(r["weight"] for r in balancer.snapshot() if r["id"] == "new"))

    assert weight() == pytest.approx(0.1)
    clock.now = 105.0
    assert weight() == pytest.approx(0.55)
    clock.now = 110.0
    assert weight() == 1.0
    clock.now = 500.0
    assert weight() == 1.0


def test_slow_start_holds_traffic_back_from_a_new_worker_in_proportion() -> None:
    clock = FakeClock(0.0)
    balancer = Balancer(BalancerSettings(), clock=clock, rng=random.Random(1))
    balancer.update(fleet(info("old"), info("new", started_at=0.0)))
    measure(balancer, "old", 0.002)
    measure(balancer, "new", 0.002)
    for _ in range(5):
        balancer.started("old")  # old: 1 / (6 * 2 ms); new: 0.1 / (1 * 2 ms): 3 in 8
    assert picks(balancer, 4000)["new"] / 4000 == pytest.approx(0.375, abs=0.03)
    clock.now = 10.0  # ramp done: new at 2 ms always wins against 6 * 2 ms
    assert set(picks(balancer, 50)) == {"new"}


def sequential_share(
    balancer: Balancer, clock: FakeClock, worker_id: str, seconds: float, latency_s: float
) -> float:
    """One request at a time for ``seconds`` of the fake clock, every worker answering in
    ``latency_s``; the share ``worker_id`` served."""
    served, total, until = 0, 0, clock.now + seconds
    while clock.now < until:
        chosen = balancer.pick(MODEL, V1)
        balancer.started(chosen)
        clock.now += latency_s
        balancer.finished(chosen, latency_s, Outcome.OK)
        served += chosen == worker_id
        total += 1
    return served / total


def test_a_new_worker_gets_a_growing_share_of_sequential_traffic_during_slow_start() -> None:
    clock = FakeClock(0.0)
    balancer = Balancer(BalancerSettings(), clock=clock, rng=random.Random(5))
    balancer.update(fleet(info("old")))
    measure(balancer, "old", 0.0005)
    balancer.update(fleet(info("old"), info("new", started_at=0.0)))
    # At weight w beside an equal idle peer: w / (1 + w) of the picks, not none. Over the
    # first 0.5 s w goes from 0.1 to 0.145 (about 11%); over 4.5-5.5 s it averages 0.55.
    first = sequential_share(balancer, clock, "new", 0.5, 0.0005)
    assert first == pytest.approx(0.11, abs=0.03)
    clock.now = 4.5
    middle = sequential_share(balancer, clock, "new", 1.0, 0.0005)
    assert middle == pytest.approx(0.55 / 1.55, abs=0.03)
    clock.now = 10.0
    assert sequential_share(balancer, clock, "new", 2.0, 0.0005) == pytest.approx(0.5, abs=0.04)


def test_workers_that_ramp_together_keep_p2cs_sharp_comparison() -> None:
    clock = FakeClock(0.0)
    balancer = Balancer(BalancerSettings(), clock=clock, rng=random.Random(2))
    balancer.update(fleet(info("fast", started_at=0.0), info("slow", started_at=0.0)))
    measure(balancer, "fast", 0.001)
    measure(balancer, "slow", 0.010)
    clock.now = 1.0  # both ramping, at equal weights: as a gateway's first seconds are
    assert set(picks(balancer, 500)) == {"fast"}


def test_slow_start_disabled() -> None:
    clock = FakeClock(0.0)
    balancer = Balancer(BalancerSettings(slow_start_s=0), clock=clock, rng=random.Random(1))
    balancer.update(fleet(info("new", started_at=5.0)))  # even "first seen" in the future
    assert balancer.snapshot()[0]["weight"] == 1.0


# -- worker sets and probes -----------------------------------------------------------


def test_a_new_worker_starts_at_its_peers_median_latency() -> None:
    balancer, _ = make(3, ewma_ttl_s=2.0)
    for worker_id, latency in (("w0", 0.001), ("w1", 0.002), ("w2", 0.009)):
        measure(balancer, worker_id, latency)
    balancer.update(fleet(*(info(f"w{i}") for i in range(3)), info("w3", started_at=0.0)))
    assert row_of(balancer, "w3")["ewma_ms"] == pytest.approx(2.0)
    # One cold first request moves it by ewma_alpha only: 2 + 0.3 * (50 - 2) ms.
    balancer.started("w3")
    balancer.finished("w3", 0.050, Outcome.OK)
    assert row_of(balancer, "w3")["ewma_ms"] == pytest.approx(16.4)


def test_a_new_worker_is_unmeasured_when_no_peer_has_a_fresh_average() -> None:
    balancer, clock = make(1, ewma_ttl_s=2.0)
    measure(balancer, "w0", 0.001)
    balancer.update(fleet(info("w0"), info("w1", V2)))  # serves nothing w0 serves
    clock.now = 3.0  # w0's average is stale now
    balancer.update(fleet(info("w0"), info("w1", V2), info("w2")))
    assert row_of(balancer, "w1")["ewma_ms"] is None
    assert row_of(balancer, "w2")["ewma_ms"] is None


def row_of(balancer: Balancer, worker_id: str) -> dict[str, object]:
    return next(r for r in balancer.snapshot() if r["id"] == worker_id)


def test_update_keeps_stats_of_staying_workers_and_forgets_removed_ones() -> None:
    balancer, clock = make(2)
    measure(balancer, "w0", 0.004)
    balancer.started("w0")
    balancer.update(fleet(info("w0", V1, V2), info("w9", started_at=clock.now)))
    rows = {r["id"]: r for r in balancer.snapshot()}
    assert set(rows) == {"w0", "w9"}
    assert rows["w0"]["in_flight"] == 1
    assert rows["w0"]["ewma_ms"] == pytest.approx(4.0)
    assert rows["w9"]["weight"] == pytest.approx(0.1)
    assert balancer.has_ready(MODEL, V2)
    assert set(picks(balancer, 20, exclude={"w9"})) == {"w0"}
    balancer.finished("w1", 0.001, Outcome.FAILURE)  # removed meanwhile: ignored
    balancer.finished("w0", 0.001, Outcome.OK)
    balancer.finished("w0", 0.001, Outcome.OK)  # one more than started: clamped at zero
    assert {r["id"]: r["in_flight"] for r in balancer.snapshot()}["w0"] == 0


def test_has_ready_follows_versions() -> None:
    balancer, _ = make(0)
    balancer.update(fleet(info("a", V1), info("b", V2)))
    assert balancer.has_ready(MODEL, V1)
    assert balancer.has_ready(MODEL, V2)
    assert not balancer.has_ready("other", V1)
    assert set(picks(balancer, 20)) == {"a"}


def test_probe_verdicts_override_announcements_until_the_ready_set_changes() -> None:
    balancer, _ = make(0)
    balancer.update(fleet(info("a", V1), info("b", V1)))
    balancer.mark_unready("a", MODEL, V1)
    balancer.mark_ready("b", MODEL, V2)
    balancer.mark_ready("ghost", MODEL, V1)  # unknown: ignored
    assert set(picks(balancer, 30)) == {"b"}
    assert balancer.pick(MODEL, V2) == "b"
    # The same announcement again (discovery republished because another worker changed).
    balancer.update(fleet(info("a", V1), info("b", V1), info("c", V2)))
    assert set(picks(balancer, 30)) == {"b"}
    assert set(Counter(balancer.pick(MODEL, V2) for _ in range(30))) == {"b", "c"}
    # A new announcement from "a" supersedes the probe's verdict on it.
    balancer.update(fleet(info("a", V1, V2), info("b", V1), info("c", V2)))
    assert set(picks(balancer, 60)) == {"a", "b"}
    balancer.mark_unready("a", MODEL, V1)
    balancer.mark_unready("b", MODEL, V1)
    assert balancer.has_ready(MODEL, V1) is False


def test_snapshot_shape() -> None:
    balancer, _ = make(1)
    [row] = balancer.snapshot()
    assert row == {
        "id": "w0",
        "url": "http://w0:9000",
        "ready": ["resnet@1.0.0"],
        "capacity": 0,
        "in_flight": 0,
        "ewma_ms": None,
        "ejected_until": None,
        "ejected_for_s": None,
        "ejection_count": 0,
        "consecutive_failures": 0,
        "weight": 1.0,
    }


# -- settings -------------------------------------------------------------------------


def test_settings_defaults_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = BalancerSettings()
    assert (defaults.strategy, defaults.consecutive_failures) == ("p2c", 5)
    assert (defaults.base_ejection_s, defaults.max_ejection_s) == (30.0, 300.0)
    assert (defaults.max_ejected_fraction, defaults.panic_threshold) == (0.1, 0.5)
    assert (defaults.slow_start_s, defaults.slow_start_min_weight) == (10.0, 0.1)
    monkeypatch.setenv("MODELGATE_GATEWAY_STRATEGY", "round_robin")
    monkeypatch.setenv("MODELGATE_GATEWAY_CONSECUTIVE_FAILURES", "3")
    read = GatewaySettings()  # the balancer's settings are read as part of the gateway's
    assert (read.strategy, read.consecutive_failures) == ("round_robin", 3)
    with pytest.raises(ValidationError):
        BalancerSettings(strategy="random")
    with pytest.raises(ValidationError):
        BalancerSettings(slow_start_min_weight=0)


# -- property -------------------------------------------------------------------------

WORKER_IDS = [f"w{i}" for i in range(6)]
VERSIONS = [V1, V2]

operations = st.lists(
    st.one_of(
        st.tuples(st.just("fail"), st.sampled_from(WORKER_IDS)),
        st.tuples(st.just("ok"), st.sampled_from(WORKER_IDS)),
        st.tuples(st.just("advance"), st.floats(0, 120)),
        st.tuples(st.just("unready"), st.sampled_from(WORKER_IDS)),
        st.tuples(
            st.just("pick"),
            st.sampled_from(VERSIONS),
            st.frozensets(st.sampled_from(WORKER_IDS), max_size=4),
        ),
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    ready=st.lists(st.frozensets(st.sampled_from(VERSIONS)), min_size=1, max_size=6),
    ops=operations,
    consecutive=st.integers(1, 3),
    fraction=st.sampled_from([0.0, 0.1, 0.5, 1.0]),
    panic=st.sampled_from([0.0, 0.5, 1.0]),
    strategy=st.sampled_from(["p2c", "round_robin"]),
    seed=st.integers(0, 2**16),
)
def test_pick_never_returns_an_excluded_unready_or_ejected_worker(
    ready: list[frozenset[str]],
    ops: list[tuple[object, ...]],
    consecutive: int,
    fraction: float,
    panic: float,
    strategy: str,
    seed: int,
) -> None:
    clock = FakeClock()
    balancer = Balancer(
        BalancerSettings(
            consecutive_failures=consecutive,
            max_ejected_fraction=fraction,
            panic_threshold=panic,
            strategy=strategy,
        ),
        clock=clock,
        rng=random.Random(seed),
    )
    balancer.update(fleet(*(info(f"w{i}", *vs) for i, vs in enumerate(ready) if vs)))
    for op in ops:
        if op[0] == "fail":
            balancer.finished(str(op[1]), 0.1, Outcome.UNAVAILABLE)
        elif op[0] == "ok":
            balancer.finished(str(op[1]), 0.01, Outcome.OK)
        elif op[0] == "advance":
            clock.now += float(op[1])  # type: ignore[arg-type]
        elif op[0] == "unready":
            balancer.mark_unready(str(op[1]), MODEL, V1)
        else:
            version, exclude = str(op[1]), op[2]
            assert isinstance(exclude, frozenset)
            state = {r["id"]: r for r in balancer.snapshot()}
            try:
                chosen = balancer.pick(MODEL, version, exclude)
            except NoReadyWorker:
                # Only right when no worker outside ``exclude`` could take it: none has the
                # version ready, or every one that has is ejected (and panic is off).
                takers = [
                    w
                    for w, r in state.items()
                    if f"{MODEL}@{version}" in r["ready"]
                    and w not in exclude
                    and r["ejected_until"] is None
                ]
                assert takers == []
                continue
            assert chosen not in exclude
            assert f"{MODEL}@{version}" in state[chosen]["ready"]
            if not balancer.last_pick_panic:
                assert state[chosen]["ejected_until"] is None
            ejected = sum(1 for r in state.values() if r["ejected_until"] is not None)
            assert ejected <= balancer.rules.max_ejected(len(state))


def test_least_loaded_ranks_like_p2c_and_changes_nothing() -> None:
    balancer, _ = make(3)  # w0, w1, w2, all serving V1
    measure(balancer, "w0", 0.010)
    measure(balancer, "w1", 0.001)
    measure(balancer, "w2", 0.001)
    balancer.started("w2")
    before = balancer.snapshot()
    assert balancer.least_loaded(MODEL, V1) == "w1"
    assert balancer.snapshot() == before
    assert balancer.panic_picks == 0
    for _ in range(5):
        balancer.started("w1")
        balancer.finished("w1", 0.001, Outcome.FAILURE)
    assert balancer.snapshot()[1]["ejected_until"] is not None
    assert balancer.least_loaded(MODEL, V1) == "w2"  # w1 ejected; w2 busy but faster than w0
    assert balancer.least_loaded(MODEL, "9.9.9") is None
