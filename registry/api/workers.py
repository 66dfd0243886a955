"""``/admin/v1/workers``: register and remove external OIP servers (the listing, announced
workers beside them, is `registry.api.access.AccessController.workers`)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, post
from litestar.params import JSONBody, PathParameter

from registry.api.deps import actor, raises, registry_of
from registry.errors import (
    BadRequest,
    Conflict,
    InvalidServerUrl,
    ModelNotFound,
    ServerNotFound,
    VersionNotFound,
)
from registry.schemas import ServerIn, ServerOut

__all__ = ["WorkerController"]

REGISTER_DOC = """Register an OIP v2 server that is not a modelgate worker (Triton, MLServer,
KServe): `{id, url, protocol: "http"|"grpc", serves: [{model, version, remote_model?,
remote_version?}]}`. `url` is `http://host:port[/path]` or `grpc://host:port`; each served
version must be published (a version published with `runtime: "external"` needs no
artifact). The gateway routes to it once its probes pass. 201 with the server; 400 for a
bad URL, protocol or field; 404 for a model or version that is not published; 409 when the
id is taken by a registered server or an announced worker."""

ServerPath = Annotated[str, PathParameter(max_length=128, description="the server's id")]


class WorkerController(Controller):
    path = "/workers"
    tags = ["workers"]

    @post(
        "/",
        status_code=201,
        opt={
            "scope": "admin",
            **raises(
                InvalidServerUrl, BadRequest, ModelNotFound, VersionNotFound, Conflict, body=True
            ),
        },
        description=REGISTER_DOC,
    )
    async def register(
        self, request: Request[Any, Any, Any], data: JSONBody[ServerIn]
    ) -> Response[ServerOut]:
        out = await registry_of(request).servers.register(actor(request), data)
        return Response(out, status_code=201)

    @delete("/{server_id:str}", status_code=204, opt={"scope": "admin", **raises(ServerNotFound)})
    async def remove(self, request: Request[Any, Any, Any], server_id: ServerPath) -> None:
        """Remove a registered external server (204); 404 when none has that id."""
        await registry_of(request).servers.remove(actor(request), server_id)
