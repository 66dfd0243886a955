"""Types of the admin API (msgspec Structs): what clients send and what they get back."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from registry import limits

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
    "PublishExternal",
    "ResolveOut",
    "RolloutGates",
    "RolloutIn",
    "RolloutOut",
    "ServedIn",
    "ServerIn",
    "ServerOut",
    "ShadowIn",
    "TokenIn",
    "TokenOut",
    "TrafficIn",
    "TrafficOut",
    "UploadFields",
    "VersionOut",
    "VersionPatch",
    "WindowFigures",
    "WorkerOut",
]

ModelName = Annotated[
    str,
    Meta(
        pattern=rf"^[A-Za-z0-9][A-Za-z0-9._-]{{0,{limits.NAME_MAX - 1}}}$",
        description=f"1-{limits.NAME_MAX} characters: letters, digits, '.', '_', '-'; no '/'",
    ),
]
Sha256 = Annotated[str, Meta(pattern=r"^[0-9a-f]{64}$", description="lower-case hex sha256")]
Scope = Literal["read", "publish", "admin", "infer"]
Status = Literal["active", "deprecated", "yanked"]
HeaderName = Annotated[str, Meta(pattern=r"^[A-Za-z0-9-]{1,64}$")]
Priority = Annotated[int, Meta(ge=0, le=1_000_000)]
Labels = dict[
    Annotated[str, Meta(max_length=limits.LABEL_KEY_MAX)],
    Annotated[str, Meta(max_length=limits.LABEL_VALUE_MAX)],
]
Description = Annotated[str, Meta(max_length=limits.DESCRIPTION_MAX)]
#: A version as sent; `registry.constraints.parse_version` holds its parts to their columns.
VersionText = Annotated[str, Meta(min_length=1, max_length=limits.VERSION_MAX)]


class _Input(msgspec.Struct, forbid_unknown_fields=True):
    """A request body. Lengths are declared per field (and documented in OpenAPI); on top,
    no string anywhere in it may hold a NUL or a lone surrogate (`registry.limits`)."""

    def __post_init__(self) -> None:
        # NOTE: an error raised here is not a msgspec.ValidationError: it leaves decoding
        # as it is, and renders as a 400 naming the field and its value.
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if not isinstance(value, _Input):
                limits.check_texts(name, value)


class ModelIn(_Input):
    name: ModelName
    description: Description = ""


class ModelOut(msgspec.Struct):
    name: str
    description: str
    created_at: datetime
    created_by: str
    updated_at: datetime
    versions: int
    etag: str


class PublishByUri(_Input):
    version: VersionText
    artifact_uri: Annotated[str, Meta(min_length=1, max_length=limits.URI_MAX)]
    sha256: Sha256
    priority: Priority = 0
    labels: Labels = msgspec.field(default_factory=dict)
    description: Description = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        limits.check_uri("artifact_uri", self.artifact_uri)


class PublishExternal(_Input):
    """A version served only by external OIP servers (``POST /admin/v1/workers``): no
    artifact is stored, and a modelgate worker refuses to load it."""

    version: VersionText
    runtime: Literal["external"]
    priority: Priority = 0
    labels: Labels = msgspec.field(default_factory=dict)
    description: Description = ""


class UploadFields(_Input):
    """The form fields of a multipart publish, held to the same bounds as `PublishByUri`;
    the file's name becomes the version's ``artifact_uri`` (``upload:<filename>``)."""

    version: VersionText
    filename: Annotated[str, Meta(min_length=1, max_length=limits.FILENAME_MAX)] = "model.onnx"
    priority: Priority = 0
    labels: Labels = msgspec.field(default_factory=dict)
    description: Description = ""


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


class VersionPatch(_Input):
    status: Status | None = None
    priority: Priority | None = None
    labels: Labels | None = None


class AliasIn(_Input):
    version: VersionText


class AliasOut(msgspec.Struct):
    model: str
    alias: str
    version: str
    updated_at: datetime
    updated_by: str
    etag: str
    history: list[dict[str, Any]] = msgspec.field(default_factory=list)


class ArmIn(_Input):
    version: VersionText
    weight: Annotated[int, Meta(ge=0, le=1_000_000)]


class ShadowIn(_Input):
    version: VersionText
    fraction: Annotated[float, Meta(ge=0.0, le=1.0)]


class TrafficIn(_Input):
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


class TokenIn(_Input):
    #: The audit actor is ``token:<name>``, which must fit its column.
    name: Annotated[str, Meta(min_length=1, max_length=limits.TOKEN_NAME_MAX)]
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


ServerId = Annotated[
    str,
    Meta(
        pattern=rf"^[A-Za-z0-9][A-Za-z0-9._-]{{0,{limits.NAME_MAX - 1}}}$",
        description=f"1-{limits.NAME_MAX} characters: letters, digits, '.', '_', '-'",
    ),
]
#: A name as an external server knows it: one URL path segment (no '/', '?', '#', '%',
#: whitespace).
RemoteName = Annotated[
    str,
    Meta(
        pattern=rf"^[^/?#%\s]{{1,{limits.NAME_MAX}}}$",
        description="one URL path segment: no '/', '?', '#', '%' or whitespace",
    ),
]

RemoteVersion = Annotated[
    str,
    Meta(
        pattern=rf"^[^/?#%\s]{{0,{limits.VERSION_MAX}}}$",
        description="one URL path segment, or empty for none",
    ),
]


class ServedIn(_Input):
    """One published version an external server serves, and the names it knows it by:
    ``remote_model`` defaults to ``model``, ``remote_version`` to ``version``; an empty
    ``remote_version`` addresses the model without a version (``/v2/models/{m}/...``)."""

    model: ModelName
    version: VersionText
    remote_model: RemoteName | None = None
    remote_version: RemoteVersion | None = None


class ServerIn(_Input):
    """``POST /admin/v1/workers``: an OIP v2 server that is not a modelgate worker."""

    id: ServerId
    url: Annotated[str, Meta(min_length=1, max_length=limits.SERVER_URL_MAX)]
    serves: Annotated[list[ServedIn], Meta(min_length=1, max_length=256)]
    protocol: Literal["http", "grpc"] = "http"


class ServerOut(msgspec.Struct):
    """A registered external server, every ``serves`` entry with its remote names filled in."""

    id: str
    url: str
    protocol: str
    serves: list[dict[str, str]]
    created_at: datetime
    created_by: str
    kind: str = "external"


class WorkerOut(msgspec.Struct):
    """A row of ``GET /admin/v1/workers``: an announced modelgate worker (``kind``
    "announced") or a registered external server (``kind`` "external", with ``protocol``
    and ``serves``; its ``loaded`` entries are ready when the gateway's probes say so, and
    it is never ``stale``: it has no heartbeat)."""

    id: str
    url: str
    state: str
    loaded: list[dict[str, Any]]
    in_flight: int
    queue_depth: int
    capacity: int
    device: str
    #: The latest heartbeat; None for an external server.
    last_seen: datetime | None
    stale: bool
    #: The gateway balancer's view: in flight, EWMA latency, ejection (None off a gateway).
    balancer: dict[str, Any] | None = None
    kind: Literal["announced", "external"] = "announced"
    protocol: str | None = None
    serves: list[dict[str, str]] | None = None
    created_at: datetime | None = None
    created_by: str | None = None


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
