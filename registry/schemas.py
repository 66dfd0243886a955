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
    "Judgement",
    "ModelIn",
    "ModelOut",
    "Page",
    "PublishByUri",
    "ResolveOut",
    "RolloutGates",
    "RolloutIn",
    "RolloutOut",
    "ShadowIn",
    "TokenIn",
    "TokenOut",
    "TrafficIn",
    "TrafficOut",
    "VersionOut",
    "VersionPatch",
    "WindowFigures",
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
    #: The policy's arms, each with ``serving`` and ``reason`` as ``GET .../traffic`` has them.
    arms: list[dict[str, Any]] = msgspec.field(default_factory=list)


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


class RolloutGates(msgspec.Struct, forbid_unknown_fields=True):
    """A step passes when the candidate has at least ``min_requests`` attempts in the step's
    window, an error rate ≤ ``max_error_rate``, a p99 ≤ ``max_latency_ratio`` times the
    baseline's (and ≤ ``max_p99_ms`` when set). Waiting for a ready worker longer than
    ``waiting_timeout_s`` aborts the rollout. The service checks the ranges and names the
    value it refuses."""

    max_error_rate: float = 0.01
    max_latency_ratio: float = 2.0
    max_p99_ms: float | None = None
    min_requests: int = 100
    waiting_timeout_s: float = 300.0


class RolloutIn(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /admin/v1/models/{m}/rollouts``: steps are the candidate's weights (ascending,
    each in (0, 100]); ``baseline`` defaults to the version serving now."""

    version: Annotated[str, Meta(min_length=1, max_length=256)]
    steps: Annotated[list[int], Meta(min_length=1, max_length=100)] = msgspec.field(
        default_factory=lambda: [10, 25, 50, 100]
    )
    interval_s: float = 30.0
    gates: RolloutGates = msgspec.field(default_factory=RolloutGates)
    alias: Annotated[str, Meta(min_length=1, max_length=64)] | None = None
    baseline: Annotated[str, Meta(min_length=1, max_length=256)] | None = None


class WindowFigures(msgspec.Struct):
    """One version's attempts over a step's window."""

    requests: int
    errors: int
    error_rate: float
    #: None when the window has no attempts of this version.
    p99_ms: float | None = None


class Judgement(msgspec.Struct):
    """One entry of a rollout's ``history``: the verdict on a step, with its figures."""

    step: int
    weight: float
    verdict: Literal["pass", "fail", "wait"]
    at: datetime
    candidate: WindowFigures
    baseline: WindowFigures
    reason: str = ""


class RolloutOut(msgspec.Struct):
    id: int
    model: str
    version: str
    baseline: str
    alias: str | None
    state: str
    #: Index into ``steps`` of the step applied now; -1 before the first.
    step: int
    weight: float
    steps: list[int]
    interval_s: float
    gates: dict[str, Any]
    history: list[dict[str, Any]]
    reason: str | None
    lease_holder: str | None
    step_started_at: datetime | None
    created_at: datetime
    updated_at: datetime
    created_by: str = ""
    lease_expires_at: datetime | None = None
