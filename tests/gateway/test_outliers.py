"""Passive outlier ejection: thresholds, growing and capped ejection times, the ejected
fraction cap, panic routing, readmission, remote ejections, and the rules themselves."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from gateway.balancing.balancer import Balancer, BalancerSettings, Outcome, WorkerInfo
from gateway.balancing.outliers import Ejection, EjectionRules
from gateway.errors import NoReadyWorker

MODEL = "resnet"
V1 = "1.0.0"


class FakeClock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make(n: int, **overrides: Any) -> tuple[Balancer, FakeClock, list[Ejection]]:
    clock = FakeClock()
    published: list[Ejection] = []
    balancer = Balancer(
        BalancerSettings(**overrides), clock=clock, rng=random.Random(3), on_eject=published.append
    )
    balancer.update(
        {
            f"w{i}": WorkerInfo(f"w{i}", f"http://w{i}", frozenset({(MODEL, V1)}), -1000.0)
            for i in range(n)
        }
    )
    return balancer, clock, published


def fail(
    balancer: Balancer, worker_id: str, times: int, outcome: Outcome = Outcome.FAILURE
) -> None:
    for _ in range(times):
        balancer.started(worker_id)
        balancer.finished(worker_id, 0.5, outcome)


def row(balancer: Balancer, worker_id: str) -> dict[str, Any]:
    return next(r for r in balancer.snapshot() if r["id"] == worker_id)


def ejected(balancer: Balancer) -> set[str]:
    return {r["id"] for r in balancer.snapshot() if r["ejected_until"] is not None}


def picked(balancer: Balancer, n: int = 300) -> set[str]:
    return set(Counter(balancer.pick(MODEL, V1) for _ in range(n)))


# -- when to eject --------------------------------------------------------------------


def test_ejected_after_n_consecutive_failures_and_not_before() -> None:
    balancer, clock, published = make(4)
    clock.now = 50.0
    fail(balancer, "w1", 4)
    assert ejected(balancer) == set()
    assert row(balancer, "w1")["consecutive_failures"] == 4
    fail(balancer, "w1", 1, Outcome.UNAVAILABLE)  # both kinds of failure count
    assert ejected(balancer) == {"w1"}
    assert row(balancer, "w1")["ejected_until"] == 80.0
    assert row(balancer, "w1")["ejected_for_s"] == 30.0
    assert "w1" not in picked(balancer)
    event = Ejection("w1", "consecutive_failures", 50.0, 80.0, 1)
    assert balancer.ejections() == [event]
    assert published == [event]
    assert event.duration_s == 30.0
    assert balancer.ejections_total == 1


def test_a_success_resets_the_streak() -> None:
    balancer, _, _ = make(4)
    fail(balancer, "w1", 4)
    balancer.started("w1")
    balancer.finished("w1", 0.01, Outcome.OK)
    fail(balancer, "w1", 4)
    assert ejected(balancer) == set()
    fail(balancer, "w1", 1)
    assert ejected(balancer) == {"w1"}


def test_cancelled_requests_are_no_verdict_on_the_worker() -> None:
    balancer, _, _ = make(4)
    fail(balancer, "w1", 4)
    fail(balancer, "w1", 10, Outcome.CANCELLED)  # e.g. the client's own short deadline
    state = row(balancer, "w1")
    assert (state["consecutive_failures"], state["in_flight"], state["ewma_ms"]) == (4, 0, None)
    assert ejected(balancer) == set()


def test_threshold_is_configurable() -> None:
    balancer, _, _ = make(4, consecutive_failures=2)
    fail(balancer, "w0", 2)
    assert ejected(balancer) == {"w0"}


def test_failures_while_ejected_do_not_extend_the_ejection() -> None:
    balancer, clock, published = make(4)
    fail(balancer, "w1", 5)
    clock.now = 10.0
    fail(balancer, "w1", 20)  # requests that were already in flight
    assert row(balancer, "w1")["ejected_until"] == 30.0
    assert len(published) == 1


# -- failure rate (Envoy's failure_percentage) ----------------------------------------

NO_STREAK = {"consecutive_failures": 10_000}  # only the failure rate can eject


def finish(balancer: Balancer, worker_id: str, outcomes: str) -> None:
    """One request per letter of ``outcomes``: "x" failed, "." OK."""
    for letter in outcomes:
        balancer.started(worker_id)
        balancer.finished(worker_id, 0.01, Outcome.FAILURE if letter == "x" else Outcome.OK)


def traffic(
    balancer: Balancer,
    clock: FakeClock,
    seconds: float,
    failing: Callable[[str], bool],
    rps: int = 100,
) -> float | None:
    """``rps`` requests a second for ``seconds`` through ``pick``, each failing when
    ``failing(worker)``; the clock time of the first ejection, if one happened."""
    first = len(balancer.ejections())
    for _ in range(int(seconds * rps)):
        clock.now += 1 / rps
        worker = balancer.pick(MODEL, V1)
        balancer.started(worker)
        outcome = Outcome.FAILURE if failing(worker) else Outcome.OK
        balancer.finished(worker, 0.01, outcome)
    events = balancer.ejections()[first:]
    return events[0].at if events else None


@pytest.mark.parametrize("overrides", [{}, NO_STREAK])
def test_a_worker_failing_30_percent_at_100_rps_is_ejected_within_2_s(
    overrides: dict[str, Any],
) -> None:
    balancer, clock, _ = make(2, **overrides)
    rng = random.Random(11)
    assert traffic(balancer, clock, 5.0, lambda w: False) is None  # healthy first
    fault_from = clock.now
    at = traffic(balancer, clock, 2.0, lambda w: w == "w0" and rng.random() < 0.3)
    assert at is not None
    assert at - fault_from <= 2.0
    event = balancer.ejections()[-1]
    assert event.worker_id == "w0"
    if overrides:
        assert event.reason == "failure_percentage"
    assert ejected(balancer) == {"w0"}


def test_a_failure_rate_below_the_threshold_never_ejects() -> None:
    balancer, clock, _ = make(2, **NO_STREAK)
    served = Counter[str]()

    def every_tenth(worker: str) -> bool:  # NOTE: evenly spread, so every window holds 10%
        served[worker] += 1
        return worker == "w0" and served[worker] % 10 == 0

    # NOTE: enough traffic that w0's failures alone would pass the minimum of requests.
    assert traffic(balancer, clock, 10.0, every_tenth, rps=1000) is None
    assert served["w0"] > 2000


def test_too_few_requests_are_no_evidence() -> None:
    balancer, _, _ = make(4, **NO_STREAK)
    finish(balancer, "w1", "x." * 4 + "x")  # 5 of 9 failed
    assert ejected(balancer) == set()
    finish(balancer, "w1", "x")  # the 10th request: 6 of 10
    assert ejected(balancer) == {"w1"}
    assert balancer.ejections()[-1].reason == "failure_percentage"


def test_failures_older_than_the_interval_are_forgotten() -> None:
    balancer, clock, _ = make(4, **NO_STREAK)
    finish(balancer, "w1", "x." * 4 + "x")  # 5 of 9 at t=0
    clock.now = 1.5  # past the 1 s window
    finish(balancer, "w1", "." * 9 + "x")  # 1 of 10 since
    assert ejected(balancer) == set()


def test_the_failure_rate_settings_are_honoured() -> None:
    balancer, clock, _ = make(
        4,
        failure_percentage_threshold=50,
        failure_percentage_min_requests=4,
        failure_percentage_interval_s=10,
        **NO_STREAK,
    )
    finish(balancer, "w1", ".x.")  # 3 requests: below the minimum
    clock.now = 8.0  # still inside the 10 s window
    finish(balancer, "w2", "..x")  # 1 of 3
    finish(balancer, "w1", ".")  # 1 of 4: 25%
    assert ejected(balancer) == set()
    finish(balancer, "w1", "x")  # 2 of 5: 40%
    assert ejected(balancer) == set()
    finish(balancer, "w1", "x")  # 3 of 6: 50%
    assert ejected(balancer) == {"w1"}


def test_a_zero_threshold_turns_the_failure_rate_off() -> None:
    balancer, _, _ = make(4, failure_percentage_threshold=0, **NO_STREAK)
    finish(balancer, "w1", "x" * 200)
    assert ejected(balancer) == set()


def test_the_ejected_fraction_cap_bounds_failure_rate_ejections_too() -> None:
    balancer, _, _ = make(2, **NO_STREAK)
    finish(balancer, "w0", "x" * 20)
    finish(balancer, "w1", "x" * 20)
    assert ejected(balancer) == {"w0"}
    assert balancer.ejections_suppressed >= 1
    assert picked(balancer) == {"w1"}


def test_a_worker_back_from_a_failure_rate_ejection_starts_a_clean_window() -> None:
    balancer, clock, _ = make(4, **NO_STREAK)
    finish(balancer, "w1", "x" * 20)
    assert ejected(balancer) == {"w1"}
    clock.now = 0.1
    balancer.readmit("w1")  # a probe's word, well within the window
    finish(balancer, "w1", "x")  # evidence from before the ejection would eject again
    assert ejected(balancer) == set()


# -- how long -------------------------------------------------------------------------


def test_ejection_time_grows_with_each_ejection_and_is_capped() -> None:
    balancer, clock, _ = make(4)
    durations = []
    for _ in range(12):
        fail(balancer, "w2", 5)
        until = row(balancer, "w2")["ejected_until"]
        durations.append(until - clock.now)
        clock.now = until  # comes back, fails again at once
    assert durations == [30.0 * k for k in range(1, 10)] + [300.0, 300.0, 300.0]
    assert [e.count for e in balancer.ejections()] == list(range(1, 13))


def test_healthy_time_forgives_past_ejections() -> None:
    balancer, clock, _ = make(4)
    for _ in range(3):
        fail(balancer, "w2", 5)
        clock.now = row(balancer, "w2")["ejected_until"]
    back = clock.now
    clock.now = back + 650.0  # two forgiveness periods of 300 s: count 3 → 1
    fail(balancer, "w2", 5)
    assert balancer.ejections()[-1].count == 2
    assert row(balancer, "w2")["ejected_until"] == clock.now + 60.0


def test_ejection_settings_are_honoured() -> None:
    balancer, clock, _ = make(4, base_ejection_s=5, max_ejection_s=12)
    fail(balancer, "w0", 5)
    assert row(balancer, "w0")["ejected_until"] == 5.0
    clock.now = 5.0
    fail(balancer, "w0", 5)
    assert row(balancer, "w0")["ejected_until"] == 15.0
    clock.now = 15.0
    fail(balancer, "w0", 5)
    assert row(balancer, "w0")["ejected_until"] == 27.0


# -- how many -------------------------------------------------------------------------


def test_at_most_a_tenth_of_ten_workers_is_ejected() -> None:
    balancer, _, published = make(10)
    fail(balancer, "w0", 5)
    fail(balancer, "w1", 5)
    fail(balancer, "w1", 3)  # each further failure asks again, and is refused again
    assert ejected(balancer) == {"w0"}
    assert balancer.ejections_suppressed == 4
    assert [e.worker_id for e in published] == ["w0"]


def test_one_of_two_workers_may_be_ejected() -> None:
    balancer, _, _ = make(2)
    fail(balancer, "w0", 5)
    fail(balancer, "w1", 5)
    assert ejected(balancer) == {"w0"}


def test_a_lone_worker_is_never_ejected() -> None:
    balancer, _, _ = make(1)
    fail(balancer, "w0", 50)
    assert ejected(balancer) == set()
    assert balancer.pick(MODEL, V1) == "w0"


def test_the_cap_frees_up_when_an_ejection_ends() -> None:
    balancer, clock, _ = make(10)
    fail(balancer, "w0", 5)
    fail(balancer, "w1", 5)
    clock.now = 30.0  # w0 comes back; w1's streak is still 5, its next failure ejects it
    fail(balancer, "w1", 1)
    assert ejected(balancer) == {"w1"}


@pytest.mark.parametrize(
    ("fraction", "total", "allowed"),
    [(0.1, 0, 0), (0.1, 1, 0), (0.1, 2, 1), (0.1, 10, 1), (0.1, 19, 1), (0.1, 20, 2),
     (0.29, 100, 29), (0.5, 4, 2), (1.0, 4, 4), (0.0, 10, 1)],
)  # fmt: skip
def test_max_ejected(fraction: float, total: int, allowed: int) -> None:
    assert EjectionRules(max_ejected_fraction=fraction).max_ejected(total) == allowed


def test_rules_duration_and_count() -> None:
    rules = EjectionRules()
    assert [rules.duration(c) for c in (0, 1, 2, 10, 11)] == [30.0, 30.0, 60.0, 300.0, 300.0]
    assert rules.next_count(0, None) == 1
    assert rules.next_count(4, 299.0) == 5
    assert rules.next_count(4, 900.0) == 2
    assert rules.next_count(1, 10_000.0) == 1
    assert EjectionRules(count_decay_s=0).next_count(4, 10_000.0) == 5


# -- panic ----------------------------------------------------------------------------


def test_panic_routes_to_all_when_most_are_ejected() -> None:
    balancer, _, _ = make(4, max_ejected_fraction=1.0)
    for worker_id in ("w0", "w1"):
        fail(balancer, worker_id, 5)
    assert picked(balancer) == {"w2", "w3"}  # 2 of 4 healthy: not below 0.5
    assert balancer.last_pick_panic is False
    assert balancer.panic_picks == 0
    fail(balancer, "w2", 5)
    assert picked(balancer, 400) == {"w0", "w1", "w2", "w3"}  # 1 of 4: panic, all of them
    assert balancer.last_pick_panic is True
    assert balancer.panic_picks == 400


def test_panic_when_every_worker_is_ejected() -> None:
    balancer, _, _ = make(2)
    fail(balancer, "w0", 5)
    assert picked(balancer) == {"w1"}  # 1 of 2 healthy is not below the threshold
    balancer.apply_remote_ejection("w1", 100.0, 1)  # refused: the cap allows one of two
    assert picked(balancer) == {"w1"}
    balancer, _, _ = make(2, max_ejected_fraction=1.0)
    fail(balancer, "w0", 5)
    fail(balancer, "w1", 5)
    assert picked(balancer) == {"w0", "w1"}
    assert balancer.last_pick_panic


def test_panic_disabled_reports_all_ejected() -> None:
    balancer, _, _ = make(2, max_ejected_fraction=1.0, panic_threshold=0.0)
    fail(balancer, "w0", 5)
    fail(balancer, "w1", 5)
    with pytest.raises(NoReadyWorker, match="all 2 workers with it ready are ejected"):
        balancer.pick(MODEL, V1)
    with pytest.raises(NoReadyWorker, match=r"ejected after failures \(1\) or were already"):
        balancer.pick(MODEL, V1, exclude={"w0"})


def test_excluding_the_healthy_ones_does_not_fall_back_to_ejected() -> None:
    balancer, _, _ = make(3)
    fail(balancer, "w0", 5)
    with pytest.raises(NoReadyWorker, match=r"ejected after failures \(1\) or were already"):
        balancer.pick(MODEL, V1, exclude={"w1", "w2"})


# -- coming back ----------------------------------------------------------------------


def test_readmitted_when_the_time_is_up_then_slow_start() -> None:
    balancer, clock, _ = make(4)
    fail(balancer, "w3", 5)
    clock.now = 29.9
    assert "w3" not in picked(balancer)
    clock.now = 35.0
    # Beside idle peers, in slow start at weight 0.55: in half of the P2C pairs, winning
    # 0.55 / 1.55 of those, so about 18% of the picks (a fixed seed).
    share = Counter(balancer.pick(MODEL, V1) for _ in range(2000))["w3"] / 2000
    assert share == pytest.approx(0.5 * 0.55 / 1.55, abs=0.03)
    state = row(balancer, "w3")
    assert state["ejected_until"] is None
    assert state["consecutive_failures"] == 0
    assert state["ejection_count"] == 1
    assert state["weight"] == pytest.approx(0.1 + 0.9 * 5.0 / 10.0)  # ramping since t=30
    fail(balancer, "w3", 4)  # a fresh streak: four failures are not enough
    assert ejected(balancer) == set()


def test_probe_readmits_early() -> None:
    balancer, clock, _ = make(4)
    fail(balancer, "w3", 5)
    clock.now = 3.0
    balancer.readmit("w3")
    balancer.readmit("w0")  # not ejected: nothing to do
    balancer.readmit("ghost")
    assert ejected(balancer) == set()
    assert row(balancer, "w3")["weight"] == pytest.approx(0.1)
    share = Counter(balancer.pick(MODEL, V1) for _ in range(4000))["w3"] / 4000
    assert share == pytest.approx(0.5 * 0.1 / 1.1, abs=0.015)  # idle peers: still some


def test_removed_worker_frees_its_place_under_the_cap() -> None:
    balancer, _, _ = make(10)
    fail(balancer, "w0", 5)
    workers = {r["id"]: r for r in balancer.snapshot()}
    del workers["w0"]
    balancer.update(
        {w: WorkerInfo(w, r["url"], frozenset({(MODEL, V1)}), -1000.0) for w, r in workers.items()}
    )
    fail(balancer, "w1", 5)
    assert ejected(balancer) == {"w1"}


# -- shared state ---------------------------------------------------------------------


def test_remote_ejection_is_applied_without_echo() -> None:
    balancer, clock, published = make(4)
    clock.now = 10.0
    assert balancer.apply_remote_ejection("w2", 70.0, 2) is True
    assert ejected(balancer) == {"w2"}
    assert "w2" not in picked(balancer)
    assert published == []  # remote ejections are not republished
    assert balancer.ejections() == [Ejection("w2", "remote", 10.0, 70.0, 2, remote=True)]
    assert balancer.apply_remote_ejection("w2", 70.0, 2) is False  # an echo: nothing new
    assert balancer.apply_remote_ejection("w2", 90.0, 3, reason="consecutive_failures")
    assert row(balancer, "w2")["ejected_until"] == 90.0
    assert row(balancer, "w2")["ejection_count"] == 3
    clock.now = 90.0
    assert ejected(balancer) == set()
    fail(balancer, "w2", 5)  # the next local ejection continues from the shared count
    assert row(balancer, "w2")["ejected_until"] == 90.0 + 120.0


def test_remote_ejection_ignored_when_stale_unknown_or_over_the_cap() -> None:
    balancer, clock, _ = make(10)
    clock.now = 100.0
    assert balancer.apply_remote_ejection("w1", 99.0, 1) is False
    assert balancer.apply_remote_ejection("ghost", 200.0, 1) is False
    assert balancer.apply_remote_ejection("w1", 200.0, 1) is True
    assert balancer.apply_remote_ejection("w2", 200.0, 1) is False
    assert ejected(balancer) == {"w1"}
    assert balancer.ejections_suppressed == 1


def test_on_eject_can_be_set_later() -> None:
    balancer, _, published = make(4)
    seen: list[str] = []
    balancer.on_eject = lambda event: seen.append(event.worker_id)
    fail(balancer, "w0", 5)
    assert seen == ["w0"]
    assert published == []


def test_a_readmitted_worker_forgets_its_old_latency_and_wins_sequential_traffic_again() -> None:
    balancer, clock, _ = make(2, max_ejected_fraction=0.5)
    clock.now = 50.0
    for worker_id, latency in (("w0", 0.001), ("w1", 0.050)):  # w1 was slow before it died
        balancer.started(worker_id)
        balancer.finished(worker_id, latency, Outcome.OK)
    fail(balancer, "w1", 5)
    assert ejected(balancer) == {"w1"}
    balancer.readmit("w1")  # it restarted and its probe passed
    assert row(balancer, "w1")["ewma_ms"] == pytest.approx(1.0)  # its peer's, not its own
    clock.now += balancer.settings.slow_start_s  # past slow start
    seen = set()
    for _ in range(50):  # one request at a time: in-flight never separates them
        worker_id = balancer.pick(MODEL, V1)
        balancer.started(worker_id)
        balancer.finished(worker_id, 0.001, Outcome.OK)
        seen.add(worker_id)
    assert seen == {"w0", "w1"}


def test_a_stale_latency_average_is_forgotten_so_a_once_slow_worker_is_tried_again() -> None:
    balancer, clock, _ = make(2, ewma_ttl_s=2.0)
    clock.now = 50.0
    for worker_id, latency in (("w0", 0.001), ("w1", 0.050)):
        balancer.started(worker_id)
        balancer.finished(worker_id, latency, Outcome.OK)

    def one_at_a_time(n: int) -> set[str]:
        seen = set()
        for _ in range(n):
            worker_id = balancer.pick(MODEL, V1)
            balancer.started(worker_id)
            clock.now += 0.01
            balancer.finished(worker_id, 0.001, Outcome.OK)
            seen.add(worker_id)
        return seen

    assert one_at_a_time(100) == {"w0"}  # 1 s: w1's 50 ms still counts against it
    assert "w1" in one_at_a_time(200)  # past 2 s without a sample it is tried again
