"""Typed settings of the worker, read once from the environment (``MODELGATE_WORKER_*``).

The shared names (``MODELGATE_DATABASE_URL``, ``MODELGATE_ARTIFACT_ROOT``,
``MODELGATE_REDIS_URL``, ``MODELGATE_REDIS_PREFIX``) come from `modelgate.core.settings`;
everything else takes the ``MODELGATE_WORKER_`` prefix.
"""

from __future__ import annotations

import socket
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from backends.batcher import BatchPolicy
from backends.control import ControlAccess
from backends.dataplane import WorkerOptions
from backends.faults import FaultPolicy
from backends.runtime import RuntimeOptions
from backends.startup import LoadWait
from modelgate.core.settings import RedisSettings, StoreSettings

__all__ = ["WorkerSettings"]


class WorkerSettings(StoreSettings, RedisSettings, BaseSettings):
    """Settings of one worker process; ``options()`` turns them into the core's options."""

    model_config = SettingsConfigDict(env_prefix="MODELGATE_WORKER_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8001, ge=0, le=65535)
    #: Worker id in announcements; default ``<hostname>-<port>``.
    id: str | None = None
    #: URL the gateway should use; default ``http://<host>:<port>``.
    url: str | None = None
    #: Port of the gRPC server (Triton's ``GRPCInferenceService``) on ``host``; 0, the
    #: default, serves no gRPC. Announced as ``grpc_url`` (``advertised_grpc_url``).
    grpc_port: int = Field(default=0, ge=0, le=65535)

    max_batch_size: int = Field(default=32, ge=1)
    max_queue_delay_us: int = Field(default=0, ge=0)
    max_queue_size: int = Field(default=512, ge=1)
    max_body_bytes: int = Field(default=64 * 1024 * 1024, gt=0)

    providers: Literal["auto", "cpu", "cuda"] = "auto"
    cuda_device_id: int = Field(default=0, ge=0)
    intra_op_threads: int = Field(default=0, ge=0)
    inter_op_threads: int = Field(default=0, ge=0)
    graph_optimization: Literal["disable", "basic", "extended", "all"] = "all"
    allow_spinning: bool = False

    warmup: bool = True
    #: How long a start-up ``--load`` waits for a version that is not published yet (or a
    #: registry not reachable or migrated yet), retrying with exponential backoff from
    #: 0.5 s up to ``load_retry_max_s``; 0, the default, fails the start at once, so that a
    #: mistyped reference on a terminal is an error, not a hang (`backends.startup`).
    load_wait_s: float = Field(default=0.0, ge=0.0)
    load_retry_max_s: float = Field(default=30.0, gt=0.0)
    drain_timeout_s: float = Field(default=30.0, gt=0)

    fault_error_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    fault_delay_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    fault_delay_ms: float = Field(default=0.0, ge=0.0)
    fault_seed: int | None = None

    #: Announce to the registry's ``workers`` table: ``None`` = when loading from it.
    announce: bool | None = None
    heartbeat_interval_s: float = Field(default=2.0, gt=0)
    heartbeat_ttl_s: float = Field(default=10.0, gt=0)
    #: Unset: ``MODELGATE_LOG_LEVEL`` (`modelgate.core.logging`), else info.
    log_level: Literal["debug", "info", "warning", "error"] | None = None
    #: One line per inference request on ``modelgate.worker.access`` (request id, model,
    #: version, status, duration, batch size), written off the request path.
    access_log: bool = True

    #: Bearer token the repository load/unload endpoints require (``backends.control``).
    control_token: SecretStr | None = None
    #: ``token``: load/unload need ``control_token`` and are refused while it is unset;
    #: ``open``: without a token they are open to anyone who can reach the worker.
    control: Literal["token", "open"] = "token"

    @property
    def worker_id(self) -> str:
        return self.id or f"{socket.gethostname()}-{self.port}"

    @property
    def advertised_url(self) -> str:
        if self.url:
            return self.url.rstrip("/")
        host = socket.gethostname() if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"

    @property
    def advertised_grpc_url(self) -> str | None:
        """``host:grpc_port`` with the host of ``advertised_url``; ``None`` without gRPC."""
        if not self.grpc_port:
            return None
        host = urlsplit(self.advertised_url).hostname or self.host
        return f"[{host}]:{self.grpc_port}" if ":" in host else f"{host}:{self.grpc_port}"

    def control_access(self) -> ControlAccess:
        token = self.control_token.get_secret_value() if self.control_token else None
        return ControlAccess(token=token or None, open=self.control == "open")

    def load_wait(self) -> LoadWait:
        return LoadWait(timeout_s=self.load_wait_s, max_delay_s=self.load_retry_max_s)

    def options(self) -> WorkerOptions:
        return WorkerOptions(
            worker_id=self.worker_id,
            runtime=RuntimeOptions(
                providers=self.providers,
                cuda_device_id=self.cuda_device_id,
                intra_op_threads=self.intra_op_threads,
                inter_op_threads=self.inter_op_threads,
                graph_optimization=self.graph_optimization,
                allow_spinning=self.allow_spinning,
            ),
            batch=BatchPolicy(
                max_batch_size=self.max_batch_size,
                max_queue_delay_us=self.max_queue_delay_us,
                max_queue_size=self.max_queue_size,
            ),
            faults=FaultPolicy(
                error_rate=self.fault_error_rate,
                delay_rate=self.fault_delay_rate,
                delay_ms=self.fault_delay_ms,
            ),
            max_body_bytes=self.max_body_bytes,
            warmup=self.warmup,
            drain_timeout_s=self.drain_timeout_s,
            fault_seed=self.fault_seed,
        )
