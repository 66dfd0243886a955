"""The settings every process shares, under their documented names.

``MODELGATE_DATABASE_URL``, ``MODELGATE_ARTIFACT_ROOT``, ``MODELGATE_REDIS_URL`` and
``MODELGATE_REDIS_PREFIX`` are read by the registry, the gateway and the worker alike; each
component's settings class mixes in the groups it needs, so a name is declared once.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, BaseModel, Field

from modelgate.core.keys import DEFAULT_PREFIX, RedisKeys

__all__ = ["RedisSettings", "StoreSettings"]


class StoreSettings(BaseModel):
    """Where the registry lives: its database and its artifact store."""

    database_url: str = Field(
        default="sqlite+aiosqlite:///./var/modelgate.db",
        validation_alias=AliasChoices("MODELGATE_DATABASE_URL", "database_url"),
    )
    artifact_root: Path = Field(
        default=Path("./var/artifacts"),
        validation_alias=AliasChoices("MODELGATE_ARTIFACT_ROOT", "artifact_root"),
    )
    #: PostgreSQL: the most a connect (or the wait for a pooled connection) may take.
    database_connect_timeout_s: float = Field(
        default=3.0,
        gt=0,
        validation_alias=AliasChoices(
            "MODELGATE_DATABASE_CONNECT_TIMEOUT_S", "database_connect_timeout_s"
        ),
    )
    #: The most one statement may take (PostgreSQL ``statement_timeout`` and the client's
    #: own timeout, which also ends a wait on a server that stopped answering; SQLite
    #: ``busy_timeout``). Past either, an admin call answers 503.
    database_statement_timeout_s: float = Field(
        default=5.0,
        gt=0,
        validation_alias=AliasChoices(
            "MODELGATE_DATABASE_STATEMENT_TIMEOUT_S", "database_statement_timeout_s"
        ),
    )

    def engine_options(self) -> dict[str, float]:
        """The timeouts as `registry.db.make_engine` takes them."""
        return {
            "connect_timeout_s": self.database_connect_timeout_s,
            "statement_timeout_s": self.database_statement_timeout_s,
        }


class RedisSettings(BaseModel):
    """Redis for shared state; unset means embedded mode. Every key and channel starts with
    ``redis_prefix``, so deployments (and test runs) can share one server."""

    redis_url: str | None = Field(
        default=None, validation_alias=AliasChoices("MODELGATE_REDIS_URL", "redis_url")
    )
    redis_prefix: str = Field(
        default=DEFAULT_PREFIX,
        min_length=1,
        pattern=r"^[A-Za-z0-9_.:-]+$",
        validation_alias=AliasChoices("MODELGATE_REDIS_PREFIX", "redis_prefix"),
    )

    @property
    def redis_keys(self) -> RedisKeys:
        return RedisKeys(self.redis_prefix)
