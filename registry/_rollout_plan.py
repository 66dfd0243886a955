"""Checks of a rollout's plan (steps, interval, gates) and of a judgement, before any write.

Each refusal is a 400 naming the value and what would be accepted.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import msgspec

from registry.errors import BadRequest
from registry.schemas import Judgement, RolloutGates, RolloutIn

__all__ = ["MAX_SECONDS", "check_plan", "judgement_doc"]

#: The longest interval or timeout accepted (a week): beyond it a datetime overflows.
MAX_SECONDS = 7 * 24 * 3600.0


def _seconds(name: str, value: float) -> None:
    if not math.isfinite(value) or value <= 0 or value > MAX_SECONDS:
        raise BadRequest(f"{name} {value} must be > 0 and at most {MAX_SECONDS:.0f} seconds")


def check_steps(steps: list[int]) -> None:
    for step in steps:
        if not 0 < step <= 100:
            raise BadRequest(
                f"step {step} is not in (0, 100]: each step is the candidate's weight in percent"
            )
    for before, after in itertools.pairwise(steps):
        if after <= before:
            raise BadRequest(
                f"steps {steps} are not ascending: {after} follows {before} "
                f"(each step must give the candidate more weight than the one before)"
            )


def check_gates(gates: RolloutGates) -> None:
    if not (math.isfinite(gates.max_error_rate) and 0 <= gates.max_error_rate <= 1):
        raise BadRequest(f"max_error_rate {gates.max_error_rate} must be between 0 and 1")
    if not (math.isfinite(gates.max_latency_ratio) and 0 < gates.max_latency_ratio <= 1e6):
        raise BadRequest(f"max_latency_ratio {gates.max_latency_ratio} must be > 0")
    p99 = gates.max_p99_ms
    if p99 is not None and not (math.isfinite(p99) and 0 < p99 <= MAX_SECONDS * 1000):
        raise BadRequest(f"max_p99_ms {p99} must be > 0 (milliseconds) or null")
    if not 0 <= gates.min_requests <= 1_000_000_000:
        raise BadRequest(f"min_requests {gates.min_requests} must be between 0 and 1000000000")
    _seconds("waiting_timeout_s", gates.waiting_timeout_s)


def check_plan(data: RolloutIn) -> None:
    """Steps strictly ascending, each in (0, 100]; interval and gates in range."""
    check_steps(data.steps)
    _seconds("interval_s", data.interval_s)
    check_gates(data.gates)


def judgement_doc(judgement: dict[str, Any], *, verdict: str | None = None) -> dict[str, Any]:
    """A judgement checked against `Judgement` and made JSON-ready for ``history``."""
    if verdict is not None:
        judgement = {"verdict": verdict, **judgement}
        if judgement["verdict"] != verdict:
            raise BadRequest(f"judgement verdict {judgement['verdict']!r} must be {verdict!r}")
    try:
        checked = msgspec.convert(judgement, Judgement, strict=False)
    except msgspec.ValidationError as exc:
        raise BadRequest(f"invalid judgement: {exc}") from None
    doc: dict[str, Any] = msgspec.to_builtins(checked)
    return doc
