"""The registry bundle the admin API works with, the bearer-token guard, and small helpers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Request, Response
from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler

from registry.artifacts import ArtifactStore
from registry.audit import AuditService
from registry.catalog import CatalogService
from registry.errors import Forbidden, Unauthorized
from registry.limits import actor_for
from registry.policies import LiveView, PolicyService
from registry.rollouts import RolloutService
from registry.servers import ServerService
from registry.settings import RegistrySettings
from registry.tokens import Principal, TokenService

__all__ = ["LiveView", "Registry", "actor", "registry_of", "require_scope", "with_etag"]


@dataclass
class Registry:
    """Everything the admin API needs, built once by the app factory."""

    settings: RegistrySettings
    store: ArtifactStore
    catalog: CatalogService
    policies: PolicyService
    tokens: TokenService
    audit: AuditService
    rollouts: RolloutService
    servers: ServerService
    live: LiveView | None = None


def registry_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Registry:
    registry: Registry = connection.app.state.registry
    return registry


async def require_scope(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """Guard: a valid bearer token with the handler's ``opt["scope"]`` (``read`` by default)."""
    scope = str(handler.opt.get("scope", "read"))
    header = connection.headers.get("authorization")
    if not header:
        raise Unauthorized("missing bearer token: send 'Authorization: Bearer <token>'")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthorized("malformed Authorization header: expected 'Bearer <token>'")
    principal = await registry_of(connection).tokens.authenticate(secret.strip())
    if not principal.allows(scope):
        have = ", ".join(sorted(principal.scopes))
        raise Forbidden(f'token "{principal.name}" lacks the "{scope}" scope (it has: {have})')
    connection.state.principal = principal


def actor(request: Request[Any, Any, Any]) -> str:
    principal: Principal = request.state.principal
    return actor_for(principal.name)


def with_etag(body: Any, etag: str, status_code: int = 200) -> Response[Any]:
    return Response(body, status_code=status_code, headers={"ETag": etag})
