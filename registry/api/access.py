"""Tokens, the audit log and the workers table."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, post
from litestar.params import JSONBody, PathParameter, QueryParameter

from registry.api.deps import actor, raises, registry_of
from registry.api.models import Limit, Offset
from registry.audit import parse_since
from registry.errors import BadRequest, NotFound
from registry.schemas import Page, TokenIn, TokenOut, WorkerOut
from registry.servers import probed

#: Token ids are ``integer`` (int32 in PostgreSQL); a larger number names no token (400).
TokenId = Annotated[int, PathParameter(ge=1, description="the token's id")]

__all__ = ["AccessController"]


class AccessController(Controller):
    path = "/"
    tags = ["access"]

    @post("/tokens", status_code=201, opt={"scope": "admin", **raises(body=True)})
    async def create_token(
        self, request: Request[Any, Any, Any], data: JSONBody[TokenIn]
    ) -> Response[TokenOut]:
        out = await registry_of(request).tokens.create(
            actor(request),
            data.name,
            list(data.scopes),
            rate_limit_rps=data.rate_limit_rps,
            rate_limit_burst=data.rate_limit_burst,
        )
        return Response(out, status_code=201, headers={"Cache-Control": "no-store"})

    @get("/tokens", opt={"scope": "admin"})
    async def tokens(self, request: Request[Any, Any, Any]) -> list[TokenOut]:
        """Every token by id, revoked ones included: name, scopes, the secret's first
        characters (``prefix``), limits; never the secret itself."""
        return await registry_of(request).tokens.list()

    @delete("/tokens/{token_id:int}", opt={"scope": "admin", **raises(NotFound)})
    async def revoke(self, request: Request[Any, Any, Any], token_id: TokenId) -> None:
        """Revoke a token (204); 404 when no token has that id or it
        is already revoked."""
        await registry_of(request).tokens.revoke(actor(request), token_id)

    @get("/audit", opt={"scope": "admin", **raises(BadRequest)})
    async def audit(
        self,
        request: Request[Any, Any, Any],
        model: Annotated[str | None, QueryParameter(max_length=128)] = None,
        action: Annotated[
            str | None,
            QueryParameter(
                max_length=64,
                description='an action ("alias.set"), or a family without a dot ("alias": '
                "every alias.* action)",
            ),
        ] = None,
        actor: Annotated[
            str | None, QueryParameter(max_length=128, description='e.g. "token:ci"')
        ] = None,
        since: Annotated[
            str | None,
            QueryParameter(
                max_length=64,
                description="only events at or after this time: RFC 3339 (naive: UTC) or a "
                "date (its midnight UTC)",
            ),
        ] = None,
        offset: Offset = 0,
        limit: Limit = 50,
    ) -> Page:
        """Audit events, newest first: who did what to which object, before and after."""
        after = parse_since(since) if since is not None else None
        return await registry_of(request).audit.events(
            model=model, action=action, actor=actor, since=after, offset=offset, limit=limit
        )

    @get("/workers")
    async def workers(self, request: Request[Any, Any, Any]) -> list[WorkerOut]:
        """Announced workers and registered external servers; on a gateway, with its
        balancer's view (load, ejection, what its probes find ready)."""
        registry = registry_of(request)
        workers = await registry.audit.workers(stale_after=timedelta(seconds=15))
        if registry.live is not None:
            health = registry.live.worker_health()
            for worker in workers:
                worker.balancer = health.get(worker.id)
                probed(worker)
        return workers
