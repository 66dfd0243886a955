"""Types of the admin API (msgspec Structs): what clients send and what they get back."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

__all__ = [
    "AliasIn",
    "AliasOut",
    "ArmIn",
    "AuditOut",
    "ModelIn",
    "ModelOut",
    "Page",
    "PublishByUri",
    "ResolveOut",
    "ShadowIn",
    "TokenIn",
    "TokenOut",
    "TrafficIn",
    "TrafficOut",
    "VersionOut",
    "VersionPatch",
    "WorkerOut",
]

ModelName = Annotated[
    str,
    Meta(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$",
        description="1-128 characters: letters, digits, '.', '_', '-'; no '/'",
    ),
]
Sha256 = Annotated[str, Meta(pattern=r"^[0-9a-f]{64}$", description="lower-case hex sha256")]
Scope = Literal["read", "publish", "admin", "infer"]
Status = Literal["active", "deprecated", "yanked"]
HeaderName = Annotated[str, Meta(pattern=r"^[A-Za-z0-9-]{1,64}$")]
Priority = Annotated[int, Meta(ge=0, le=1_000_000)]
Labels = dict[Annotated[str, Meta(max_length=128)], Annotated[str, Meta(max_length=512)]]


class ModelIn(msgspec.Struct, forbid_unknown_fields=True):
    name: ModelName
    description: Annotated[str, Meta(max_length=4096)] = ""


class ModelOut(msgspec.Struct):
    name: str
    description: str
    created_at: datetime
    created_by: str
    updated_at: datetime
    versions: int
    etag: str


class PublishByUri(msgspec.Struct, forbid_unknown_fields=True):
    version: Annotated[str, Meta(min_length=1, max_length=256)]
    artifact_uri: Annotated[str, Meta(min_length=1, max_length=2048)]
    sha256: Sha256
    priority: Priority = 0
    labels: Labels = msgspec.field(default_factory=dict)
    description: Annotated[str, Meta(max_length=4096)] = ""


class VersionOut(msgspec.Struct):
    model: str
    version: str
    status: str
    priority: int
    prerelease: bool
    artifact_uri: str
    storage_key: str
    sha256: str
    size_bytes: int
    runtime: str
    signature: dict[str, Any]
    labels: dict[str, str]
    description: str
    created_at: datetime
    created_by: str
    updated_at: datetime
    etag: str


class VersionPatch(msgspec.Struct, forbid_unknown_fields=True):
    status: Status | None = None
    priority: Priority | None = None
    labels: Labels | None = None


class AliasIn(msgspec.Struct, forbid_unknown_fields=True):
    version: Annotated[str, Meta(min_length=1, max_length=256)]


class AliasOut(msgspec.Struct):
    model: str
    alias: str
    version: str
    updated_at: datetime
    updated_by: str
    etag: str
    history: list[dict[str, Any]] = msgspec.field(default_factory=list)


class ArmIn(msgspec.Struct, forbid_unknown_fields=True):
    version: Annotated[str, Meta(min_length=1, max_length=256)]
    weight: Annotated[int, Meta(ge=0, le=1_000_000)]


class ShadowIn(msgspec.Struct, forbid_unknown_fields=True):
    version: Annotated[str, Meta(min_length=1, max_length=256)]
    fraction: Annotated[float, Meta(ge=0.0, le=1.0)]


class TrafficIn(msgspec.Struct, forbid_unknown_fields=True):
    arms: Annotated[list[ArmIn], Meta(min_length=1, max_length=64)]
    sticky_header: HeaderName = "X-Route-Key"
    shadow: ShadowIn | None = None


class TrafficOut(msgspec.Struct):
    model: str
    arms: list[dict[str, Any]]
    sticky_header: str
    shadow: dict[str, Any] | None
    updated_at: datetime
    updated_by: str
    etag: str


class ResolveOut(msgspec.Struct):
    model: str
    reference: str
    kind: str
    version: str
    candidates: list[str]
    arm: str
    weights: dict[str, float]
    worker: str | None
    trace: list[str]
    #: What the registry alone answers (no worker readiness); differs from ``version`` when
    #: the gateway serves a lower candidate because higher ones have no ready worker.
    registry_version: str = ""
    #: Versions passed over, each as ``"<version>: <why>"`` (e.g. ``"1.2.0: no ready worker"``).
    skipped: list[str] = msgspec.field(default_factory=list)


#: Requests per second (and burst) of one token's inference bucket; 0 means unlimited.
RateLimit = Annotated[float, Meta(ge=0, le=1e9)]


class TokenIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, Meta(min_length=1, max_length=128)]
    scopes: Annotated[list[Scope], Meta(min_length=1, max_length=4)]
    #: The token's own inference limit; omitted means the gateway's default.
    rate_limit_rps: RateLimit | None = None
    rate_limit_burst: RateLimit | None = None


class TokenOut(msgspec.Struct):
    id: int
    name: str
    scopes: list[str]
    prefix: str
    created_at: datetime
    created_by: str
    revoked: bool
    token: str | None = None
    rate_limit_rps: float | None = None
    rate_limit_burst: float | None = None


class WorkerOut(msgspec.Struct):
    id: str
    url: str
    state: str
    loaded: list[dict[str, Any]]
    in_flight: int
    queue_depth: int
    capacity: int
    device: str
    last_seen: datetime
    stale: bool
    #: The gateway balancer's view: in flight, EWMA latency, ejection (None off a gateway).
    balancer: dict[str, Any] | None = None


class AuditOut(msgspec.Struct):
    id: int
    at: datetime
    actor: str
    action: str
    model: str | None
    target: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    revision: int


class Page(msgspec.Struct):
    items: list[Any]
    total: int
    offset: int
    limit: int
