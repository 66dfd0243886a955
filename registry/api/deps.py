"""The registry bundle the admin API works with, the bearer-token guard, and small helpers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Request, Response
from litestar.connection import ASGIConnection
from litestar.datastructures import ResponseHeader
from litestar.exceptions import ValidationException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.handlers import BaseRouteHandler

from modelgate.core.openapi import RAISES
from registry.artifacts import ArtifactStore
from registry.audit import AuditService
from registry.catalog import CatalogService
from registry.errors import (
    DatabaseUnavailable,
    Forbidden,
    InvalidInput,
    PreconditionFailed,
    Unauthorized,
)
from registry.limits import actor_for
from registry.policies import LiveView, PolicyService
from registry.rollouts import RolloutService
from registry.servers import ServerService
from registry.settings import RegistrySettings
from registry.tokens import Principal, TokenService

__all__ = [
    "ETAG",
    "EVERY_ROUTE",
    "LiveView",
    "Registry",
    "actor",
    "raises",
    "registry_of",
    "require_scope",
    "with_etag",
]

#: What every admin route may answer (`modelgate.core.openapi`): a NUL in a path or query
#: parameter or a parameter out of its bounds (400), no or an unknown token (401), a token
#: without the route's scope (403), the database unavailable (503).
EVERY_ROUTE = (InvalidInput, ValidationException, Unauthorized, Forbidden, DatabaseUnavailable)
#: What a route with a JSON body adds: a body that does not decode or validate (400, in
#: EVERY_ROUTE already), one over the 1 MiB limit (413).
WITH_BODY = (RequestEntityTooLarge,)
#: The response header of the routes whose object carries a version for ``If-Match``.
ETAG = [
    ResponseHeader(
        name="ETag",
        description='The object\'s current version, e.g. "m12.3"; send it back in If-Match '
        "to change it.",
        # NOTE: a value gives the header its schema (a string); it is never sent as is.
        value='"m1.1"',
        documentation_only=True,
    )
]


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


def raises(*errors: type[Exception], body: bool = False, if_match: bool = False) -> dict[str, Any]:
    """The ``opt`` of a route that raises ``errors`` (beyond `EVERY_ROUTE`, which the admin
    router declares), takes a JSON body, or takes ``If-Match`` (412 when it is stale)."""
    extra: tuple[type[Exception], ...] = (*errors, *(WITH_BODY if body else ()))
    return {RAISES: (*extra, *((PreconditionFailed,) if if_match else ()))}


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
