"""The dashboard's state builder, without HTTP: the observed split read off the gateway's
own request counter (window, policy-split vs pinned answers, 5xx), the workers with the
reason of their ejection, and the configured split and version rows of a model."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from typing import Any, cast

import semver

from gateway.balancing.balancer import Balancer, BalancerSettings, Outcome, WorkerInfo
from gateway.control.rollout_stats import OutcomeCounters
from gateway.dashboard.fleet import worker_rows
from gateway.dashboard.registry_reads import RegistryFigures
from gateway.dashboard.sampler import SplitSampler
from gateway.dashboard.state import (
    MAX_JUDGEMENTS,
    DashboardState,
    brief_history,
    configured_split,
    live_figures,
    version_rows,
)
from gateway.metrics import GatewayMetrics
from registry.resolution import Arm, ModelView, Policy, VersionInfo

MODEL = "resnet"
WORKERS = ("w1", "w2", "w3")


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def answer(metrics: GatewayMetrics, version: str, route: str, code: int = 200, n: int = 1) -> None:
    """``n`` answers counted as the data plane counts them (`GatewayDataPlane._observe`)."""
    metrics.requests.labels(MODEL, version, route, "w1", str(code)).inc(n)


def sampler(metrics: GatewayMetrics, clock: Clock) -> SplitSampler:
    return SplitSampler(metrics.requests, interval_s=2.0, window_s=60.0, clock=clock)


# -- the observed split ---------------------------------------------------------------------


def test_the_observed_split_counts_only_the_last_minute() -> None:
    metrics, clock = GatewayMetrics(), Clock()
    ring = SplitSampler(metrics.requests, interval_s=7.0, window_s=60.0, clock=clock)
    ring.sample()
    answer(metrics, "1.0.0", "arm:1.0.0", n=500)  # long ago: out of the window later
    for _ in range(12):  # 84 s of samples, 7 s apart, no traffic
        clock.now += 7.0
        ring.sample()
    for _ in range(9):  # 1 on 1.0.0 for 9 on 2.0.0 before each of the last 9 samples
        clock.now += 7.0
        answer(metrics, "1.0.0", "arm:1.0.0", n=1)
        answer(metrics, "2.0.0", "arm:2.0.0", n=9)
        ring.sample()
    # The window: from the oldest sample at most 60 s old (56 s ago) to the newest; the
    # answers counted before that sample are older than the window.
    seen = ring.observed()[MODEL]
    assert (seen.window_s, ring.span_s()) == (56.0, 56.0)
    assert seen.requests == 80
    assert seen.shares() == {"1.0.0": 10.0, "2.0.0": 90.0}


def test_before_a_minute_has_passed_the_window_is_what_was_sampled() -> None:
    metrics, clock = GatewayMetrics(), Clock()
    ring = sampler(metrics, clock)
    ring.sample()
    assert ring.observed() == {}  # one sample: nothing to difference yet
    clock.now += 4.0
    answer(metrics, "1.0.0", "arm:1.0.0", n=3)
    answer(metrics, "2.0.0", "arm:2.0.0", n=1)
    ring.sample()
    seen = ring.observed()[MODEL]
    assert (seen.window_s, seen.requests) == (4.0, 4)
    assert seen.shares() == {"1.0.0": 75.0, "2.0.0": 25.0}


def test_pinned_answers_are_counted_beside_the_policy_split_and_5xx_as_errors() -> None:
    metrics, clock = GatewayMetrics(), Clock()
    ring = sampler(metrics, clock)
    ring.sample()
    clock.now += 2.0
    answer(metrics, "1.0.0", "arm:1.0.0", n=6)
    answer(metrics, "1.0.0", "arm:1.0.0:reweighted", n=2)
    answer(metrics, "2.0.0", "arm:2.0.0", code=500, n=2)
    answer(metrics, "2.0.0", "exact", n=40)  # clients pinning 2.0.0: not the policy's doing
    answer(metrics, "2.0.0", "alias", code=503, n=1)
    ring.sample()
    seen = ring.observed()[MODEL]
    assert (seen.requests, seen.split) == (51, 10)
    assert seen.shares() == {"1.0.0": 80.0, "2.0.0": 20.0}
    doc = seen.as_dict()
    assert doc["versions"]["2.0.0"] == {"requests": 43, "split": 2, "errors": 3}
    assert doc["versions"]["1.0.0"] == {"requests": 8, "split": 8, "errors": 0}


def test_without_a_policy_the_shares_are_of_every_answer() -> None:
    metrics, clock = GatewayMetrics(), Clock()
    ring = sampler(metrics, clock)
    ring.sample()
    clock.now += 2.0
    answer(metrics, "1.1.0", "best", n=3)
    answer(metrics, "1.0.0", "best-ready", n=1)
    ring.sample()
    assert ring.observed()[MODEL].shares() == {"1.1.0": 75.0, "1.0.0": 25.0}


def test_the_ring_keeps_only_what_the_window_needs() -> None:
    metrics, clock = GatewayMetrics(), Clock()
    ring = sampler(metrics, clock)
    for _ in range(1000):
        clock.now += 2.0
        ring.sample()
    assert len(ring._ring) <= 60.0 / 2.0 + 2


# -- a running rollout's live figures -------------------------------------------------------


async def test_the_live_figures_are_the_current_steps_last_minute_at_most() -> None:
    clock = Clock(10_000.0)
    counters = OutcomeCounters(clock=clock)
    for at, version, error in ((9_000.0, "2.0.0", True), (9_990.0, "2.0.0", True)):
        clock.now = at  # before the step started: not the step's figures
        counters.record(MODEL, version, error, 0.01)
    clock.now = 9_996.0
    for _ in range(3):
        counters.record(MODEL, "2.0.0", False, 0.01)
    counters.record(MODEL, "1.0.0", True, 0.02)
    started = datetime.fromtimestamp(9_995.0, UTC).isoformat()
    rollout = {"model": MODEL, "version": "2.0.0", "baseline": "1.0.0"}
    live = await live_figures(counters, {**rollout, "step_started_at": started}, 10_000.0)
    assert live is not None
    assert live["window_s"] == 5.0
    assert (live["candidate"]["requests"], live["candidate"]["errors"]) == (3, 0)
    assert (live["baseline"]["requests"], live["baseline"]["errors"]) == (1, 1)
    # A step older than a minute: its last minute only.
    old = datetime.fromtimestamp(5_000.0, UTC).isoformat()
    live = await live_figures(counters, {**rollout, "step_started_at": old}, 10_000.0)
    assert live is not None
    assert (live["window_s"], live["candidate"]["requests"]) == (60.0, 4)


# -- workers --------------------------------------------------------------------------------


def balancer(**settings: Any) -> tuple[Balancer, Clock]:
    clock = Clock(0.0)
    lb = Balancer(BalancerSettings(**settings), clock=clock, rng=random.Random(1))
    lb.update(
        {w: WorkerInfo(w, f"http://{w}", frozenset({(MODEL, "1.0.0")}), -1000.0) for w in WORKERS}
    )
    return lb, clock


def rows(lb: Balancer) -> dict[str, dict[str, Any]]:
    infos = {
        w: WorkerInfo(w, f"http://{w}", frozenset({(MODEL, "1.0.0")}), -1000.0) for w in WORKERS
    }
    found = worker_rows(lb.snapshot(), lb.ejections(), lb.rules, {}, infos)
    return {r["id"]: r for r in found}


def test_an_ejected_worker_says_why_and_for_how_long() -> None:
    lb, clock = balancer(consecutive_failures=3, base_ejection_s=30.0)
    for _ in range(3):
        lb.started("w2")
        lb.finished("w2", 0.01, Outcome.FAILURE)
    clock.now = 10.0
    found = rows(lb)
    assert found["w2"]["status"] == "ejected"
    assert found["w2"]["ejection"] == "3 failed requests in a row; out for 30 s"
    assert found["w2"]["ejected_for_s"] == 20.0
    assert (found["w1"]["status"], found["w1"]["ejection"]) == ("ready", None)
    clock.now = 31.0  # its time is up: back, and no reason shown any more
    back = rows(lb)["w2"]
    assert (back["status"], back["ejection"], back["ejected_for_s"]) == ("ready", None, None)


def test_a_failure_rate_ejection_and_a_remote_one_name_their_cause() -> None:
    lb, _ = balancer(
        consecutive_failures=1000,
        failure_percentage_threshold=50.0,
        failure_percentage_min_requests=4,
        failure_percentage_interval_s=2.0,
        max_ejected_fraction=1.0,
    )
    for outcome in (Outcome.OK, Outcome.FAILURE, Outcome.OK, Outcome.FAILURE):
        lb.started("w1")
        lb.finished("w1", 0.01, outcome)
    assert lb.apply_remote_ejection("w3", 45.0, 2, reason="consecutive_failures")
    found = rows(lb)
    assert found["w1"]["ejection"] == ("at least 50% of its requests failed over 2 s; out for 30 s")
    assert found["w3"]["ejection"] == (
        "1000 failed requests in a row (seen by another gateway replica); out for 45 s, ejection #2"
    )


def test_probe_verdicts_and_announcements_set_the_status() -> None:
    lb, _ = balancer()
    lb.mark_unready("w1", MODEL, "1.0.0")
    found = rows(lb)
    assert found["w1"]["status"] == "unready"
    assert found["w1"]["probe_unready"] == [f"{MODEL}@1.0.0"]
    assert found["w2"]["status"] == "ready"


# -- models ---------------------------------------------------------------------------------


def view() -> ModelView:
    versions = [
        VersionInfo(v, semver.Version.parse(v), status)
        for v, status in (("1.0.0", "active"), ("2.0.0", "active"), ("0.9.0", "deprecated"))
    ] + [VersionInfo("0.1.0", semver.Version.parse("0.1.0"), "yanked")]
    policy = Policy((Arm("1.0.0", 3), Arm("2.0.0", 1)))
    return ModelView.build(MODEL, versions, {"prod": "1.0.0", "canary": "2.0.0"}, policy)


def test_the_configured_split_is_the_policys_weights_as_shares() -> None:
    split = configured_split(view(), lambda v: v == "1.0.0")
    assert split is not None
    assert split["arms"] == [
        {"version": "1.0.0", "weight": 3, "share": 75.0, "ready": True},
        {"version": "2.0.0", "weight": 1, "share": 25.0, "ready": False},
    ]
    bare = ModelView.build(MODEL, [VersionInfo("1.0.0", semver.Version.parse("1.0.0"))])
    assert configured_split(bare, lambda v: True) is None


def test_version_rows_name_statuses_aliases_and_who_published() -> None:
    details = {"2.0.0": {"created_at": "2026-12-04T10:00:00+00:00", "created_by": "token:ci"}}
    found = version_rows(view(), details, lambda v: 2 if v == "2.0.0" else 0)
    assert [(r["version"], r["status"], r["aliases"]) for r in found] == [
        ("2.0.0", "active", ["canary"]),  # the API's word, as the CLI says it
        ("1.0.0", "active", ["prod"]),
        ("0.9.0", "deprecated", []),
        ("0.1.0", "yanked", []),
    ]
    assert (found[0]["published_by"], found[0]["ready_workers"]) == ("token:ci", 2)
    assert found[1]["published_at"] is None  # not read from the registry yet


# -- the rollouts ---------------------------------------------------------------------------


def judgement(step: int, verdict: str, reason: str = "") -> dict[str, Any]:
    figures = {"requests": 10, "errors": 0, "error_rate": 0.0, "p99_ms": 5.0}
    at = datetime(2026, 1, 1, tzinfo=UTC).isoformat()
    return {
        "step": step,
        "weight": [10, 50, 100][step],
        "verdict": verdict,
        "at": at,
        "candidate": figures,
        "baseline": figures,
        "reason": reason,
    }


def rollout_doc(waits: int) -> dict[str, Any]:
    history = [judgement(0, "wait", "3 of 100 requests")] * 4 + [judgement(0, "pass")]
    history += [judgement(1, "wait", f"{n} of 100 requests") for n in range(waits)]
    return {
        "id": 3,
        "model": MODEL,
        "version": "2.0.0",
        "baseline": "1.0.0",
        "state": "paused",
        "step": 1,
        "steps": [10, 50, 100],
        "history": history,
        "reason": None,
        "updated_at": "2026-01-01T00:00:00+00:00",
    }


async def test_a_rollouts_waits_are_sent_counted_whatever_its_age() -> None:
    state = DashboardState(*([cast(Any, None)] * 6), version="test")  # type: ignore[arg-type]
    sizes = {}
    for waits in (12, 5000):
        figures = RegistryFigures(rollouts={MODEL: [rollout_doc(waits)]})
        (row,) = await state._rollouts(figures)
        sizes[waits] = len(json.dumps(row))
    assert "history" not in row
    assert [j["verdict"] for j in row["judgements"]] == ["pass"]
    assert [(w["step"], w["count"], w["latest"]["reason"]) for w in row["waits"]] == [
        (0, 4, "3 of 100 requests"),
        (1, 5000, "4999 of 100 requests"),
    ]
    assert sizes[5000] - sizes[12] < 20  # the digits of the counts and reasons only


def test_a_brief_history_keeps_the_last_judgements_only() -> None:
    history = [judgement(0, "pass")] * (MAX_JUDGEMENTS + 30) + [judgement(1, "fail", "5xx")]
    brief = brief_history(history)
    assert len(brief["judgements"]) == MAX_JUDGEMENTS
    assert brief["judgements"][-1]["reason"] == "5xx"
    assert brief["waits"] == []
