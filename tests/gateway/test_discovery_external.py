"""`WorkerDirectory` over the migrated registry (SQLite and PostgreSQL): registered external
servers are handed over beside announced workers, never age out, and leave when deleted."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.balancing.balancer import WorkerInfo
from gateway.control.discovery import WorkerDirectory
from gateway.control.health import Health
from registry.db import make_sessionmaker
from registry.models import ExternalServer, Worker


def served(model: str, version: str, remote_model: str, remote_version: str) -> dict[str, str]:
    return {
        "model": model,
        "version": version,
        "remote_model": remote_model,
        "remote_version": remote_version,
    }


async def test_registered_servers_are_handed_over_until_deleted(engine: AsyncEngine) -> None:
    sessions = make_sessionmaker(engine)
    http_id, grpc_id, clash = (f"ext-{uuid.uuid4().hex[:8]}" for _ in range(3))
    now = datetime.now(UTC)
    rows = [
        ExternalServer(id=http_id, url="http://127.0.0.1:9/kserve", protocol="http",
                       serves=[served("m", "1.0.0", "iris", ""),
                               served("m", "2.0.0", "m", "2.0.0")],
                       created_at=now, created_by="t"),
        ExternalServer(id=grpc_id, url="grpc://127.0.0.1:8001", protocol="grpc",
                       serves=[served("m", "1.0.0", "iris", "7")], created_at=now, created_by="t"),
        ExternalServer(id=clash, url="http://127.0.0.1:10", protocol="http",
                       serves=[served("m", "1.0.0", "m", "1.0.0")], created_at=now, created_by="t"),
    ]  # fmt: skip
    async with sessions() as session, session.begin():
        session.add_all(rows)
        # A modelgate worker announcing itself under a registered server's id.
        session.add(Worker(id=clash, url="http://127.0.0.1:11", loaded=[], state="serving",
                           started_at=now, last_seen=now))  # fmt: skip
    ours = {http_id, grpc_id, clash}
    seen: list[dict[str, WorkerInfo]] = []

    def on_workers(workers: Mapping[str, WorkerInfo]) -> None:
        seen.append({k: v for k, v in workers.items() if k in ours})

    wall = now
    directory = WorkerDirectory(sessions, on_workers, Health(), stale_s=10, wall=lambda: wall)
    try:
        await directory.refresh()
        http, grpc = seen[-1][http_id], seen[-1][grpc_id]
        assert (http.url, http.grpc_url, http.external) == ("http://127.0.0.1:9/kserve", None, True)
        assert http.ready == {("m", "1.0.0"), ("m", "2.0.0")}
        assert http.remote[("m", "1.0.0")] == ("iris", "")
        assert (grpc.url, grpc.grpc_url, grpc.remote) == (
            "",
            "127.0.0.1:8001",
            {("m", "1.0.0"): ("iris", "7")},
        )
        assert seen[-1][clash].url == "http://127.0.0.1:10"  # the registration wins
        assert clash not in directory.announcements

        wall = now + timedelta(hours=1)  # no heartbeat to age them by
        await directory.refresh()
        assert set(seen[-1]) == {http_id, grpc_id, clash}

        async with sessions() as session, session.begin():
            await session.delete(await session.get(ExternalServer, grpc_id))
        await directory.refresh()
        assert set(seen[-1]) == {http_id, clash}
    finally:
        async with sessions() as session, session.begin():
            for server_id in ours:
                for kind in (ExternalServer, Worker):
                    row = await session.get(kind, server_id)
                    if row is not None:
                        await session.delete(row)
