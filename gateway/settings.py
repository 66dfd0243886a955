"""Typed settings of the gateway process, read once from the environment."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from gateway.balancing.balancer import BalancerSettings
from modelgate.core.settings import RedisSettings

__all__ = ["GatewaySettings"]


class GatewaySettings(RedisSettings, BalancerSettings, BaseSettings):
    """``MODELGATE_GATEWAY_*``, the balancer's settings included; ``MODELGATE_REDIS_URL``
    unset means embedded mode. Read once per process and passed down."""

    model_config = SettingsConfigDict(env_prefix="MODELGATE_GATEWAY_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    #: Measured on the forwarding path (docs/BENCHMARKS.md): uvicorn spends half of
    #: granian's CPU per request at concurrency 1 and matches it at 64.
    server: str = Field(default="uvicorn", pattern="^(uvicorn|granian)$")
    log_level: str = Field(default="info", pattern="^(debug|info|warning|error)$")
    #: One structured line per inference request on the ``modelgate.access`` logger. Off by
    #: default: it measured ~19% of the gateway's CPU per request (docs/BENCHMARKS.md).
    access_log: bool = False
    #: Default per-request budget; a client's ``X-Request-Timeout-Ms`` can only shorten it.
    request_timeout_s: float = Field(default=30.0, gt=0)
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
