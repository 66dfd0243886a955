"""Migrations: a fresh SQLite and a fresh PostgreSQL database upgrade to head and match the ORM."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import select

from registry.db import MIGRATIONS, alembic_config, make_engine, upgrade_to_head
from registry.models import Base, RegistryState


def test_revision_files_are_date_prefixed_and_linear() -> None:
    script = ScriptDirectory(str(MIGRATIONS))
    assert len(script.get_heads()) == 1
    for path in (MIGRATIONS / "versions").glob("*.py"):
        assert path.name[:8].isdigit(), path.name


@pytest.fixture(params=["sqlite", "postgres"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path, pg_database_factory: Any) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
    url: str = pg_database_factory()
    return url


async def test_upgrade_from_empty_matches_orm(empty_database: str) -> None:
    import asyncio

    await asyncio.to_thread(upgrade_to_head, empty_database)
    engine = make_engine(empty_database)
    try:
        async with engine.connect() as conn:

            def diff(sync_conn: Any) -> list[Any]:
                context = MigrationContext.configure(sync_conn, opts={"compare_type": True})
                return compare_metadata(context, Base.metadata)

            assert await conn.run_sync(diff) == []
            revision = await conn.scalar(select(RegistryState.revision))
            assert revision == 0
            head = ScriptDirectory.from_config(alembic_config(empty_database)).get_current_head()
            current = await conn.run_sync(
                lambda c: MigrationContext.configure(c).get_current_revision()
            )
            assert current == head
    finally:
        await engine.dispose()
