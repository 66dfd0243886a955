"""Pure rollout judgement: a step's window of candidate and baseline counters → a verdict.

Gates, in this order, each failing at once:

* fewer than ``min_requests`` candidate attempts: ``wait`` (the step waits longer; it
  never passes on too little traffic);
* the candidate's error rate above ``max_error_rate``: ``fail``;
* its p99 above ``max_p99_ms`` (when set): ``fail``;
* its p99 above ``max_latency_ratio`` times the baseline's: ``fail``;
* else ``pass``.

The baseline's p99 is this window's when the baseline had at least ``min_requests``
attempts in it, else the one of the latest judgement in ``history`` whose baseline had them
(at a high step the baseline gets little traffic, at 100% none); with neither, the ratio
gate is not judged. A judgement is the history entry of `registry.schemas.Judgement`:
``{step, weight, verdict, at, candidate, baseline, reason}``, the reason one sentence.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from gateway.control.rollout_stats import WindowStats

__all__ = ["Gates", "Verdict", "at_step", "judge", "next_judgement_at"]

VerdictName = Literal["pass", "fail", "wait"]


class Gates(Protocol):
    """What `judge` reads of a rollout's gates (`registry.schemas.RolloutGates`)."""

    @property
    def max_error_rate(self) -> float: ...

    @property
    def max_latency_ratio(self) -> float: ...

    @property
    def max_p99_ms(self) -> float | None: ...

    @property
    def min_requests(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Verdict:
    verdict: VerdictName
    reason: str
    #: The history entry to append.
    judgement: dict[str, Any]


def at_step(step: int, weight: float) -> str:
    """How a step is named in reasons and logs: ``step 2 (25%)`` (steps count from 1)."""
    return f"step {step + 1} ({weight:g}%)"


def _pct(rate: float) -> str:
    return f"{rate * 100:.1f}%"


def _ms(value: float) -> str:
    return f"{value:.1f} ms"


def baseline_reference(
    baseline: WindowStats, history: Sequence[Mapping[str, Any]], min_requests: int
) -> float | None:
    """The baseline p99 the ratio gate compares with (see the module docstring)."""
    if baseline.requests >= min_requests and baseline.p99_ms is not None:
        return baseline.p99_ms
    for entry in reversed(history):
        figures = entry.get("baseline") or {}
        if figures.get("requests", 0) >= min_requests and figures.get("p99_ms") is not None:
            return float(figures["p99_ms"])
    return None


def judge(
    gates: Gates,
    step: int,
    weight: float,
    candidate: WindowStats,
    baseline: WindowStats,
    history: Sequence[Mapping[str, Any]],
    at: datetime,
) -> Verdict:
    """Judge the window of ``step`` (index into the steps, at ``weight`` %)."""
    where = f"over {candidate.requests} requests at {at_step(step, weight)}"
    verdict: VerdictName = "fail"
    if candidate.requests < gates.min_requests:
        verdict = "wait"
        reason = (
            f"only {candidate.requests} of the {gates.min_requests} candidate requests needed "
            f"at {at_step(step, weight)}; the step waits longer"
        )
    elif candidate.error_rate > gates.max_error_rate:
        reason = f"error rate {_pct(candidate.error_rate)} > {_pct(gates.max_error_rate)} {where}"
    else:
        p99 = candidate.p99_ms
        reference = baseline_reference(baseline, history, gates.min_requests)
        ratio = p99 / reference if p99 is not None and reference else None
        if p99 is not None and gates.max_p99_ms is not None and p99 > gates.max_p99_ms:
            reason = f"p99 {_ms(p99)} > {_ms(gates.max_p99_ms)} {where}"
        elif ratio is not None and reference is not None and ratio > gates.max_latency_ratio:
            reason = (
                f"p99 {_ms(p99 or 0.0)} is {ratio:.1f}x the baseline's {_ms(reference)} "
                f"(max {gates.max_latency_ratio:g}x) {where}"
            )
        else:
            verdict = "pass"
            latency = (
                f"p99 {_ms(p99)} ({ratio:.1f}x the baseline's {_ms(reference or 0.0)})"
                if p99 is not None and ratio is not None
                else f"p99 {_ms(p99)} (no baseline figure to compare)"
                if p99 is not None
                else "no latency figure"
            )
            reason = (
                f"error rate {_pct(candidate.error_rate)} <= {_pct(gates.max_error_rate)} and "
                f"{latency} {where}"
            )
    judgement = {
        "step": step,
        "weight": weight,
        "verdict": verdict,
        "at": at.isoformat(),
        "candidate": candidate.as_dict(),
        "baseline": baseline.as_dict(),
        "reason": reason,
    }
    return Verdict(verdict, reason, judgement)


def next_judgement_at(
    step_started_at: datetime,
    step: int,
    interval_s: float,
    history: Sequence[Mapping[str, Any]],
) -> datetime:
    """When the step is judged next: ``interval_s`` after it started, or after its latest
    ``wait`` judgement (a waiting step is judged again an interval later, over its whole
    window so far)."""
    since = step_started_at
    for entry in reversed(history):
        if entry.get("step") != step:
            break
        if entry.get("verdict") == "wait":
            at = datetime.fromisoformat(str(entry["at"]))
            if at.tzinfo is None:
                at = at.replace(tzinfo=since.tzinfo)
            since = max(since, at)
            break
    return since + timedelta(seconds=interval_s)
