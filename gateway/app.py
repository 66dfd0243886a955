"""The gateway's application factory: data plane (OIP v2), admin API, metrics, OpenAPI,
the dashboard (``/ui``, `gateway.dashboard`).

`create_app` builds the Litestar app (admin API, ``/metrics``, ``/schema``) whose lifespan
runs the gateway's background work: registry sync, worker discovery, probes, shared
ejections, the rollout controller and its counters' flushes. `create_gateway` wraps it in
`GatewayApp`, which sends ``/v2`` straight to the bare-ASGI data plane so the hot path skips
the framework. With ``grpc_port`` set, the lifespan also serves the gRPC data plane
(`gateway.grpc`) on the same loop, over the same data plane.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, Response, get
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import openapi
from gateway.balancing.balancer import Balancer
from gateway.balancing.outliers import Ejection
from gateway.balancing.probes import Prober
from gateway.balancing.retry import RetryBudget
from gateway.balancing.shared_ejections import SharedEjections
from gateway.breaker import RedisBreaker
from gateway.control.discovery import WorkerDirectory
from gateway.control.health import Health
from gateway.control.live import Live
from gateway.control.rollout_stats import OutcomeCounters
from gateway.control.rollouts import RolloutController
from gateway.control.sync import RegistrySync
from gateway.dashboard import DashboardState, RegistryReads, SplitSampler, dashboard_routers
from gateway.dataplane import GatewayDataPlane
from gateway.extensions import TritonExtensions
from gateway.forward import Forwarder
from gateway.grpc.channels import WorkerChannels
from gateway.grpc.server import GrpcServer
from gateway.grpc.service import InferenceService
from gateway.grpc.transport import GrpcTransport
from gateway.identity import Identity
from gateway.metrics import GatewayMetrics
from gateway.oip import OipApp
from gateway.ratelimit import RateLimiter
from gateway.repository import FleetRepository
from gateway.routing import RoutingTable
from gateway.settings import GatewaySettings
from modelgate.core.apidocs import assets_router, openapi_config
from modelgate.core.openapi import Document
from modelgate.core.rendering import exception_handlers
from registry.api import Registry, admin_router
from registry.artifact_gc import ArtifactCollector
from registry.artifacts import ArtifactStore
from registry.audit import AuditService
from registry.catalog import CatalogService
from registry.db import make_engine, make_sessionmaker
from registry.policies import PolicyService
from registry.rollouts import RolloutService
from registry.servers import ServerService
from registry.settings import RegistrySettings
from registry.tokens import TokenService

__all__ = ["GatewayApp", "build_registry", "create_app", "create_gateway"]

VERSION = "0.1.0"
Scope = MutableMapping[str, Any]
ASGI = Callable[[Scope, Any, Any], Awaitable[None]]


def build_registry(
    settings: RegistrySettings, engine: AsyncEngine, on_commit: Callable[[], None] | None = None
) -> Registry:
    sessions = make_sessionmaker(engine)
    return Registry(
        settings=settings,
        store=ArtifactStore(settings.artifact_root),
        catalog=CatalogService(sessions, on_commit=on_commit),
        policies=PolicyService(sessions, on_commit=on_commit),
        tokens=TokenService(sessions, on_commit=on_commit),
        audit=AuditService(sessions),
        rollouts=RolloutService(sessions, on_commit=on_commit),
        servers=ServerService(sessions, on_commit=on_commit),
    )


def create_app(
    rsettings: RegistrySettings,
    gsettings: GatewaySettings,
    *,
    engine: AsyncEngine | None = None,
    redis: Any | None = None,
) -> Litestar:
    """Build the app from settings read once by the caller; injected ``engine``/``redis``
    are used as given and not closed."""
    keys = gsettings.redis_keys
    owned_engine = engine is None
    db = (
        engine
        if engine is not None
        else make_engine(rsettings.database_url, **rsettings.engine_options())
    )
    owned_redis = redis is None and gsettings.redis_url is not None
    # NOTE: the request path has a client of its own, with short timeouts, so a hung Redis
    # cannot hold it behind the background loops' 2 s calls (or the other way round).
    fast_redis = redis
    if redis is None and gsettings.redis_url is not None:
        import redis.asyncio as aioredis

        redis = aioredis.from_url(gsettings.redis_url, socket_timeout=2, socket_connect_timeout=2)
        fast = gsettings.redis_timeout_s
        fast_redis = aioredis.from_url(
            gsettings.redis_url, socket_timeout=fast, socket_connect_timeout=fast
        )
    sessions = make_sessionmaker(db)
    health = Health()
    metrics = GatewayMetrics()
    balancer = Balancer(gsettings)
    table = RoutingTable(balancer)
    sync = RegistrySync(
        sessions, table.install, health, redis=redis, poll_s=gsettings.registry_poll_s, keys=keys
    )
    prober = Prober(balancer, interval_s=gsettings.probe_interval_s)

    def workers_changed(workers: Any) -> None:
        table.workers_changed(workers)
        prober.workers = workers

    directory = WorkerDirectory(
        sessions,
        workers_changed,
        health,
        redis=redis,
        poll_s=gsettings.workers_poll_s,
        stale_s=gsettings.worker_stale_s,
        keys=keys,
    )
    forwarder = Forwarder(connect_timeout_s=gsettings.connect_timeout_s)
    breaker = None
    if fast_redis is not None:
        breaker = RedisBreaker(
            fast_redis,
            health,
            timeout_s=gsettings.redis_timeout_s,
            probe_interval_s=gsettings.redis_probe_interval_s,
        )
    limiter = RateLimiter(
        gsettings.rate_limit_rps,
        gsettings.rate_limit_burst,
        breaker=breaker,
        fail_open=gsettings.rate_limit_fail_open,
        keys=keys,
    )
    identity = Identity(
        lambda: table.snapshot.tokens if table.snapshot is not None else None,
        required=gsettings.inference_auth == "required",
        trusted_proxies=gsettings.trusted_proxies,
    )
    counters = OutcomeCounters(
        redis=redis, health=health, keys=keys, retention_s=gsettings.rollout_stats_retention_s
    )
    plane = GatewayDataPlane(
        table,
        forwarder,
        RetryBudget.from_settings(gsettings),
        metrics,
        gsettings,
        limiter,
        outcomes=counters,
    )
    #: The Triton extensions' cores, for the HTTP routes and the gRPC service alike.
    extensions = TritonExtensions(table, forwarder, gsettings)
    repository = FleetRepository(table, forwarder, gsettings)
    channels = WorkerChannels(lambda: table.grpc_urls.values())
    grpc_server = None
    if gsettings.grpc_port is not None:
        service = InferenceService(
            plane,
            GrpcTransport(table, channels),
            health,
            identity,
            extensions,
            repository,
            stream_max_in_flight=gsettings.grpc_stream_max_in_flight,
        )
        grpc_server = GrpcServer(
            service, gsettings.host, gsettings.grpc_port, gsettings.max_body_bytes
        )
    shared = None
    if redis is not None:
        shared = SharedEjections(
            balancer, redis, health, origin=f"{socket.gethostname()}:{os.getpid()}", keys=keys
        )
    balancer.on_eject = _on_eject(metrics, shared, plane)
    prober.on_unready = plane.worker_unready
    metrics.watch_balancer(balancer)
    registry = build_registry(rsettings, db, on_commit=sync.poke)
    registry.live = Live(table, directory)
    collector = ArtifactCollector(registry.store, sessions, grace_s=rsettings.artifact_grace_s)
    #: This replica's name: the rollout leases it holds, and the dashboard's header.
    replica = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
    controller = RolloutController(
        registry.rollouts,
        counters,
        balancer.has_ready,
        metrics,
        health,
        holder=replica,
        tick_s=gsettings.rollout_tick_s,
        lease_ttl_s=gsettings.rollout_lease_ttl_s,
    )
    sampler = SplitSampler(metrics.requests)
    dashboard = DashboardState(
        table, directory, health, sampler, counters, RegistryReads(registry), VERSION, replica
    )

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        rsettings.artifact_root.mkdir(parents=True, exist_ok=True)
        await forwarder.start()
        await sync.start()
        await directory.start()
        await prober.start()
        if shared is not None:
            await shared.start()
        if breaker is not None:
            await breaker.start()
        await collector.start(rsettings.artifact_gc_interval_s)
        await counters.start(gsettings.rollout_stats_flush_s)
        if gsettings.rollout_controller:
            await controller.start()
        if grpc_server is not None:
            await grpc_server.start()
        await sampler.start()
        try:
            yield
        finally:
            await sampler.stop()
            if grpc_server is not None:
                await grpc_server.stop()
            await channels.close()
            await controller.stop()
            await counters.stop()
            await collector.stop()
            if breaker is not None:
                await breaker.stop()
            if shared is not None:
                await shared.stop()
            await prober.stop()
            await directory.stop()
            await sync.stop()
            await forwarder.stop()
            if owned_redis and redis is not None:
                await redis.aclose()
                if fast_redis is not None:
                    await fast_redis.aclose()
            if owned_engine:
                await db.dispose()

    @get("/metrics", include_in_schema=False, media_type=CONTENT_TYPE_LATEST)
    async def metrics_endpoint() -> Response[bytes]:
        for source in ("database", "redis"):
            metrics.degraded.labels(source).set(1 if source in health.problems else 0)
        metrics.revision.set(sync.revision)
        # NOTE: the header is set whole: given only a text/* media_type, Litestar appends its
        # own charset to prometheus_client's, and Prometheus 3 rejects the duplicate.
        body = generate_latest(metrics.registry)
        return Response(body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = Litestar(
        route_handlers=[
            admin_router(rsettings.max_artifact_bytes),
            metrics_endpoint,
            assets_router(),
            *dashboard_routers(),
        ],
        exception_handlers=exception_handlers,
        lifespan=[lifespan],
        # NOTE: logging is the process's to configure (modelgate.core.logging);
        # Litestar's default would put the root logger at INFO behind a queue thread.
        logging_config=None,
        # NOTE: the admin API as Litestar generates it, completed with the data plane.
        openapi_config=openapi_config(
            "modelgate",
            VERSION,
            Document(paths=openapi.paths, components=openapi.components, tags=openapi.TAGS),
        ),
        debug=False,
    )
    app.state.registry = registry
    app.state.plane = plane
    app.state.extensions = extensions
    app.state.repository = repository
    app.state.identity = identity
    app.state.oip = OipApp(plane, health, identity, extensions, repository)
    app.state.grpc = grpc_server
    app.state.health = health
    app.state.sync = sync
    app.state.directory = directory
    app.state.prober = prober
    app.state.rollouts = controller
    app.state.dashboard = dashboard
    return app


def _on_eject(
    metrics: GatewayMetrics, shared: SharedEjections | None, plane: GatewayDataPlane
) -> Callable[[Ejection], None]:
    """Count this replica's own ejections, move the requests in flight on the worker
    elsewhere, and share them (the balancer never calls the hook for ejections applied
    from other replicas)."""

    def on_eject(ejection: Ejection) -> None:
        metrics.ejections.labels(ejection.worker_id).inc()
        plane.worker_ejected(ejection.worker_id)
        if shared is not None:
            shared.publish(ejection)

    return on_eject


class GatewayApp:
    """The ASGI entry point: ``/v2`` to the data plane, everything else to Litestar."""

    def __init__(self, app: Litestar) -> None:
        self.litestar = app
        self.oip: ASGI = app.state.oip

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v2"):
            await self.oip(scope, receive, send)
        else:
            await self.litestar(scope, receive, send)  # type: ignore[arg-type]


def create_gateway(
    rsettings: RegistrySettings, gsettings: GatewaySettings, **kwargs: Any
) -> GatewayApp:
    return GatewayApp(create_app(rsettings, gsettings, **kwargs))
