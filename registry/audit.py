"""Reading the audit log, the workers table and the registered external servers (writes
happen inside each mutation)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from registry._base import ServiceBase, as_utc
from registry.errors import BadRequest
from registry.models import AuditEvent, ExternalServer, Worker
from registry.schemas import AuditOut, Page, WorkerOut

__all__ = ["AuditService", "parse_since"]


def parse_since(text: str) -> datetime:
    """``since`` of the audit listing: an RFC 3339 time (``2026-12-04T10:00:00Z``; naive:
    UTC) or a date (``2026-12-04``, its midnight UTC); `BadRequest` naming the value."""
    value = text.strip()
    try:
        parsed = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise BadRequest(
            f'since "{text}" is not a time: give RFC 3339 (2026-12-04T10:00:00Z) or a date '
            "(2026-12-04)"
        ) from None
    return as_utc(parsed).astimezone(UTC)


class AuditService(ServiceBase):
    async def events(
        self,
        *,
        model: str | None,
        offset: int,
        limit: int,
        action: str | None = None,
        actor: str | None = None,
        since: datetime | None = None,
    ) -> Page:
        """Audit events, newest first, optionally only for one model, one action (exact,
        ``alias.set``, or a family without a dot, ``alias`` for every ``alias.*``), one
        actor, or at or after ``since`` (a naive time is UTC)."""
        conditions = []
        if model is not None:
            conditions.append(AuditEvent.model == model)
        if action is not None and "." in action:
            conditions.append(AuditEvent.action == action)
        elif action is not None:
            conditions.append(AuditEvent.action.startswith(f"{action}.", autoescape=True))
        if actor is not None:
            conditions.append(AuditEvent.actor == actor)
        if since is not None:
            conditions.append(AuditEvent.at >= as_utc(since).astimezone(UTC))
        async with self.read() as session:
            query = select(AuditEvent).where(*conditions)
            count = select(func.count()).select_from(AuditEvent).where(*conditions)
            total = await session.scalar(count) or 0
            rows = await session.execute(
                query.order_by(AuditEvent.id.desc()).offset(offset).limit(limit)
            )
            items = [
                AuditOut(
                    id=e.id,
                    at=e.at,
                    actor=e.actor,
                    action=e.action,
                    model=e.model,
                    target=e.target,
                    before=e.before,
                    after=e.after,
                    revision=e.revision,
                )
                for e in rows.scalars()
            ]
        return Page(items=items, total=int(total), offset=offset, limit=limit)

    async def workers(self, stale_after: timedelta) -> list[WorkerOut]:
        """Announced workers and registered external servers, by id. An external server's
        ``loaded`` entries say ``ready: false``: only a gateway's probes know better."""
        now = self.clock()
        async with self.read() as session:
            rows = (await session.execute(select(Worker).order_by(Worker.id))).scalars()
            servers = (await session.execute(select(ExternalServer))).scalars()
            announced = [
                WorkerOut(
                    id=w.id,
                    url=w.url,
                    state=w.state,
                    loaded=w.loaded,
                    in_flight=w.in_flight,
                    queue_depth=w.queue_depth,
                    capacity=w.capacity,
                    device=w.device,
                    last_seen=w.last_seen,
                    stale=as_utc(w.last_seen) < now - stale_after,
                )
                for w in rows
            ]
            external = [_external(s) for s in servers]
        return sorted([*announced, *external], key=lambda w: w.id)


def _external(row: ExternalServer) -> WorkerOut:
    return WorkerOut(
        id=row.id,
        url=row.url,
        state="registered",
        loaded=[{"model": s["model"], "version": s["version"], "ready": False} for s in row.serves],
        in_flight=0,
        queue_depth=0,
        capacity=0,
        device="external",
        last_seen=None,
        stale=False,
        kind="external",
        protocol=row.protocol,
        serves=[dict(s) for s in row.serves],
        created_at=as_utc(row.created_at),
        created_by=row.created_by,
    )
