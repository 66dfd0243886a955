"""Fixtures of the end-to-end tests.

A module that deploys a fleet names it ``fleet`` (module scope, a `tests.support.fleet.Fleet`);
every test of such a module starts from, and leaves, the fleet as it was started.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.fleet import Fleet


@pytest.fixture(autouse=True)
def fleet_restored(request: pytest.FixtureRequest) -> Iterator[None]:
    """Before and after each test that uses the ``fleet``: `Fleet.restore` (every worker
    running what it was started with and routed to, no traffic policy), so no test
    inherits a dead worker or another test's policy, whatever the order."""
    if "fleet" not in request.fixturenames:
        yield
        return
    fleet: Fleet = request.getfixturevalue("fleet")
    fleet.restore()
    yield
    fleet.restore()
