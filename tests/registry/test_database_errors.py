"""A database that cannot be used is a 503 naming it, with Retry-After, never a 500 (issue
8, finding 7): refused, locked past the statement timeout, or never migrated."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.pool import NullPool

from gateway.app import create_app
from gateway.settings import GatewaySettings
from registry.db import make_engine, upgrade_to_head
from registry.errors import DatabaseUnavailable
from registry.settings import RegistrySettings
from tests.support.net import free_port
from tests.support.registry import make_token


@asynccontextmanager
async def _admin(
    url: str, tmp_path: Path, token: str = "mg_x", **timeouts: float
) -> AsyncIterator[AsyncTestClient[Litestar]]:
    """An in-process admin client on ``url``, sending ``token``."""
    settings = RegistrySettings(database_url=url, artifact_root=tmp_path / "artifacts")
    engine = make_engine(url, poolclass=NullPool, **timeouts)
    app = create_app(settings, GatewaySettings(), engine=engine)
    async with AsyncTestClient(app=app) as client:
        client.headers["Authorization"] = f"Bearer {token}"
        yield client
    await engine.dispose()


def _unavailable(response: object, *needles: str) -> None:
    assert response.status_code == 503, response.text  # type: ignore[attr-defined]
    assert response.headers["retry-after"]  # type: ignore[attr-defined]
    error = response.json()["error"]  # type: ignore[attr-defined]
    assert error.startswith("database unavailable: "), error
    for needle in needles:
        assert needle in error, error


async def test_refused_postgresql_is_503_naming_it(tmp_path: Path) -> None:
    url = f"postgresql://postgres:secret@127.0.0.1:{free_port()}/registry"
    async with _admin(url, tmp_path) as client:
        response = await client.get("/admin/v1/models")
        _unavailable(response, f"127.0.0.1:{url.rsplit(':', 1)[1]}", "cannot connect")
        assert "secret" not in response.text


async def test_unmigrated_database_is_503_saying_how_to_fix_it(tmp_path: Path) -> None:
    async with _admin(f"sqlite:///{tmp_path / 'empty.db'}", tmp_path) as client:
        _unavailable(await client.get("/admin/v1/models"), "modelgate db upgrade")


async def test_a_lock_held_past_the_statement_timeout_is_503(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    url = f"sqlite+aiosqlite:///{path}"
    await asyncio.to_thread(upgrade_to_head, url)
    setup = make_engine(url)
    token = await make_token(setup, "admin")
    await setup.dispose()
    holder = sqlite3.connect(path, isolation_level=None)
    async with _admin(url, tmp_path, token, statement_timeout_s=0.2) as client:
        holder.execute("BEGIN EXCLUSIVE")
        try:
            response = await client.post("/admin/v1/models", json={"name": "m"})
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        _unavailable(response, "locked")
        assert (await client.post("/admin/v1/models", json={"name": "m"})).status_code == 201


def test_upgrade_of_a_stopped_database_raises_unavailable() -> None:
    with pytest.raises(DatabaseUnavailable, match="cannot connect"):
        upgrade_to_head(f"postgres://postgres@127.0.0.1:{free_port()}/registry")
