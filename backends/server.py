"""Serve a worker app under uvicorn (uvloop + httptools when installed) with a graceful drain
on SIGTERM.

The first SIGTERM or SIGINT starts a drain: the listener stays open so new requests get a
prompt 503 (``Draining``), in-flight requests finish, then uvicorn shuts down and the
process exits 0. A second signal exits at once.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import uvicorn

from backends.dataplane import DataPlane
from modelgate.core.logging import configure_logging
from modelgate.core.tracing import configure_tracing

if TYPE_CHECKING:
    from backends.app import WorkerApp
    from backends.settings import WorkerSettings

__all__ = ["WorkerServer", "run_worker", "serve"]

log = logging.getLogger("modelgate.worker")


class WorkerServer(uvicorn.Server):
    """uvicorn's server with drain-then-exit signal handling and a fatal-error exit code."""

    def __init__(self, config: uvicorn.Config, plane: DataPlane) -> None:
        super().__init__(config)
        self.plane = plane
        self.exit_code = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_task: asyncio.Task[None] | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # NOTE: uvicorn re-raises captured signals after shutdown, which would make a clean
        # drain exit with -SIGTERM; this override records none, so the exit code is ours.
        if self._drain_task is not None or self._loop is None:
            self.should_exit = True
            self.force_exit = self._drain_task is not None
            return
        self._loop.call_soon_threadsafe(self._start_drain)

    def _start_drain(self) -> None:
        if self._drain_task is None:
            self.plane.begin_drain()
            self._drain_task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        await self.plane.drain()
        log.info("drained; shutting down")
        self.should_exit = True

    def fatal(self, exc: BaseException) -> None:
        """Stop serving and exit non-zero (a start-up load failed)."""
        self.exit_code = 1
        self.should_exit = True


def serve(app: WorkerApp, plane: DataPlane, *, host: str, port: int, **uvicorn_kwargs: Any) -> int:
    """Run until drained or stopped; returns the process exit code."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="auto",
        http="auto",
        lifespan="on",
        access_log=False,
        log_config=None,
        **uvicorn_kwargs,
    )
    server = WorkerServer(config, plane)
    app.state.server = server
    server.run()
    return server.exit_code


def run_worker(
    settings: WorkerSettings, loads: list[tuple[str, str]], files: dict[tuple[str, str], Path]
) -> int:
    """Build the worker from settings and serve it; returns the exit code."""
    from backends.app import Service, create_worker_app
    from backends.metrics import PrometheusMetrics
    from backends.runtime import choose_device
    from backends.source import ChainSource, FileSource, ModelSource

    configure_logging(settings.log_level, access_log=settings.access_log)
    if configure_tracing("modelgate-worker"):
        log.info("tracing on: spans are exported as the OTEL_* environment says")
    options = settings.options()
    choose_device(options.runtime)
    sources: list[ModelSource] = [FileSource(files)] if files else []
    services: list[Service] = []
    if loads:
        from backends.registry_source import RegistrySource

        registry = RegistrySource.from_settings(settings)
        sources.append(registry)
        services.append(registry)

    plane = DataPlane(options, source=ChainSource(sources), metrics=PrometheusMetrics())
    control = settings.control_access()
    (log.warning if control.open and not control.token else log.info)("%s", control.describe())
    if settings.grpc_port:
        from backends.grpc_server import GrpcServer

        services.append(
            GrpcServer(plane, host=settings.host, port=settings.grpc_port, control=control)
        )
    announce_db = settings.announce if settings.announce is not None else bool(loads)
    if announce_db or settings.redis_url:
        from backends.announce import Announcer

        services.append(Announcer.from_settings(settings, plane, database=announce_db))
    app = create_worker_app(
        plane,
        startup_loads=[*files, *loads],
        services=services,
        on_fatal=lambda exc: app.state.server.fatal(exc),
        control=control,
        load_wait=settings.load_wait(),
    )
    return serve(app, plane, host=settings.host, port=settings.port)
