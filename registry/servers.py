"""External OIP servers (Triton, MLServer, KServe): register, list, remove.

A registration names where the server is (``url``), how to talk to it (``protocol``) and
which published versions it serves, under which names of its own. Each change is one
transaction with an audit row and a revision bump, like every other registry mutation.
The gateway's worker discovery reads the table on its database poll; it routes to a server
only once its probes pass (`gateway.balancing.probes`).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from registry._base import ServiceBase, as_utc
from registry.errors import (
    BadRequest,
    Conflict,
    InvalidServerUrl,
    ServerNotFound,
    VersionNotFound,
)
from registry.models import ExternalServer, VersionStatus, Worker
from registry.schemas import ServedIn, ServerIn, ServerOut, WorkerOut

__all__ = ["ServerService", "check_server_url", "grpc_target", "probed"]

_SCHEMES = {"http": "http", "grpc": "grpc"}


def check_server_url(url: str, protocol: str) -> str:
    """``url`` without a trailing ``/``; a 400 naming it unless it is ``http://host[:port]
    [/path]`` for protocol ``http`` or ``grpc://host:port`` for ``grpc``."""
    wanted = _SCHEMES[protocol]
    form = "http://host:port[/path]" if protocol == "http" else "grpc://host:port"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidServerUrl(url, f"is not a URL ({exc}); use {form}") from None
    if parts.scheme == "https":
        # NOTE: the gateway's forwarder speaks plain HTTP/1.1 (no TLS), as it does to its
        # own workers; a TLS-terminating proxy beside the server is the way to reach one.
        raise InvalidServerUrl(
            url, "the gateway reaches workers over plain HTTP (no TLS); use http://"
        )
    if parts.scheme != wanted:
        raise InvalidServerUrl(
            url,
            f'has the scheme "{parts.scheme}"; protocol "{protocol}" takes {form}',
        )
    if not parts.hostname:
        raise InvalidServerUrl(url, f"names no host; use {form}")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise InvalidServerUrl(url, f"may hold no query, fragment or credentials; use {form}")
    if protocol == "grpc" and (port is None or parts.path not in ("", "/")):
        raise InvalidServerUrl(url, f"needs a port and no path; use {form}")
    return url.rstrip("/")


def grpc_target(url: str) -> str:
    """``host:port`` of a ``grpc://host:port`` URL (as `check_server_url` accepted it)."""
    return url.removeprefix("grpc://").rstrip("/")


def probed(worker: WorkerOut) -> None:
    """An external server's row with what the gateway's balancer says of it: each served
    version ready when its probes pass, and the gateway's own in-flight count (it has no
    heartbeat to report one)."""
    if worker.kind != "external" or worker.balancer is None:
        return
    ready = set(worker.balancer.get("ready", ()))
    for entry in worker.loaded:
        entry["ready"] = f"{entry['model']}@{entry['version']}" in ready
    worker.in_flight = int(worker.balancer.get("in_flight", 0))


def server_out(row: ExternalServer) -> ServerOut:
    return ServerOut(
        id=row.id,
        url=row.url,
        protocol=row.protocol,
        serves=[dict(s) for s in row.serves],
        created_at=as_utc(row.created_at),
        created_by=row.created_by,
    )


def _doc(row: ExternalServer) -> dict[str, object]:
    return {"id": row.id, "url": row.url, "protocol": row.protocol, "serves": row.serves}


class ServerService(ServiceBase):
    """The registered external servers."""

    async def _served(self, session: AsyncSession, served: ServedIn) -> dict[str, str]:
        """``served`` with the published version's own text and every remote name filled
        in; 404 when the model or version is not published, 400 when it is yanked."""
        owner = await self.model_row(session, served.model)
        row = await self.version_row(session, owner, served.version)
        if row.status == VersionStatus.YANKED:
            raise VersionNotFound(owner.name, row.version, reason="is yanked and cannot serve")
        return {
            "model": owner.name,
            "version": row.version,
            "remote_model": served.remote_model or owner.name,
            "remote_version": (
                row.version if served.remote_version is None else served.remote_version
            ),
        }

    async def _check_free(self, session: AsyncSession, server_id: str) -> None:
        if await session.get(ExternalServer, server_id) is not None:
            raise Conflict(f'an external server "{server_id}" is already registered')
        worker = await session.get(Worker, server_id)
        if worker is not None:
            raise Conflict(
                f'"{server_id}" is the id of a modelgate worker that announced itself (last '
                f"seen {as_utc(worker.last_seen).isoformat()}); choose another id"
            )

    async def register(self, actor: str, data: ServerIn) -> ServerOut:
        """Record a new server: 409 when the id is taken (by a server or an announced
        worker), 404/400 for a served version that is not published or is yanked."""
        url = check_server_url(data.url, data.protocol)
        try:
            async with self.write() as session:
                await self._check_free(session, data.id)
                serves = [await self._served(session, s) for s in data.serves]
                pairs = [(s["model"], s["version"]) for s in serves]
                twice = sorted({f"{m}@{v}" for m, v in pairs if pairs.count((m, v)) > 1})
                if twice:
                    raise BadRequest(f"serves names {', '.join(twice)} more than once")
                row = ExternalServer(
                    id=data.id,
                    url=url,
                    protocol=data.protocol,
                    serves=serves,
                    created_at=self.clock(),
                    created_by=actor,
                )
                session.add(row)
                await session.flush()
                await self.record(
                    session,
                    actor=actor,
                    action="worker.register",
                    model=None,
                    target=data.id,
                    before=None,
                    after=_doc(row),
                )
        except IntegrityError:
            raise Conflict(f'an external server "{data.id}" was registered concurrently') from None
        return server_out(row)

    async def remove(self, actor: str, server_id: str) -> None:
        """Delete a registration; 404 naming the registered ones when there is none."""
        async with self.write() as session:
            row = await session.get(ExternalServer, server_id)
            if row is None:
                ids = (await session.execute(select(ExternalServer.id))).scalars().all()
                announced = await session.get(Worker, server_id) is not None
                why = (
                    " (it is an announced modelgate worker, not a registration)"
                    if announced
                    else ""
                )
                raise ServerNotFound(server_id, ids, why)
            before = _doc(row)
            await session.delete(row)
            await self.record(
                session,
                actor=actor,
                action="worker.remove",
                model=None,
                target=server_id,
                before=before,
                after=None,
            )

    async def list(self) -> list[ServerOut]:
        async with self.read() as session:
            rows = (
                await session.execute(select(ExternalServer).order_by(ExternalServer.id))
            ).scalars()
            return [server_out(r) for r in rows]
