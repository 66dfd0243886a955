"""The Open Inference Protocol v2 surface of the gateway, as a bare ASGI app (the hot path).

Paths: ``/v2``, ``/v2/health/live|ready``, ``/v2/models/{m}[/versions/{v}][/ready|/infer]``
and ``/v2/infer`` (model and version from ``X-Model`` / ``X-Model-Version``). The version
segment may be an exact version, an alias, ``stable``, ``latest`` or a one-token constraint;
``X-Model-Version`` carries any constraint. Bodies are forwarded as bytes, never decoded.

Triton's extensions (`gateway.extensions`, `gateway.repository`): ``GET .../config``,
``GET /v2/models[/{m}[/versions/{v}]]/stats``, and, with an admin token, ``POST
/v2/repository/index`` and ``POST /v2/repository/models/{m}[/versions/{v}]/load|unload``.
NOTE: as on Triton, ``/v2/models/stats`` is the statistics of every model, so the
metadata of a model named "stats" is reached only as ``/v2/models/stats/versions/{v}``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import unquote

import msgspec

from gateway.control.health import Health
from gateway.dataplane import GatewayDataPlane
from gateway.errors import BadGatewayRequest
from gateway.extensions import TritonExtensions
from gateway.forward import Reply
from gateway.identity import Identity
from gateway.inbound import Inbound
from gateway.repository import FleetRepository
from modelgate.core.accesslog import request_id
from modelgate.core.asgi import read_body
from modelgate.core.errors import ModelgateError

__all__ = ["OipApp"]

log = logging.getLogger("modelgate.gateway")
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
JSON = [(b"content-type", b"application/json")]
_encode = msgspec.json.encode
# NOTE: the statistics routes are served but "statistics" is not listed. perf_analyzer reads
# server-side statistics only from a server that lists it, and then looks its model up by
# the -x it was given and parses that as an integer (Triton's versions are integers): with
# a range (-x ^1.0) the gateway's per-version answer has no entry of that name and the run
# exits 99, and with an exact semver it finds nothing under std::to_string(stoll("1.1.0"))
# ("1") and shows zeros. Listed or not, tritonclient's get_inference_statistics works.
SERVER = {
    "name": "modelgate",
    "version": "0.1.0",
    "extensions": [
        "binary_tensor_data",
        "model_version_constraints",
        "model_configuration",
        "model_repository",
    ],
}
#: The largest repository request body (its parameters) read.
REPOSITORY_BODY_BYTES = 64 * 1024


class _RepositoryRequest(msgspec.Struct):
    """The body of a repository call: ``{"ready": ...}`` (index) or ``{"parameters": ...}``."""

    parameters: dict[str, Any] = msgspec.field(default_factory=dict)
    ready: bool = False


def _json(status: int, doc: Any, extra: list[tuple[bytes, bytes]] | None = None) -> Reply:
    return Reply(status, [*JSON, *(extra or [])], _encode(doc))


def _error(exc: ModelgateError) -> Reply:
    extra = [(k.lower().encode(), v.encode()) for k, v in (exc.headers or {}).items()]
    return _json(exc.status_code, {"error": exc.message}, extra)


class OipApp:
    """Parses only what routing needs (path, a few headers), then calls the data plane."""

    def __init__(
        self,
        plane: GatewayDataPlane,
        health: Health,
        identity: Identity,
        extensions: TritonExtensions | None = None,
        repository: FleetRepository | None = None,
    ) -> None:
        self.plane = plane
        self.health = health
        #: Every ``/v2/models`` and ``/v2/infer`` request is identified (401/403 first);
        #: ``/v2/repository`` needs an admin token.
        self.identity = identity
        self.extensions = extensions or TritonExtensions(
            plane.table, plane.forwarder, plane.settings
        )
        self.repository = repository or FleetRepository(
            plane.table, plane.forwarder, plane.settings
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Every answer, an error's too, echoes the request id (`request_id`)."""
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        rid = request_id(headers.get("x-request-id"))
        try:
            reply = await self._dispatch(scope, receive, headers, rid)
        except ModelgateError as exc:
            reply = _error(exc)
        except Exception:
            log.exception(
                "unhandled error on %s %s",
                scope["method"],
                scope["path"],
                extra={"request_id": rid},
            )
            reply = _json(500, {"error": "internal error; see the gateway log"})
        out = [
            *reply.headers,
            (b"content-length", str(len(reply.body)).encode()),
            (b"x-request-id", rid.encode()),
        ]
        await send({"type": "http.response.start", "status": reply.status, "headers": out})
        await send({"type": "http.response.body", "body": reply.body})

    async def _dispatch(
        self, scope: Scope, receive: Receive, headers: dict[str, str], rid: str
    ) -> Reply:
        method: str = scope["method"]
        raw = scope.get("raw_path")
        path = raw.decode("latin-1").split("?", 1)[0] if raw else scope["path"]
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if parts == ["v2"] and method in ("GET", "HEAD"):
            return _json(200, SERVER)
        if parts[:2] == ["v2", "health"] and len(parts) == 3 and method in ("GET", "HEAD"):
            return self._health(parts[2])
        if parts == ["v2", "infer"] and method == "POST":
            inbound = Inbound(rid, headers.get("traceparent"), time.monotonic())
            model = headers.get("x-model")
            if not model:
                exc = BadGatewayRequest(
                    "POST /v2/infer needs the header X-Model (and optionally X-Model-Version)"
                )
                self.plane.refused(None, exc, inbound)
                raise exc
            return await self._infer(model, None, headers, receive, scope, inbound)
        if parts == ["v2", "models", "stats"] and method in ("GET", "HEAD"):
            self.identity.caller(scope["headers"], scope.get("client"))
            return _json(200, await self.extensions.statistics())
        if len(parts) >= 3 and parts[:2] == ["v2", "models"]:
            return await self._model(method, parts[2:], headers, receive, scope, rid)
        if len(parts) >= 3 and parts[:2] == ["v2", "repository"]:
            return await self._repository(method, parts[2:], headers, receive, scope)
        return _json(404, {"error": f"no route for {method} {path}"})

    def _health(self, what: str) -> Reply:
        if what == "live":
            return _json(200, {"live": True})
        if what == "ready":
            if not self.plane.table.ready:
                return _json(503, {"error": "the routing table has not been loaded yet"})
            return _json(200, {"ready": True, "degraded": sorted(self.health.problems)})
        return _json(404, {"error": f"no health endpoint {what!r}; use live or ready"})

    async def _model(
        self,
        method: str,
        rest: list[str],
        headers: dict[str, str],
        receive: Receive,
        scope: Scope,
        rid: str,
    ) -> Reply:
        model, version, action = rest[0], None, ""
        tail = rest[1:]
        if len(tail) >= 2 and tail[0] == "versions":
            version, tail = tail[1], tail[2:]
        if len(tail) == 1 and tail[0] in ("ready", "infer", "config", "stats"):
            action = tail[0]
        elif tail:
            return _json(404, {"error": f"no route for {method} /v2/models/{'/'.join(rest)}"})
        if action == "infer":
            if method != "POST":
                return _json(
                    405, {"error": f"method {method} is not allowed on .../infer; use POST"}
                )
            inbound = Inbound(rid, headers.get("traceparent"), time.monotonic())
            return await self._infer(model, version, headers, receive, scope, inbound)
        if method not in ("GET", "HEAD"):
            return _json(405, {"error": f"method {method} is not allowed here; use GET"})
        self.identity.caller(scope["headers"], scope.get("client"))
        return await self._describe(action, model, self._reference(version, headers))

    async def _describe(self, action: str, model: str, reference: str | None) -> Reply:
        """The GET routes of one model: readiness, statistics, config or metadata."""
        if action == "ready":
            route = self.plane.table.route(model, reference, None)
            return _json(
                200, {"name": model, "ready": True}, [(b"x-model-version", route.version.encode())]
            )
        if action == "stats":
            return _json(200, await self.extensions.statistics(model, reference))
        if action == "config":
            served = await self.extensions.config(model, reference)
            reply = _json(200, served.doc)
            version, worker = served.version, served.worker
        else:
            reply, route, worker = await self.plane.get(model, reference, "")
            version = route.version
        reply.headers.extend(
            [(b"x-model-version", version.encode()), (b"x-backend", worker.encode())]
        )
        return reply

    async def _repository(
        self, method: str, rest: list[str], headers: dict[str, str], receive: Receive, scope: Scope
    ) -> Reply:
        """``index``, ``models/{m}[/versions/{v}]/load|unload``: POST, with an admin token."""
        target = _repository_target(rest)
        if target is None:
            return _json(404, {"error": f"no route for {method} /v2/repository/{'/'.join(rest)}"})
        model, version = target
        if method != "POST":
            return _json(405, {"error": f"method {method} is not allowed here; use POST"})
        grant = self.identity.admin(scope["headers"])
        body = await read_body(receive, REPOSITORY_BODY_BYTES, headers.get("content-length"))
        request = _repository_request(body)
        if model is None:
            return _json(200, self.repository.index(ready_only=request.ready))
        actor = f'by token "{grant.name}"'
        if rest[-1] == "load":
            done = await self.repository.load(model, version, request.parameters, actor=actor)
        else:
            done = await self.repository.unload(model, version, request.parameters, actor=actor)
        return _json(200, done)

    @staticmethod
    def _reference(path_version: str | None, headers: dict[str, str]) -> str | None:
        header = headers.get("x-model-version")
        if header is not None and path_version is not None and header.strip() != path_version:
            raise BadGatewayRequest(
                f'the version is given twice: "{path_version}" in the path and "{header}" in '
                f"X-Model-Version; send one"
            )
        return path_version if path_version is not None else header

    async def _infer(
        self,
        model: str,
        version: str | None,
        headers: dict[str, str],
        receive: Receive,
        scope: Scope,
        inbound: Inbound,
    ) -> Reply:
        """Read what the data plane needs, then let it serve (and count and log its own
        refusals)."""
        reference = version
        try:
            caller = self.identity.caller(scope["headers"], scope.get("client"))
            reference = self._reference(version, headers)
            limit = self.plane.settings.max_body_bytes
            body = await read_body(receive, limit, headers.get("content-length"))
        except ModelgateError as exc:
            self.plane.refused(model, exc, inbound, reference)
            raise
        return await self.plane.infer(model, reference, headers, body, caller, inbound=inbound)


def _repository_target(rest: list[str]) -> tuple[str | None, str | None] | None:
    """(model, version) of ``models/{m}[/versions/{v}]/load|unload``, (None, None) for
    ``index``, None for any other path under ``/v2/repository``."""
    if rest == ["index"]:
        return None, None
    if len(rest) not in (3, 5) or rest[0] != "models" or rest[-1] not in ("load", "unload"):
        return None
    if len(rest) == 5:
        return (rest[1], rest[3]) if rest[2] == "versions" else None
    return rest[1], None


def _repository_request(body: bytes) -> _RepositoryRequest:
    if not body.strip():
        return _RepositoryRequest()
    try:
        return msgspec.json.decode(body, type=_RepositoryRequest)
    except msgspec.MsgspecError as exc:
        raise BadGatewayRequest(f"invalid repository request body: {exc}") from None
    except RecursionError:
        raise BadGatewayRequest("invalid repository request body: nested too deeply") from None
