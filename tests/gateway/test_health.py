"""`Health`: named components, each checked by one or more loops; degraded while any check
fails; the log says each change of state once, however often a loop repeats its failure."""

from __future__ import annotations

import logging

import pytest

from gateway.control.health import Health


def test_a_component_is_degraded_while_any_of_its_checks_fails() -> None:
    health = Health()
    health.fail("database", "cannot read the registry: refused", check="registry")
    health.fail("database", "cannot read workers: refused", check="workers")
    health.ok("database", check="workers")
    assert health.problems == {"database": "cannot read the registry: refused"}
    assert health.degraded
    health.ok("database", check="registry")
    assert health.problems == {}
    assert not health.degraded


def test_two_loops_failing_on_one_component_log_once_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    health = Health()
    with caplog.at_level(logging.INFO, logger="modelgate.gateway.health"):
        for _ in range(10):  # the registry sync and worker discovery, polling in turn
            health.fail("database", "no such table: registry_state", check="registry")
            health.ok("redis")
            health.fail("database", "no such table: workers", check="workers")
        health.ok("database", check="registry")
        health.ok("database", check="workers")
    messages = [record.getMessage() for record in caplog.records]
    assert messages == [
        "database degraded: no such table: registry_state",
        "database degraded: no such table: workers",
        "database recovered (registry)",
        "database recovered (workers)",
    ]


def test_redis_checks_default_to_the_component() -> None:
    health = Health()
    health.fail("redis", "rate limiter unavailable")
    assert set(health.problems) == {"redis"}
    health.ok("redis")
    assert health.problems == {}
