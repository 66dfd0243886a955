"""Engine and session factory for SQLite (aiosqlite) and PostgreSQL (asyncpg), migrations,
and the one translation of "the database cannot be reached" into `DatabaseUnavailable` (and
of "it rolled the transaction back for a concurrent one" into `DatabaseBusy`)."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from registry.errors import (
    MIGRATE_IT,
    REACH_IT,
    DatabaseBusy,
    DatabaseUnavailable,
    InvalidDatabaseUrl,
)

__all__ = [
    "WRITE_INTENT",
    "alembic_config",
    "describe",
    "make_engine",
    "make_sessionmaker",
    "normalize_url",
    "unavailable",
    "upgrade_to_head",
]

#: Execution option marking a transaction that will write (SQLite: ``BEGIN IMMEDIATE``).
WRITE_INTENT = "modelgate_write_intent"

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


#: What ``postgres://`` and ``postgresql://`` (Heroku, libpq, most hosting) mean here.
_ASYNC_DRIVERS = {
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "postgresql+psycopg2": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
}


def normalize_url(url: str) -> URL:
    """Parse ``url``, naming the async driver when it names none (``postgres://…`` →
    ``postgresql+asyncpg://…``, ``sqlite://…`` → ``sqlite+aiosqlite://…``); raise
    `InvalidDatabaseUrl` for anything else."""
    try:
        parsed = make_url(url)
    except exc.ArgumentError:
        raise InvalidDatabaseUrl(url, "it is not a database URL") from None
    parsed = parsed.set(drivername=_ASYNC_DRIVERS.get(parsed.drivername, parsed.drivername))
    if parsed.drivername not in _ASYNC_DRIVERS.values():
        reason = f'the driver "{parsed.drivername}" is not supported'
        raise InvalidDatabaseUrl(describe(parsed), reason)
    return parsed


def describe(url: str | URL) -> str:
    """The database as an error message names it: the URL without its password."""
    parsed = make_url(url) if isinstance(url, str) else url
    return parsed.render_as_string(hide_password=True)


#: How long SQLite waits for a lock when no statement timeout is set.
_SQLITE_PATIENCE_S = 300.0


def make_engine(
    url: str | URL,
    *,
    connect_timeout_s: float = 3.0,
    statement_timeout_s: float | None = 5.0,
    **kwargs: Any,
) -> AsyncEngine:
    """Create the async engine; for SQLite, make the file's folder and serialise writers.

    Nothing waits on the database for ever: PostgreSQL connects within
    ``connect_timeout_s`` (also the wait for a pooled connection) and every statement
    (the server's ``statement_timeout``, and asyncpg's own timeout, which also covers a
    server that stopped answering) ends within ``statement_timeout_s``; SQLite waits for a
    lock at most ``statement_timeout_s`` (``busy_timeout``). ``None`` sets no statement
    timeout (migrations, which may rightly take long).

    NOTE: SQLite write transactions (those whose connection carries the execution option
    ``WRITE_INTENT``) start with ``BEGIN IMMEDIATE`` so that two concurrent writers queue on
    ``busy_timeout`` instead of failing with "database is locked" when both try to upgrade a
    read lock; reads start with a plain ``BEGIN`` and never wait for writers (WAL).
    """
    parsed = normalize_url(url) if isinstance(url, str) else url
    if parsed.get_backend_name() != "sqlite":
        kwargs.setdefault("pool_pre_ping", True)
        if "poolclass" not in kwargs:
            kwargs.setdefault("pool_timeout", connect_timeout_s)
        if parsed.get_driver_name() == "asyncpg":
            connect_args: dict[str, Any] = {"timeout": connect_timeout_s}
            if statement_timeout_s is not None:
                connect_args["command_timeout"] = statement_timeout_s
                connect_args["server_settings"] = {
                    "statement_timeout": str(int(statement_timeout_s * 1000))
                }
            kwargs["connect_args"] = connect_args | kwargs.get("connect_args", {})
        return create_async_engine(parsed, **kwargs)
    database = parsed.database or ""
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    wait_s = statement_timeout_s if statement_timeout_s is not None else _SQLITE_PATIENCE_S
    busy_ms = int(wait_s * 1000)
    engine = create_async_engine(parsed, connect_args={"timeout": wait_s}, **kwargs)

    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
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
    rendered = normalize_url(url).render_as_string(hide_password=False)
    config.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    return config


def upgrade_to_head(url: str) -> None:
    """Migrate the database at ``url`` to the newest revision (blocking; not in a running loop).

    Raises `DatabaseUnavailable` when the database cannot be reached."""
    from alembic import command

    with unavailable(url):
        command.upgrade(alembic_config(url), "head")


log = logging.getLogger("modelgate.registry")

#: SQLSTATEs of a transaction PostgreSQL rolled back because of a concurrent one: nothing
#: was written, and the same transaction, retried, succeeds.
_BUSY = {"40P01": "deadlock detected", "40001": "serialization failure"}

_UNREACHABLE = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ETIMEDOUT, errno.EHOSTDOWN}


def _unavailability(error: BaseException) -> tuple[str, str] | None:
    """Why ``error`` means the database cannot be used now, and the fix; None when it means
    something else (a constraint, a bug)."""
    if isinstance(error, exc.DBAPIError) and _undefined_table(error):
        return f"the registry schema is missing ({error.orig})", MIGRATE_IT
    if isinstance(error, exc.DBAPIError) and error.connection_invalidated:
        return f"the connection was lost ({error.orig})", REACH_IT
    if isinstance(error, exc.OperationalError | exc.InterfaceError):
        return str(error.orig), REACH_IT
    if isinstance(error, exc.TimeoutError):
        return "no pooled connection became free in time", REACH_IT
    if isinstance(error, TimeoutError | asyncio.TimeoutError):
        return "it did not answer in time", REACH_IT
    # NOTE: asyncpg raises socket errors from connect() as they are; only those that say
    # "cannot reach it" count, so that another OSError is not mistaken for an outage.
    if isinstance(error, ConnectionError | socket.gaierror) or (
        isinstance(error, OSError) and error.errno in _UNREACHABLE
    ):
        return f"cannot connect ({error})", REACH_IT
    return None


def _busy(error: exc.DBAPIError) -> str | None:
    """What rolled ``error``'s transaction back when a concurrent one won, else None."""
    orig = error.orig
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return _BUSY.get(code) if isinstance(code, str) else None


def _undefined_table(error: exc.DBAPIError) -> bool:
    text = str(error.orig)
    return "no such table" in text or ("relation" in text and "does not exist" in text)


@contextmanager
def unavailable(url: str | URL) -> Iterator[None]:
    """Re-raise "cannot reach / timed out / connection lost / not migrated" as
    `DatabaseUnavailable` naming the database, "rolled back for a concurrent transaction"
    (deadlock, serialization failure) as `DatabaseBusy`; anything else passes unchanged."""
    try:
        yield
    except DatabaseUnavailable:
        raise
    except Exception as error:
        busy = _busy(error) if isinstance(error, exc.DBAPIError) else None
        if isinstance(error, exc.DBAPIError) and busy is not None:
            # NOTE: the lock order of registry.rollouts should leave none; one that still
            # happens is a bug to find, so it is logged with PostgreSQL's own detail.
            log.warning("database busy: %s: %s", busy, error.orig)
            raise DatabaseBusy(describe(url), busy) from error
        found = _unavailability(error)
        if found is None:
            raise
        raise DatabaseUnavailable(describe(url), *found) from error
