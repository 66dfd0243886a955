"""What every registry service shares: sessions, the clock, audit rows, the revision, ETags."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import semver
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from registry.constraints import parse_version
from registry.db import WRITE_INTENT, unavailable
from registry.errors import PreconditionFailed, VersionNotFound
from registry.models import AuditEvent, Model, ModelVersion, RegistryState
from registry.resolution import unknown_model

__all__ = ["Clock", "ServiceBase", "as_utc", "check_if_match", "etag", "utcnow"]

Clock = Callable[[], datetime]

log = logging.getLogger("modelgate.registry")
#: ``session.info`` key of the changes a transaction made, logged once it commits.
_EVENTS = "modelgate.events"


def _log_event(event: dict[str, Any]) -> None:
    """One INFO line per committed change: ``event`` is the audit action (``alias.set``,
    ``traffic.set``, ``rollout.advance`` ...), with its actor, target, before and after."""
    log.info("%s %s by %s", event["event"], event["target"], event["actor"], extra=event)


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; every datetime stored here is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def etag(kind: str, row_id: int, row_version: int) -> str:
    return f'"{kind}{row_id}.{row_version}"'


def check_if_match(if_match: str | None, current: str) -> None:
    """Raise 412 when ``If-Match`` is given and names none of ``current`` (or ``*``)."""
    if if_match is None:
        return
    tags = [t.strip().removeprefix("W/") for t in if_match.split(",")]
    if "*" in tags or current in tags:
        return
    raise PreconditionFailed(f"If-Match {if_match} does not match the current ETag {current}")


class ServiceBase:
    """Holds the session factory and clock; writes the audit row and bumps the revision."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock = utcnow,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self.sessions = sessions
        self.clock = clock
        #: Called after every committed mutation (the gateway refreshes its routing table).
        self.on_commit = on_commit

    @property
    def database(self) -> Any:
        """The engine's URL, which `DatabaseUnavailable` names."""
        return self.sessions.kw["bind"].url

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A session; the database's unavailability leaves as `DatabaseUnavailable`."""
        with unavailable(self.database):
            async with self.sessions() as session:
                yield session

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """One transaction; commits on success, rolls back on any error. The database's
        unavailability leaves as `DatabaseUnavailable` (503)."""
        with unavailable(self.database):
            async with self.sessions() as session, session.begin():
                await session.connection(execution_options={WRITE_INTENT: True})
                yield session
        for event in session.info.pop(_EVENTS, ()):
            _log_event(event)
        if self.on_commit is not None:
            self.on_commit()

    async def record(
        self,
        session: AsyncSession,
        *,
        actor: str,
        action: str,
        model: str | None,
        target: str,
        before: dict[str, Any] | None,
        after: dict[str, Any] | None,
    ) -> int:
        """Bump the registry revision and write the audit row, inside ``session``'s
        transaction; once it commits, the change is logged as an event (`_log_event`)."""
        now = self.clock()
        result = await session.execute(
            update(RegistryState)
            .where(RegistryState.id == 1)
            .values(revision=RegistryState.revision + 1, updated_at=now)
            .returning(RegistryState.revision)
        )
        revision = int(result.scalar_one())
        session.add(
            AuditEvent(
                at=now,
                actor=actor,
                action=action,
                model=model,
                target=target,
                before=before,
                after=after,
                revision=revision,
            )
        )
        session.info.setdefault(_EVENTS, []).append(
            {"event": action, "actor": actor, "model": model, "target": target,
             "before": before, "after": after, "revision": revision}
        )  # fmt: skip
        return revision

    async def model_row(self, session: AsyncSession, name: str, *, lock: bool = False) -> Model:
        query = select(Model).where(Model.name == name)
        if lock:
            query = query.with_for_update()
        model = (await session.execute(query)).scalar_one_or_none()
        if model is None:
            names = (await session.execute(select(Model.name))).scalars().all()
            raise unknown_model(name, names)
        return model

    async def find_version(
        self, session: AsyncSession, model: Model, parsed: semver.Version
    ) -> ModelVersion | None:
        """The published version of equal precedence (build metadata ignored), if any."""
        return await session.scalar(
            select(ModelVersion).where(
                ModelVersion.model_id == model.id,
                ModelVersion.major == parsed.major,
                ModelVersion.minor == parsed.minor,
                ModelVersion.patch == parsed.patch,
                ModelVersion.prerelease == (parsed.prerelease or ""),
            )
        )

    async def version_row(self, session: AsyncSession, model: Model, version: str) -> ModelVersion:
        """The published version equal to ``version`` ignoring build metadata; 404 if none."""
        row = await self.find_version(session, model, parse_version(version))
        if row is None:
            raise VersionNotFound(model.name, version)
        return row

    async def revision(self) -> int:
        async with self.read() as session:
            value = await session.scalar(
                select(RegistryState.revision).where(RegistryState.id == 1)
            )
            return int(value or 0)
