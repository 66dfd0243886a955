"""SQLAlchemy 2 ORM of the registry: the source of truth.

Every table here is owned by Alembic (``migrations/``); a test checks that the two agree.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

__all__ = [
    "ACTIVE_ROLLOUT_STATES",
    "Alias",
    "AliasHistory",
    "ApiToken",
    "AuditEvent",
    "Base",
    "ExternalServer",
    "Model",
    "ModelVersion",
    "RegistryState",
    "Rollout",
    "RolloutState",
    "TrafficPolicy",
    "VersionStatus",
    "Worker",
]

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Json = JSON(none_as_null=True)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class VersionStatus(enum.StrEnum):
    ACTIVE = "active"
    DEPRECATED = "deprecated"
    YANKED = "yanked"


class RolloutState(enum.StrEnum):
    """A rollout's life: the first three are active (at most one per model), the rest final."""

    WAITING = "waiting"
    RUNNING = "running"
    PAUSED = "paused"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"
    ABORTED = "aborted"


ACTIVE_ROLLOUT_STATES = (RolloutState.WAITING, RolloutState.RUNNING, RolloutState.PAUSED)
_ACTIVE_SQL = "state IN ('waiting', 'running', 'paused')"


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp that reads back aware, in UTC, on every database.

    NOTE: SQLite keeps no time zone, so its values came back naive, and the API wrote them
    without an offset (not the RFC 3339 ``date-time`` its document declares; schemathesis
    found it, issue 10). Values are written in UTC, so a naive one read back is UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


TS = UtcDateTime()


class RegistryState(Base):
    """One row (id 1): the registry revision, bumped by every mutation in its transaction."""

    __tablename__ = "registry_state"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    revision: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    updated_at: Mapped[datetime] = mapped_column(TS, nullable=False)


class Model(Base):
    __tablename__ = "models"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), nullable=False, unique=True)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    created_at: Mapped[datetime] = mapped_column(TS, nullable=False)
    created_by: Mapped[str] = mapped_column(String(128), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(TS, nullable=False)
    row_version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)

    versions: Mapped[list[ModelVersion]] = relationship(back_populates="model")


class ModelVersion(Base):
    """A published version. Immutable except for status, priority and labels.

    The unique key on (model, major, minor, patch, prerelease) makes a version equal to an
    existing one ignoring build metadata a conflict, enforced by the database itself so that
    concurrent publishes cannot both win.
    """

    __tablename__ = "model_versions"
    __table_args__ = (
        UniqueConstraint(
            "model_id", "major", "minor", "patch", "prerelease", name="uq_model_versions_precedence"
        ),
        Index("ix_model_versions_model_status", "model_id", "status"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), nullable=False)
    version: Mapped[str] = mapped_column(String(256), nullable=False)
    major: Mapped[int] = mapped_column(BigInteger, nullable=False)
    minor: Mapped[int] = mapped_column(BigInteger, nullable=False)
    patch: Mapped[int] = mapped_column(BigInteger, nullable=False)
    prerelease: Mapped[str] = mapped_column(String(128), nullable=False, default="")
    build: Mapped[str] = mapped_column(String(128), nullable=False, default="")
    is_prerelease: Mapped[bool] = mapped_column(Boolean, nullable=False)
    artifact_uri: Mapped[str] = mapped_column(Text, nullable=False)
    storage_key: Mapped[str] = mapped_column(String(256), nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    size_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False)
    runtime: Mapped[str] = mapped_column(String(64), nullable=False)
    signature: Mapped[dict[str, Any]] = mapped_column(Json, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default=VersionStatus.ACTIVE)
    priority: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    labels: Mapped[dict[str, str]] = mapped_column(Json, nullable=False, default=dict)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    created_at: Mapped[datetime] = mapped_column(TS, nullable=False)
    created_by: Mapped[str] = mapped_column(String(128), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(TS, nullable=False)
    row_version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)

    model: Mapped[Model] = relationship(back_populates="versions")


class Alias(Base):
    """A named pointer at one exact version of a model."""

    __tablename__ = "aliases"
    __table_args__ = (UniqueConstraint("model_id", "name", name="uq_aliases_model_name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), nullable=False)
    name: Mapped[str] = mapped_column(String(64), nullable=False)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(TS, nullable=False)
    updated_by: Mapped[str] = mapped_column(String(128), nullable=False)
    row_version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)

    target: Mapped[ModelVersion] = relationship()


class AliasHistory(Base):
    """Every move or drop of an alias, kept forever."""

    __tablename__ = "alias_history"
    __table_args__ = (Index("ix_alias_history_model_alias", "model_id", "alias"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), nullable=False)
    alias: Mapped[str] = mapped_column(String(64), nullable=False)
    from_version: Mapped[str | None] = mapped_column(String(256), nullable=True)
    to_version: Mapped[str | None] = mapped_column(String(256), nullable=True)
    changed_at: Mapped[datetime] = mapped_column(TS, nullable=False)
    changed_by: Mapped[str] = mapped_column(String(128), nullable=False)


class TrafficPolicy(Base):
    """A model's traffic policy, replaced whole: weighted arms, sticky header, shadow."""

    __tablename__ = "traffic_policies"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), nullable=False, unique=True)
    arms: Mapped[list[dict[str, Any]]] = mapped_column(Json, nullable=False)
    sticky_header: Mapped[str] = mapped_column(String(64), nullable=False)
    shadow: Mapped[dict[str, Any] | None] = mapped_column(Json, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(TS, nullable=False)
    updated_by: Mapped[str] = mapped_column(String(128), nullable=False)
    row_version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)


class Worker(Base):
    """A worker's last announcement: where it is, what it has loaded, how loaded it is."""

    __tablename__ = "workers"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    url: Mapped[str] = mapped_column(String(512), nullable=False)
    #: ``host:port`` of its gRPC endpoint, when it serves one.
    grpc_url: Mapped[str | None] = mapped_column(String(512), nullable=True)
    #: ``[{"model": m, "version": v, "ready": bool}]``
    loaded: Mapped[list[dict[str, Any]]] = mapped_column(Json, nullable=False, default=list)
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    in_flight: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    queue_depth: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    capacity: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    device: Mapped[str] = mapped_column(String(64), nullable=False, default="cpu")
    started_at: Mapped[datetime] = mapped_column(TS, nullable=False)
    last_seen: Mapped[datetime] = mapped_column(TS, nullable=False)


class ExternalServer(Base):
    """An OIP v2 server that is not a modelgate worker (Triton, MLServer, KServe), registered
    by an operator. Configuration, not a heartbeat: it stays until deleted, and the gateway's
    probes, not announcements, say whether it is ready.

    NOTE: a table apart from ``workers``, whose rows each worker rewrites on every heartbeat
    and whose readers age them out by ``last_seen``: a registered server has no heartbeat to
    age by, and a worker's upsert must never overwrite an operator's registration.
    """

    __tablename__ = "external_servers"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    #: ``http://host:port`` (protocol ``http``) or ``grpc://host:port`` (protocol ``grpc``).
    url: Mapped[str] = mapped_column(String(512), nullable=False)
    protocol: Mapped[str] = mapped_column(String(16), nullable=False)
    #: ``[{"model", "version", "remote_model", "remote_version"}]``, every field filled in
    #: (``remote_version`` "" addresses the remote model without a version).
    serves: Mapped[list[dict[str, str]]] = mapped_column(Json, nullable=False)
    created_at: Mapped[datetime] = mapped_column(TS, nullable=False)
    created_by: Mapped[str] = mapped_column(String(128), nullable=False)


class ApiToken(Base):
    """A bearer token: only its sha256 is stored; the secret is shown once at creation."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), nullable=False)
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    prefix: Mapped[str] = mapped_column(String(16), nullable=False)
    scopes: Mapped[list[str]] = mapped_column(Json, nullable=False)
    created_at: Mapped[datetime] = mapped_column(TS, nullable=False)
    created_by: Mapped[str] = mapped_column(String(128), nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column(TS, nullable=True)
    #: The token's own inference rate limit (requests/s and burst); NULL means the
    #: gateway's default (``MODELGATE_GATEWAY_RATE_LIMIT_RPS``/``_BURST``), 0 means none.
    rate_limit_rps: Mapped[float | None] = mapped_column(Float, nullable=True)
    rate_limit_burst: Mapped[float | None] = mapped_column(Float, nullable=True)


class AuditEvent(Base):
    """Who did what to which object, with the object before and after."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_model", "model"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(TS, nullable=False)
    actor: Mapped[str] = mapped_column(String(128), nullable=False)
    action: Mapped[str] = mapped_column(String(64), nullable=False)
    model: Mapped[str | None] = mapped_column(String(128), nullable=True)
    target: Mapped[str] = mapped_column(String(512), nullable=False)
    before: Mapped[dict[str, Any] | None] = mapped_column(Json, nullable=True)
    after: Mapped[dict[str, Any] | None] = mapped_column(Json, nullable=True)
    revision: Mapped[int] = mapped_column(BigInteger, nullable=False)


class Rollout(Base):
    """A stepwise canary of ``version`` against ``baseline``, driven by one gateway at a time.

    ``step`` indexes ``steps`` (-1 before the first step is applied); ``weight`` is the
    candidate's current share (0-100). The lease (``lease_holder`` until
    ``lease_expires_at``) names the gateway replica that drives it. The partial unique index
    backs the service's rule of one active (waiting, running, paused) rollout per model.
    """

    __tablename__ = "rollouts"
    __table_args__ = (
        Index("ix_rollouts_model_id", "model_id"),
        Index("ix_rollouts_state", "state"),
        Index(
            "uq_rollouts_active_model",
            "model_id",
            unique=True,
            sqlite_where=text(_ACTIVE_SQL),
            postgresql_where=text(_ACTIVE_SQL),
        ),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), nullable=False)
    version: Mapped[str] = mapped_column(String(256), nullable=False)
    baseline: Mapped[str] = mapped_column(String(256), nullable=False)
    alias: Mapped[str | None] = mapped_column(String(64), nullable=True)
    steps: Mapped[list[int]] = mapped_column(Json, nullable=False)
    interval_s: Mapped[float] = mapped_column(Float, nullable=False)
    #: ``{max_error_rate, max_latency_ratio, max_p99_ms, min_requests, waiting_timeout_s}``
    gates: Mapped[dict[str, Any]] = mapped_column(Json, nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    step: Mapped[int] = mapped_column(Integer, nullable=False, default=-1)
    weight: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    #: Every judgement, oldest first (`registry.schemas.Judgement`).
    history: Mapped[list[dict[str, Any]]] = mapped_column(Json, nullable=False, default=list)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    lease_holder: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(TS, nullable=True)
    step_started_at: Mapped[datetime | None] = mapped_column(TS, nullable=True)
    created_at: Mapped[datetime] = mapped_column(TS, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(TS, nullable=False)
    created_by: Mapped[str] = mapped_column(String(128), nullable=False)
    row_version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
