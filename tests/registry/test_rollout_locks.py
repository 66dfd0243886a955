"""Rollout transactions on PostgreSQL take their row locks in one order (the model, then the
rollout, then the registry revision), so an operator's verb racing the gateway's controller
waits instead of deadlocking; and a deadlock or serialization failure that still happens
answers 503 with Retry-After, never a 500.

The race that deadlocked (the schema fuzz, once): the controller's `acquire` locked and
updated the rollout row before the model row; an operator's pause locked the model row and
waited for the rollout row; `acquire` then updated its rollout row a second time, and that
update's foreign-key check (PostgreSQL re-checks the key of a row version the transaction
itself wrote) asked for FOR KEY SHARE on the model row the pause held FOR UPDATE.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from sqlalchemy import event, exc, select, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import await_only

from registry._base import utcnow
from registry.db import make_engine, make_sessionmaker, unavailable
from registry.errors import DatabaseBusy
from registry.models import Model, RegistryState
from registry.rollouts import RolloutService
from tests.registry.test_rollouts import start, two_versions
from tests.support.admin import Client

pytestmark = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


class Hold:
    """Stops the first statement on ``engine`` that starts with ``prefix``, once it has run
    (its locks taken), until `release` is set; `reached` says it got there."""

    def __init__(self, engine: AsyncEngine, prefix: str) -> None:
        self.prefix = prefix
        self.reached = asyncio.Event()
        self.release = asyncio.Event()
        self._armed = True
        event.listen(engine.sync_engine, "after_cursor_execute", self._after)

    def _after(self, *args: Any) -> None:
        statement: str = args[2]
        if self._armed and statement.startswith(self.prefix):
            self._armed = False
            self.reached.set()
            # NOTE: event handlers run inside SQLAlchemy's greenlet, where await_only may
            # wait on the loop: the transaction stays open, its locks held.
            await_only(self.release.wait())


@asynccontextmanager
async def engines(url: str, count: int) -> AsyncIterator[list[AsyncEngine]]:
    made = [make_engine(url) for _ in range(count)]
    try:
        yield made
    finally:
        for engine in made:
            await engine.dispose()


async def lock_waiters(engine: AsyncEngine) -> int:
    """How many sessions of this database wait for a lock now."""
    async with engine.connect() as conn:
        query = text(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return int((await conn.execute(query)).scalar_one())


async def until_blocked(engine: AsyncEngine, waiters: int = 1) -> None:
    async with asyncio.timeout(10):
        while await lock_waiters(engine) < waiters:
            await asyncio.sleep(0.01)


async def test_pause_racing_the_controllers_lease_take_over_waits_instead_of_deadlocking(
    client: Client, model_name: str, database_url: str
) -> None:
    path = await two_versions(client, model_name)
    rid = (await start(client, path))["id"]
    async with engines(database_url, 3) as (controller_db, operator_db, observer):
        controller = RolloutService(make_sessionmaker(controller_db))
        operator = RolloutService(make_sessionmaker(operator_db))
        # The controller takes the lease (a take-over: audited, the revision moves) and is
        # held after its first write of the rollout row, all its locks so far kept.
        hold = Hold(controller_db, "UPDATE rollouts")
        lease = asyncio.create_task(controller.acquire(rid, "gw-a", ttl_s=30))
        async with asyncio.timeout(10):
            await hold.reached.wait()
        pause = asyncio.create_task(operator.pause("token:ops", model_name, rid))
        await until_blocked(observer)  # the pause waits for a lock the controller holds
        hold.release.set()
        leased, paused = await asyncio.gather(lease, pause, return_exceptions=True)
    assert not isinstance(paused, BaseException), repr(paused)
    assert not isinstance(leased, BaseException), repr(leased)
    assert leased is not None
    assert leased.lease_holder == "gw-a"
    assert paused.state == "paused"
    shown = (await client.get(f"{path}/{rid}")).json()
    assert (shown["state"], shown["lease_holder"]) == ("paused", "gw-a")


async def test_a_deadlock_that_still_happens_answers_503_with_retry_after(
    model_name: str, database_url: str
) -> None:
    """Two transactions lock the same two rows in opposite orders: PostgreSQL aborts one
    with deadlock_detected (40P01), which leaves `unavailable` as `DatabaseBusy`."""
    async with engines(database_url, 2) as (one_db, other_db):
        async with make_sessionmaker(one_db)() as s, s.begin():
            now = utcnow()
            s.add(Model(name=model_name, created_by="t", created_at=now, updated_at=now))
        first, second = asyncio.Event(), asyncio.Event()

        async def cross(engine: AsyncEngine, mine: Any, theirs: Any, ready: asyncio.Event,
                        other: asyncio.Event) -> None:  # fmt: skip
            with unavailable(engine.url):
                async with make_sessionmaker(engine)() as session, session.begin():
                    await session.scalar(mine.with_for_update())
                    ready.set()
                    await other.wait()
                    await session.scalar(theirs.with_for_update())

        state = select(RegistryState).where(RegistryState.id == 1)
        model = select(Model).where(Model.name == model_name)
        outcomes = await asyncio.gather(
            cross(one_db, state, model, first, second),
            cross(other_db, model, state, second, first),
            return_exceptions=True,
        )
    failed = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(failed) == 1, outcomes  # one was chosen as the victim; the other committed
    busy = failed[0]
    assert isinstance(busy, DatabaseBusy), repr(busy)
    assert busy.status_code == 503
    assert busy.headers == {"Retry-After": "1"}
    assert "busy with a concurrent change" in busy.message
    assert "deadlock" in busy.message
    assert "retry" in busy.message


class _Orig(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"SQLSTATE {sqlstate}")
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("sqlstate", "named"), [("40P01", "deadlock"), ("40001", "serialization failure")]
)
def test_deadlock_and_serialization_failure_are_busy_not_a_500(
    sqlstate: str, named: str, database_url: str
) -> None:
    error = exc.DBAPIError("UPDATE rollouts ...", None, _Orig(sqlstate))
    with pytest.raises(DatabaseBusy, match=named) as raised, unavailable(database_url):
        raise error
    assert raised.value.status_code == 503
    assert raised.value.headers == {"Retry-After": "1"}


def test_other_database_errors_pass_unchanged(database_url: str) -> None:
    error = exc.DBAPIError("INSERT ...", None, _Orig("23505"))  # unique_violation
    with pytest.raises(exc.DBAPIError), unavailable(database_url):
        raise error
