"""Engine and session factory for SQLite (aiosqlite) and PostgreSQL (asyncpg), and migrations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

__all__ = ["WRITE_INTENT", "alembic_config", "make_engine", "make_sessionmaker", "upgrade_to_head"]

#: Execution option marking a transaction that will write (SQLite: ``BEGIN IMMEDIATE``).
WRITE_INTENT = "modelgate_write_intent"

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """Create the async engine; for SQLite, make the file's folder and serialise writers.

    NOTE: SQLite write transactions (those whose connection carries the execution option
    ``WRITE_INTENT``) start with ``BEGIN IMMEDIATE`` so that two concurrent writers queue on
    ``busy_timeout`` instead of failing with "database is locked" when both try to upgrade a
    read lock; reads start with a plain ``BEGIN`` and never wait for writers (WAL).
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        kwargs.setdefault("pool_pre_ping", True)
        return create_async_engine(url, **kwargs)
    database = parsed.database or ""
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, connect_args={"timeout": 30}, **kwargs)

    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get(WRITE_INTENT, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade_to_head(url: str) -> None:
    """Migrate the database at ``url`` to the newest revision (blocking; not in a running loop)."""
    from alembic import command

    command.upgrade(alembic_config(url), "head")
