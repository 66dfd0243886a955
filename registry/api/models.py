"""``/admin/v1/models``: create, list and read models."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath, JSONBody, QueryParameter

from registry.api.deps import ETAG, actor, raises, registry_of, with_etag
from registry.errors import Conflict, ModelNotFound
from registry.schemas import ModelIn, ModelOut, Page

__all__ = ["ModelController"]

Offset = Annotated[int, QueryParameter(ge=0, le=1_000_000_000, description="items to skip")]
Limit = Annotated[int, QueryParameter(ge=1, le=500, description="items per page (at most 500)")]


class ModelController(Controller):
    path = "/models"
    tags = ["models"]

    @post(
        "/",
        status_code=201,
        opt={"scope": "publish", **raises(Conflict, body=True)},
        response_headers=ETAG,
    )
    async def create(
        self, request: Request[Any, Any, Any], data: JSONBody[ModelIn]
    ) -> Response[ModelOut]:
        out = await registry_of(request).catalog.create_model(actor(request), data)
        return with_etag(out, out.etag, 201)

    @get("/")
    async def index(
        self, request: Request[Any, Any, Any], offset: Offset = 0, limit: Limit = 50
    ) -> Page:
        return await registry_of(request).catalog.list_models(offset, limit)

    @get("/{model:str}", opt=raises(ModelNotFound), response_headers=ETAG)
    async def show(
        self, request: Request[Any, Any, Any], model: FromPath[str]
    ) -> Response[ModelOut]:
        out = await registry_of(request).catalog.get_model(model)
        return with_etag(out, out.etag)
