"""The rollout gates as a pure function: each gate, its order, its one-sentence reason, the
baseline's p99 carried from history when the baseline had too little traffic, and when a
step is judged next."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gateway.control.rollout_gates import judge, next_judgement_at
from gateway.control.rollout_stats import WindowStats

AT = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Gates:
    max_error_rate: float = 0.01
    max_latency_ratio: float = 2.0
    max_p99_ms: float | None = None
    min_requests: int = 100


BASE = WindowStats(900, 0, 10.0)


def test_too_few_candidate_requests_wait_even_when_every_one_failed() -> None:
    verdict = judge(Gates(), 0, 10, WindowStats(99, 99, 500.0), BASE, [], AT)
    assert verdict.verdict == "wait"
    assert verdict.reason == (
        "only 99 of the 100 candidate requests needed at step 1 (10%); the step waits longer"
    )


def test_an_error_rate_above_the_gate_fails_with_its_figures() -> None:
    verdict = judge(Gates(), 1, 25, WindowStats(230, 36, 10.0), BASE, [], AT)
    assert verdict.verdict == "fail"
    assert verdict.reason == "error rate 15.7% > 1.0% over 230 requests at step 2 (25%)"
    assert verdict.judgement == {
        "step": 1,
        "weight": 25,
        "verdict": "fail",
        "at": AT.isoformat(),
        "candidate": {"requests": 230, "errors": 36, "error_rate": 0.156522, "p99_ms": 10.0},
        "baseline": {"requests": 900, "errors": 0, "error_rate": 0.0, "p99_ms": 10.0},
        "reason": verdict.reason,
    }


def test_an_error_rate_at_the_gate_passes() -> None:
    verdict = judge(Gates(), 0, 10, WindowStats(100, 1, 12.0), BASE, [], AT)
    assert verdict.verdict == "pass"
    assert verdict.reason == (
        "error rate 1.0% <= 1.0% and p99 12.0 ms (1.2x the baseline's 10.0 ms) "
        "over 100 requests at step 1 (10%)"
    )


def test_a_p99_above_the_ratio_to_the_baseline_fails() -> None:
    verdict = judge(Gates(), 0, 10, WindowStats(150, 0, 104.0), BASE, [], AT)
    assert verdict.verdict == "fail"
    assert verdict.reason == (
        "p99 104.0 ms is 10.4x the baseline's 10.0 ms (max 2x) over 150 requests at step 1 (10%)"
    )
    assert judge(Gates(), 0, 10, WindowStats(150, 0, 20.0), BASE, [], AT).verdict == "pass"


def test_a_p99_above_the_absolute_bound_fails_whatever_the_baseline() -> None:
    slow_base = WindowStats(900, 0, 400.0)
    verdict = judge(Gates(max_p99_ms=250), 2, 50, WindowStats(500, 0, 300.0), slow_base, [], AT)
    assert verdict.verdict == "fail"
    assert verdict.reason == "p99 300.0 ms > 250.0 ms over 500 requests at step 3 (50%)"


def test_errors_are_judged_before_latency() -> None:
    verdict = judge(Gates(max_p99_ms=1), 0, 10, WindowStats(200, 100, 900.0), BASE, [], AT)
    assert verdict.reason.startswith("error rate 50.0% > 1.0%")


def history_entry(
    step: int, verdict: str, baseline: dict[str, Any], at: datetime
) -> dict[str, Any]:
    return {"step": step, "verdict": verdict, "at": at.isoformat(), "baseline": baseline}


def test_with_little_baseline_traffic_the_ratio_uses_the_latest_baseline_with_enough() -> None:
    history = [
        history_entry(0, "pass", {"requests": 900, "p99_ms": 10.0}, AT),
        history_entry(1, "pass", {"requests": 300, "p99_ms": 12.0}, AT),
        history_entry(2, "pass", {"requests": 20, "p99_ms": 1.0}, AT),  # too few: not used
    ]
    quiet = WindowStats(5, 0, 2.0)
    slow = judge(Gates(), 3, 100, WindowStats(1000, 0, 30.0), quiet, history, AT)
    assert slow.verdict == "fail"
    assert "2.5x the baseline's 12.0 ms" in slow.reason
    ok = judge(Gates(), 3, 100, WindowStats(1000, 0, 20.0), quiet, history, AT)
    assert ok.verdict == "pass"


def test_without_any_baseline_figure_only_the_absolute_bound_judges_latency() -> None:
    none = WindowStats(0, 0, None)
    verdict = judge(Gates(), 0, 100, WindowStats(200, 0, 999.0), none, [], AT)
    assert verdict.verdict == "pass"
    assert "no baseline figure to compare" in verdict.reason
    capped = judge(Gates(max_p99_ms=500), 0, 100, WindowStats(200, 0, 999.0), none, [], AT)
    assert capped.verdict == "fail"


@pytest.mark.parametrize(
    ("history", "due"),
    [
        ([], AT + timedelta(seconds=30)),
        # a wait on this step: judged again an interval after it
        ([history_entry(1, "wait", {}, AT + timedelta(seconds=31))], AT + timedelta(seconds=61)),
        # a wait on the previous step says nothing about this one
        ([history_entry(0, "wait", {}, AT - timedelta(seconds=5))], AT + timedelta(seconds=30)),
    ],
)
def test_a_step_is_judged_an_interval_after_it_started_or_after_its_latest_wait(
    history: list[dict[str, Any]], due: datetime
) -> None:
    assert next_judgement_at(AT, 1, 30.0, history) == due
