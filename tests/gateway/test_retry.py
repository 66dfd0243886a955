"""`gateway.balancing.retry.RetryBudget`: Envoy's concurrency budget (ratio of active, min)."""

from __future__ import annotations

import pytest

from gateway.balancing.balancer import BalancerSettings
from gateway.balancing.retry import RetryBudget


def acquire(budget: RetryBudget, attempts: int) -> int:
    return sum(budget.try_acquire_retry() for _ in range(attempts))


def test_minimum_is_allowed_with_no_load() -> None:
    budget = RetryBudget()
    assert acquire(budget, 5) == 3
    assert (budget.retries_allowed, budget.retries_denied) == (3, 2)
    assert budget.active_retries == 3


def test_ratio_of_active_requests_above_the_minimum() -> None:
    budget = RetryBudget(ratio=0.2, min_concurrent=3)
    for _ in range(100):
        budget.request_started()
    assert budget.limit == 20
    assert acquire(budget, 25) == 20
    assert budget.retries_denied == 5


def test_minimum_wins_while_the_ratio_is_below_it() -> None:
    budget = RetryBudget(ratio=0.2, min_concurrent=3)
    for _ in range(10):
        budget.request_started()
    assert acquire(budget, 10) == 3


def test_finished_retries_free_their_slot() -> None:
    budget = RetryBudget(ratio=0.0, min_concurrent=2)
    assert acquire(budget, 3) == 2
    budget.retry_finished()
    assert budget.try_acquire_retry() is True
    assert budget.try_acquire_retry() is False


def test_budget_shrinks_as_requests_finish() -> None:
    budget = RetryBudget(ratio=0.5, min_concurrent=0)
    for _ in range(4):
        budget.request_started()
    assert acquire(budget, 3) == 2
    budget.retry_finished()
    budget.retry_finished()
    for _ in range(3):
        budget.request_finished()
    assert budget.limit == 0.5
    assert acquire(budget, 2) == 1


def test_zero_budget_denies_every_retry() -> None:
    budget = RetryBudget(ratio=0.0, min_concurrent=0)
    budget.request_started()
    assert budget.try_acquire_retry() is False
    assert budget.retries_denied == 1


def test_unmatched_finishes_clamp_at_zero() -> None:
    budget = RetryBudget()
    budget.request_finished()
    budget.retry_finished()
    assert (budget.active_requests, budget.active_retries) == (0, 0)


def test_invalid_budget() -> None:
    with pytest.raises(ValueError, match=r"ratio=-0\.1"):
        RetryBudget(ratio=-0.1)


def test_from_settings() -> None:
    budget = RetryBudget.from_settings(
        BalancerSettings(retry_budget_ratio=0.5, retry_budget_min_concurrent=1)
    )
    assert (budget.ratio, budget.min_concurrent) == (0.5, 1)
    defaults = RetryBudget.from_settings(BalancerSettings())
    assert (defaults.ratio, defaults.min_concurrent) == (0.2, 16)
