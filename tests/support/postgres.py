"""The machine's PostgreSQL (``MODELGATE_TEST_POSTGRES`` overrides the server URL): each
run makes its own databases and drops them afterwards."""

from __future__ import annotations

import os

POSTGRES_SERVER = os.environ.get(
    "MODELGATE_TEST_POSTGRES", "postgresql+asyncpg://postgres@127.0.0.1:5432"
)


async def _admin(statement: str) -> None:
    import asyncpg

    dsn = POSTGRES_SERVER.replace("postgresql+asyncpg", "postgresql") + "/postgres"
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def create_database(name: str) -> None:
    await _admin(f'CREATE DATABASE "{name}"')


async def drop_database(name: str) -> None:
    await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
