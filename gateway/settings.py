"""Typed settings of the gateway process, read once from the environment."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from gateway.balancing.balancer import BalancerSettings
from modelgate.core.settings import RedisSettings

__all__ = ["GatewaySettings", "RetryOn"]

#: When a request is retried on another worker (Envoy's ``retry_on``): ``connect-failure``
#: (refused, or no connection within the connect timeout), ``reset`` (the connection
#: dropped or the answer was malformed), ``unavailable`` (the worker answered 503),
#: ``timeout`` (the attempt ran past ``attempt_timeout_s``), ``unready`` (probes found the
#: worker unready, or it was ejected, while the attempt was in flight) and ``5xx`` (any 5xx
#: answer, 503 included).
RetryOn = Literal["connect-failure", "reset", "unavailable", "timeout", "unready", "5xx"]


class GatewaySettings(RedisSettings, BalancerSettings, BaseSettings):
    """``MODELGATE_GATEWAY_*``, the balancer's settings included; ``MODELGATE_REDIS_URL``
    unset means embedded mode. Read once per process and passed down."""

    model_config = SettingsConfigDict(
        env_prefix="MODELGATE_GATEWAY_", extra="ignore", populate_by_name=True
    )

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    #: The gRPC data plane (`gateway.grpc`) on ``host``: unset, none; 0, any free port.
    grpc_port: int | None = Field(default=None, ge=0, le=65535)
    #: Requests of one ``ModelStreamInfer`` stream served at once; the stream's further
    #: requests wait to be read until one completes.
    grpc_stream_max_in_flight: int = Field(default=64, gt=0)
    #: Measured on the forwarding path (docs/BENCHMARKS.md): uvicorn spends half of
    #: granian's CPU per request at concurrency 1 and matches it at 64.
    server: str = Field(default="uvicorn", pattern="^(uvicorn|granian)$")
    #: Unset: ``MODELGATE_LOG_LEVEL`` (`modelgate.core.logging`), else info.
    log_level: str | None = Field(default=None, pattern="^(debug|info|warning|error)$")
    #: One structured line per inference request, answered or refused, on the
    #: ``modelgate.access`` logger (`gateway.inbound`), written off the request path; its
    #: cost is measured by ``bench.access_log`` (docs/BENCHMARKS.md, 2026-12-04).
    access_log: bool = True
    #: Default per-request budget; a client's ``X-Request-Timeout-Ms`` can only shorten it.
    request_timeout_s: float = Field(default=30.0, gt=0)
    #: A connect to a worker that takes longer fails that attempt (``connect-failure``).
    connect_timeout_s: float = Field(default=1.0, gt=0)
    #: Per attempt on one worker, within the request's deadline; a worker that takes longer
    #: counts as failed and the request goes elsewhere (``timeout`` in ``retry_on``). 0: none.
    #: NOTE: raise it above the slowest model's inference time.
    attempt_timeout_s: float = Field(default=10.0, ge=0)
    #: Comma-separated ``RetryOn`` conditions (``MODELGATE_GATEWAY_RETRY_ON=...,5xx``).
    #: Inference is idempotent by design (a worker keeps no state between requests), so
    #: any attempt may be sent again; retries go to another worker, within the retry budget.
    retry_on: Annotated[frozenset[RetryOn], NoDecode] = frozenset(
        {"connect-failure", "reset", "unavailable", "timeout", "unready"}
    )
    max_body_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    #: Per model: requests forwarded at once, and requests waiting beyond that (then 429).
    model_concurrency: int = Field(default=512, gt=0)
    model_queue: int = Field(default=1024, ge=0)
    shadow_max_in_flight: int = Field(default=64, ge=0)
    registry_poll_s: float = Field(default=2.0, gt=0)
    workers_poll_s: float = Field(default=1.0, gt=0)
    worker_stale_s: float = Field(default=10.0, gt=0)
    probe_interval_s: float = Field(default=2.0, gt=0)
    #: Per-client token bucket on inference (0 = off); shared through Redis when configured.
    rate_limit_rps: float = Field(default=0.0, ge=0)
    rate_limit_burst: float = Field(default=0.0, ge=0)
    #: When Redis fails: True serves unlimited (degraded), False answers 503.
    rate_limit_fail_open: bool = True
    #: ``optional``: a valid ``infer`` token gets its own bucket, no token the address's;
    #: ``required``: 401 without one. An invalid bearer value is a 401 either way.
    inference_auth: Literal["optional", "required"] = "optional"
    #: Peers whose ``X-Forwarded-For`` is believed: CIDRs, comma-separated; none by default.
    trusted_proxies: Annotated[list[IPv4Network | IPv6Network], NoDecode] = []
    #: Redis on the request path: the bound of each call, after which the circuit breaker
    #: opens and requests skip Redis; a background PING every interval closes it again.
    redis_timeout_s: float = Field(default=0.2, gt=0, le=10)
    redis_probe_interval_s: float = Field(default=0.5, gt=0)
    #: Rollouts (`gateway.control.rollouts`): how often each replica looks at the active
    #: rollouts, and how long the lease of the replica driving one lasts without renewal
    #: (another replica takes over within it after the holder dies).
    #: False: this replica serves and counts, but never drives a rollout (no lease taken).
    rollout_controller: bool = True
    rollout_tick_s: float = Field(default=0.5, gt=0)
    rollout_lease_ttl_s: float = Field(default=5.0, gt=0, le=3600)
    #: Per-attempt counters: how often they are pushed to Redis, and how far back a
    #: step's window can reach (the TTL of the Redis hashes).
    rollout_stats_flush_s: float = Field(default=0.5, gt=0)
    rollout_stats_retention_s: float = Field(default=3600.0, gt=0)
    #: The workers' control token (their ``MODELGATE_WORKER_CONTROL_TOKEN``), which the
    #: gateway sends when ``POST /v2/repository/models/{m}/load|unload`` asks it to place or
    #: remove a version. NOTE: read from ``MODELGATE_GATEWAY_WORKER_CONTROL_TOKEN``, else from
    #: ``MODELGATE_WORKER_CONTROL_TOKEN`` itself, so one setting serves a fleet that shares
    #: an environment. Unset: sent without a token (workers with ``MODELGATE_WORKER_CONTROL=
    #: open`` accept that; others refuse, and the error says to set it). Empty is unset.
    worker_control_token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "MODELGATE_GATEWAY_WORKER_CONTROL_TOKEN", "MODELGATE_WORKER_CONTROL_TOKEN"
        ),
    )
    #: Bound of each call to a worker for ``/config`` and ``/stats`` (each worker's share
    #: of a statistics fan-out included: one that takes longer is left out).
    extension_timeout_s: float = Field(default=5.0, gt=0)
    #: Bound of each worker's load or unload (a load fetches the artifact and warms it up).
    repository_timeout_s: float = Field(default=300.0, gt=0)

    @model_validator(mode="after")
    def _lease_outlives_ticks(self) -> GatewaySettings:
        if self.rollout_lease_ttl_s <= 2 * self.rollout_tick_s:
            raise ValueError(
                f"rollout_lease_ttl_s {self.rollout_lease_ttl_s} must be more than twice "
                f"rollout_tick_s {self.rollout_tick_s}, or the driving replica's lease lapses "
                f"between its renewals"
            )
        return self

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_cidrs(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("retry_on", mode="before")
    @classmethod
    def _split_retry_on(cls, value: Any) -> Any:
        if isinstance(value, str):
            return frozenset(part.strip() for part in value.split(",") if part.strip())
        return value
