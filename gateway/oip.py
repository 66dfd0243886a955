"""The Open Inference Protocol v2 surface of the gateway, as a bare ASGI app (the hot path).

Paths: ``/v2``, ``/v2/health/live|ready``, ``/v2/models/{m}[/versions/{v}][/ready|/infer]``
and ``/v2/infer`` (model and version from ``X-Model`` / ``X-Model-Version``). The version
segment may be an exact version, an alias, ``stable``, ``latest`` or a one-token constraint;
``X-Model-Version`` carries any constraint. Bodies are forwarded as bytes, never decoded.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import unquote

import msgspec

from gateway.control.health import Health
from gateway.dataplane import GatewayDataPlane
from gateway.errors import BadGatewayRequest
from gateway.forward import Reply
from gateway.identity import Identity
from modelgate.core.asgi import read_body
from modelgate.core.errors import ModelgateError

__all__ = ["OipApp"]

log = logging.getLogger("modelgate.gateway")
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
JSON = [(b"content-type", b"application/json")]
_encode = msgspec.json.encode
SERVER = {
    "name": "modelgate",
    "version": "0.1.0",
    "extensions": ["binary_tensor_data", "model_version_constraints"],
}


def _json(status: int, doc: Any, extra: list[tuple[bytes, bytes]] | None = None) -> Reply:
    return Reply(status, [*JSON, *(extra or [])], _encode(doc))


def _error(exc: ModelgateError) -> Reply:
    extra = [(k.lower().encode(), v.encode()) for k, v in (exc.headers or {}).items()]
    return _json(exc.status_code, {"error": exc.message}, extra)


class OipApp:
    """Parses only what routing needs (path, a few headers), then calls the data plane."""

    def __init__(self, plane: GatewayDataPlane, health: Health, identity: Identity) -> None:
        self.plane = plane
        self.health = health
        #: Every ``/v2/models`` and ``/v2/infer`` request is identified (401/403 first).
        self.identity = identity

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            reply = await self._dispatch(scope, receive)
        except ModelgateError as exc:
            reply = _error(exc)
        except Exception:
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            reply = _json(500, {"error": "internal error; see the gateway log"})
        headers = [*reply.headers, (b"content-length", str(len(reply.body)).encode())]
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": reply.body})

    async def _dispatch(self, scope: Scope, receive: Receive) -> Reply:
        method: str = scope["method"]
        raw = scope.get("raw_path")
        path = raw.decode("latin-1").split("?", 1)[0] if raw else scope["path"]
        parts = [unquote(p) for p in path.strip("/").split("/")]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if parts == ["v2"] and method in ("GET", "HEAD"):
            return _json(200, SERVER)
        if parts[:2] == ["v2", "health"] and len(parts) == 3 and method in ("GET", "HEAD"):
            return self._health(parts[2])
        if parts == ["v2", "infer"] and method == "POST":
            model = headers.get("x-model")
            if not model:
                exc = BadGatewayRequest(
                    "POST /v2/infer needs the header X-Model (and optionally X-Model-Version)"
                )
                self.plane.refused(None, exc)
                raise exc
            return await self._infer(model, None, headers, receive, scope)
        if len(parts) >= 3 and parts[:2] == ["v2", "models"]:
            return await self._model(method, parts[2:], headers, receive, scope)
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
        self, method: str, rest: list[str], headers: dict[str, str], receive: Receive, scope: Scope
    ) -> Reply:
        model, version, action = rest[0], None, ""
        tail = rest[1:]
        if len(tail) >= 2 and tail[0] == "versions":
            version, tail = tail[1], tail[2:]
        if len(tail) == 1 and tail[0] in ("ready", "infer"):
            action = tail[0]
        elif tail:
            return _json(404, {"error": f"no route for {method} /v2/models/{'/'.join(rest)}"})
        if action == "infer":
            if method != "POST":
                return _json(
                    405, {"error": f"method {method} is not allowed on .../infer; use POST"}
                )
            return await self._infer(model, version, headers, receive, scope)
        if method not in ("GET", "HEAD"):
            return _json(405, {"error": f"method {method} is not allowed here; use GET"})
        self.identity.caller(scope["headers"], scope.get("client"))
        reference = self._reference(version, headers)
        if action == "ready":
            route = self.plane.table.route(model, reference, None)
            return _json(
                200, {"name": model, "ready": True}, [(b"x-model-version", route.version.encode())]
            )
        reply, route, worker = await self.plane.get(model, reference, "")
        reply.headers.extend(
            [(b"x-model-version", route.version.encode()), (b"x-backend", worker.encode())]
        )
        return reply

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
    ) -> Reply:
        """Read what the data plane needs, then let it serve (and count its own refusals)."""
        try:
            caller = self.identity.caller(scope["headers"], scope.get("client"))
            reference = self._reference(version, headers)
            limit = self.plane.settings.max_body_bytes
            body = await read_body(receive, limit, headers.get("content-length"))
        except ModelgateError as exc:
            self.plane.refused(model, exc)
            raise
        return await self.plane.infer(model, reference, headers, body, caller)
