"""Typed settings of the gateway process, read once from the environment."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["GatewaySettings"]


class GatewaySettings(BaseSettings):
    """``MODELGATE_GATEWAY_*``; ``MODELGATE_REDIS_URL`` unset means embedded mode."""

    model_config = SettingsConfigDict(env_prefix="MODELGATE_GATEWAY_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    redis_url: str | None = Field(
        default=None, validation_alias=AliasChoices("MODELGATE_REDIS_URL", "redis_url")
    )
    #: granian measured 1.4-2.2x uvicorn's throughput here (docs/BENCHMARKS.md).
    server: str = Field(default="granian", pattern="^(uvicorn|granian)$")
    log_level: str = "info"
