"""The gateway's Litestar application factory: admin API, OpenAPI, and (later) the data plane."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar, get
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.settings import GatewaySettings
from registry.api import Registry, admin_router
from registry.api.errors import exception_handlers
from registry.artifacts import ArtifactStore
from registry.audit import AuditService
from registry.catalog import CatalogService
from registry.db import make_engine, make_sessionmaker
from registry.policies import PolicyService
from registry.settings import RegistrySettings
from registry.tokens import TokenService

__all__ = ["build_registry", "create_app"]

VERSION = "0.1.0"


def build_registry(settings: RegistrySettings, engine: AsyncEngine) -> Registry:
    sessions = make_sessionmaker(engine)
    return Registry(
        settings=settings,
        store=ArtifactStore(settings.artifact_root),
        catalog=CatalogService(sessions),
        policies=PolicyService(sessions),
        tokens=TokenService(sessions),
        audit=AuditService(sessions),
    )


@get("/v2/health/live", tags=["health"])
async def live() -> dict[str, bool]:
    return {"live": True}


def create_app(
    registry_settings: RegistrySettings | None = None,
    gateway_settings: GatewaySettings | None = None,
    *,
    engine: AsyncEngine | None = None,
) -> Litestar:
    """Build the app; pass ``engine`` to share one (tests), else one is made from settings."""
    rsettings = registry_settings or RegistrySettings()
    _ = gateway_settings or GatewaySettings()
    owned = engine is None
    db = engine if engine is not None else make_engine(rsettings.database_url)
    registry = build_registry(rsettings, db)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        rsettings.artifact_root.mkdir(parents=True, exist_ok=True)
        try:
            yield
        finally:
            if owned:
                await db.dispose()

    app = Litestar(
        route_handlers=[admin_router(rsettings.max_artifact_bytes), live],
        exception_handlers=exception_handlers,
        lifespan=[lifespan],
        openapi_config=OpenAPIConfig(
            title="modelgate",
            version=VERSION,
            path="/schema",
            components=Components(
                security_schemes={"bearer": SecurityScheme(type="http", scheme="bearer")}
            ),
        ),
        debug=False,
    )
    app.state.registry = registry
    return app
