"""Aliases, the traffic policy, and resolve-explain for one model."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, put
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from registry.api.deps import ETAG, actor, raises, registry_of, with_etag
from registry.api.versions import IfMatch
from registry.constraints import InvalidConstraint
from registry.errors import (
    AliasNotFound,
    BadRequest,
    ModelNotFound,
    NoReadyVersion,
    NotFound,
    NoVersionSatisfies,
    VersionNotFound,
)
from registry.schemas import AliasIn, AliasOut, ResolveOut, TrafficIn, TrafficOut

__all__ = ["PolicyController"]


class PolicyController(Controller):
    path = "/models/{model:str}"
    tags = ["policy"]
    #: Every route here names a model.
    opt = raises(ModelNotFound)

    @get("/aliases")
    async def aliases(
        self, request: Request[Any, Any, Any], model: FromPath[str]
    ) -> list[AliasOut]:
        """The model's aliases by name, each as ``GET .../aliases/{alias}`` answers it."""
        return await registry_of(request).policies.list_aliases(model)

    @get("/aliases/{alias:str}", opt=raises(AliasNotFound), response_headers=ETAG)
    async def alias(
        self, request: Request[Any, Any, Any], model: FromPath[str], alias: FromPath[str]
    ) -> Response[AliasOut]:
        out = await registry_of(request).policies.get_alias(model, alias)
        return with_etag(out, out.etag)

    @put(
        "/aliases/{alias:str}",
        opt={"scope": "publish", **raises(BadRequest, VersionNotFound, body=True, if_match=True)},
        response_headers=ETAG,
        responses={201: ResponseSpec(AliasOut, description="The alias was created.")},
    )
    async def set_alias(
        self,
        request: Request[Any, Any, Any],
        model: FromPath[str],
        alias: FromPath[str],
        data: JSONBody[AliasIn],
        if_match: IfMatch = None,
    ) -> Response[AliasOut]:
        out, created = await registry_of(request).policies.set_alias(
            actor(request), model, alias, data.version, if_match
        )
        return with_etag(out, out.etag, 201 if created else 200)

    @delete(
        "/aliases/{alias:str}", opt={"scope": "publish", **raises(AliasNotFound, if_match=True)}
    )
    async def drop_alias(
        self,
        request: Request[Any, Any, Any],
        model: FromPath[str],
        alias: FromPath[str],
        if_match: IfMatch = None,
    ) -> None:
        await registry_of(request).policies.delete_alias(actor(request), model, alias, if_match)

    @get("/traffic", opt=raises(NotFound), response_headers=ETAG)
    async def traffic(
        self, request: Request[Any, Any, Any], model: FromPath[str]
    ) -> Response[TrafficOut]:
        registry = registry_of(request)
        out = await registry.policies.get_traffic(model, registry.live)
        return with_etag(out, out.etag)

    @put(
        "/traffic",
        opt={"scope": "publish", **raises(BadRequest, VersionNotFound, body=True, if_match=True)},
        response_headers=ETAG,
    )
    async def set_traffic(
        self,
        request: Request[Any, Any, Any],
        model: FromPath[str],
        data: JSONBody[TrafficIn],
        if_match: IfMatch = None,
    ) -> Response[TrafficOut]:
        registry = registry_of(request)
        out = await registry.policies.put_traffic(
            actor(request), model, data, if_match, registry.live
        )
        return with_etag(out, out.etag)

    @delete("/traffic", opt={"scope": "publish", **raises(NotFound, if_match=True)})
    async def drop_traffic(
        self, request: Request[Any, Any, Any], model: FromPath[str], if_match: IfMatch = None
    ) -> None:
        await registry_of(request).policies.delete_traffic(actor(request), model, if_match)

    @get("/resolve", opt=raises(InvalidConstraint, NoVersionSatisfies, NoReadyVersion))
    async def resolve(
        self,
        request: Request[Any, Any, Any],
        model: FromPath[str],
        version: Annotated[str | None, QueryParameter(max_length=256)] = None,
        key: Annotated[str | None, QueryParameter(max_length=1024)] = None,
        include_prerelease: FromQuery[bool] = False,
    ) -> ResolveOut:
        registry = registry_of(request)
        return await registry.policies.explain(
            registry.catalog, model, version, key, include_prerelease, registry.live
        )
