"""Typed settings of the registry, read once from the environment."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from modelgate.core.settings import StoreSettings

__all__ = ["RegistrySettings"]


class RegistrySettings(StoreSettings, BaseSettings):
    """``MODELGATE_DATABASE_URL`` and ``MODELGATE_ARTIFACT_ROOT`` are the documented names;
    the rest take the ``MODELGATE_REGISTRY_`` prefix."""

    model_config = SettingsConfigDict(env_prefix="MODELGATE_REGISTRY_", extra="ignore")

    max_artifact_bytes: int = Field(default=2 * 1024**3, gt=0)
    #: The pace a multipart upload is read at, in MiB/s (0 = as fast as it arrives). A
    #: publish shares the gateway with inference; reading faster than a 1 GbE link buys
    #: little and takes CPU from requests (docs/BENCHMARKS.md, 2026-12-03). TCP's own flow
    #: control slows the sender; nothing is buffered beyond one chunk.
    upload_rate_mib_s: float = Field(default=100.0, ge=0)
    #: Hosts an ``http(s)://`` artifact URI may name; empty allows none (file:// only).
    fetch_allowed_hosts: list[str] = Field(default_factory=list)
    #: Folders a ``file://`` artifact URI may point into; empty allows none.
    import_roots: list[Path] = Field(default_factory=list)
    fetch_timeout_s: float = Field(default=60.0, gt=0)
    page_size_max: int = Field(default=500, gt=0)

    # -- artifact store ------------------------------------------------------------------
    #: Temp files and orphans (store files no version row names) younger than this are
    #: kept: it must exceed the longest publish (upload + check) of any process sharing
    #: the artifact root.
    artifact_grace_s: float = Field(default=3600.0, ge=0)
    #: How often a running gateway removes what is older than the grace; 0 turns the
    #: timer off (the start-up sweep and ``modelgate artifacts gc`` remain).
    artifact_gc_interval_s: float = Field(default=600.0, ge=0)
