"""The worker's Litestar app: Open Inference Protocol v2 REST, Triton's config and
statistics extensions (`backends.extensions`), repository load/unload (guarded by
`backends.control`), Prometheus ``/metrics``. Handlers parse and render; ``DataPlane``
does the work. A version comes from the path or ``X-Model-Version`` and must be an exact
loaded one (`DataPlane.get`).

NOTE: infer reads the raw body and never looks at ``Content-Type`` (tritonclient sends
none), and answers 200 (tritonclient treats anything else, even 201, as a failure).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping, Sequence
from typing import Any, Protocol, cast

import msgspec
from litestar import Litestar, Request, Response, get, post
from litestar.datastructures import State
from litestar.params import FromPath

from backends._http import plane_of as _plane
from backends._http import version_of
from backends.codec import HEADER_LENGTH
from backends.control import ControlAccess, control_guard
from backends.dataplane import DataPlane
from backends.errors import InflatedTooLarge, InvalidRequest
from backends.extensions import ROUTES as TRITON_ROUTES
from backends.limits import MAX_JSON_DEPTH, check_json_depth, shown
from backends.observe import Served
from backends.oip import ModelMetadata, ServerMetadata
from backends.startup import LoadWait, load_waiting
from backends.versions import requested_version
from modelgate.core.asgi import read_body
from modelgate.core.errors import ModelgateError
from modelgate.core.rendering import exception_handlers

__all__ = ["Service", "WorkerApp", "create_worker_app"]

log = logging.getLogger("modelgate.worker")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

_JSON = b"application/json"
_BINARY = b"application/octet-stream"


class Service(Protocol):
    """Something that runs beside the app (e.g. the announcer): started and stopped with it."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def _decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """Undo ``Content-Encoding: gzip|deflate`` (tritonclient's request compression).

    NOTE: inflating stops one byte past ``limit``, so a small body that would inflate to
    gigabytes (a zip bomb) costs at most the limit in memory before it is refused.
    """
    name = (encoding or "").strip(" \t").lower()
    if name in ("", "identity"):
        return body
    wbits = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}.get(name)
    if wbits is None:
        raise InvalidRequest(
            f'unsupported Content-Encoding "{shown(encoding or "")}" (use gzip or deflate)'
        )
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InvalidRequest(f"body is not valid {name} data: {exc}") from None
    if len(out) > limit:
        raise InflatedTooLarge(name, limit)
    if not inflater.eof or inflater.unused_data:
        where = "ends early" if not inflater.eof else "has data after its end"
        raise InvalidRequest(f"the {name} body {where} ({len(body)} bytes received)")
    return out


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            text: str = value.decode("latin-1")
            return text
    return None


def _ids(scope: Scope) -> tuple[str | None, str | None]:
    """The request's ``X-Request-Id`` and ``traceparent``, in one pass over the headers."""
    sent_id = traceparent = None
    for key, value in scope["headers"]:
        name = key.lower()
        if name == b"x-request-id":
            sent_id = value.decode("latin-1")
        elif name == b"traceparent":
            traceparent = value.decode("latin-1")
    return sent_id, traceparent


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    body = await read_body(receive, limit, _header(scope, b"content-length"))
    return _decompress(body, _header(scope, b"content-encoding"), limit)


_INFER_PATH = re.compile(r"/v2/models/([^/]+)(?:/versions/([^/]+))?/infer")


async def _send(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _infer(plane: DataPlane, scope: Scope, receive: Receive, send: Send,
                 model: str, version: str | None) -> None:  # fmt: skip
    sent_id, traceparent = _ids(scope)
    served = Served.start(plane.tracer, sent_id, traceparent, "http", model)
    arrived = time.perf_counter()
    try:
        version = requested_version(version, _header(scope, b"x-model-version"))
        body = await _read_body(scope, receive, plane.options.max_body_bytes)
    except ModelgateError as exc:  # refused before the data plane: logged here
        served.finish(model, exc.status_code, time.perf_counter() - arrived)
        raise
    out = await plane.infer(model, version, body, _header(scope, HEADER_LENGTH.encode()), served)
    headers = [(b"x-model-version", out.version.encode()),
               (b"x-backend", plane.options.worker_id.encode()),
               (b"x-request-id", served.request_id.encode())]  # fmt: skip
    if out.header_length is None:
        headers.append((b"content-type", _JSON))
    else:
        headers.append((b"content-type", _BINARY))
        headers.append((b"inference-header-content-length", str(out.header_length).encode()))
    await _send(send, 200, out.body, headers)


class WorkerApp:
    """The worker's ASGI entry point: ``POST .../infer`` goes straight to the data plane,
    everything else (and the lifespan) to the Litestar app.

    NOTE: the infer hot path skips Litestar's routing, request/response objects and
    signature parsing, about a fifth of the worker's per-request CPU in a profile (a
    Litestar ``@asgi`` handler cannot take path parameters in 2.25). Errors render as
    ``{"error": ...}`` with the same statuses and headers as the exception handlers give.
    """

    def __init__(self, litestar: Litestar, plane: DataPlane) -> None:
        self.litestar = litestar
        self.plane = plane
        self.state = litestar.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            match = _INFER_PATH.fullmatch(scope["path"])
            if match is not None:
                await self._infer(scope, receive, send, match[1], match[2])
                return
        await cast(Any, self.litestar)(scope, receive, send)

    async def _infer(self, scope: Scope, receive: Receive, send: Send,
                     model: str, version: str | None) -> None:  # fmt: skip
        try:
            await _infer(self.plane, scope, receive, send, model, version)
        except ModelgateError as exc:
            headers = [(k.lower().encode(), v.encode()) for k, v in (exc.headers or {}).items()]
            error = msgspec.json.encode({"error": exc.message})
            await _send(send, exc.status_code, error, [(b"content-type", _JSON), *headers])
        except Exception:
            log.exception("unhandled error on POST %s", scope["path"])
            error = b'{"error":"internal error; see the server log"}'
            await _send(send, 500, error, [(b"content-type", _JSON)])


@get("/v2")
async def server_metadata(request: Request[Any, Any, Any]) -> ServerMetadata:
    return _plane(request).server_metadata()


@get("/v2/health/live")
async def server_live(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    live = _plane(request).live
    if live:
        return Response({"live": True})
    return Response({"error": "worker has stopped"}, status_code=503)


@get("/v2/health/ready")
async def server_ready(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    plane = _plane(request)
    if plane.ready:
        return Response({"ready": True})
    return Response(
        {"error": f"worker is not ready (it is {plane.state})"},
        status_code=503,
        headers={"Retry-After": "1"},
    )


@get("/v2/models/{model:str}")
async def model_metadata(request: Request[Any, Any, Any], model: FromPath[str]) -> ModelMetadata:
    return _plane(request).model_metadata(model, version_of(request, None))


@get("/v2/models/{model:str}/versions/{version:str}")
async def model_version_metadata(
    request: Request[Any, Any, Any], model: FromPath[str], version: FromPath[str]
) -> ModelMetadata:
    return _plane(request).model_metadata(model, version_of(request, version))


def _ready(request: Request[Any, Any, Any], model: str, version: str | None) -> dict[str, Any]:
    found = _plane(request).model_ready(model, version_of(request, version))
    return {"name": found.model, "version": found.version, "ready": True}


@get("/v2/models/{model:str}/ready")
async def model_ready(request: Request[Any, Any, Any], model: FromPath[str]) -> dict[str, Any]:
    return _ready(request, model, None)


@get("/v2/models/{model:str}/versions/{version:str}/ready")
async def model_version_ready(
    request: Request[Any, Any, Any], model: FromPath[str], version: FromPath[str]
) -> dict[str, Any]:
    return _ready(request, model, version)


_CONTROL = [control_guard]


class _RepositoryRequest(msgspec.Struct):
    parameters: dict[str, Any] = msgspec.field(default_factory=dict)


async def _repository_version(request: Request[Any, Any, Any]) -> str | None:
    body = await request.body()
    if not body.strip():
        return None
    check_json_depth(body, len(body), MAX_JSON_DEPTH)
    try:
        parsed = msgspec.json.decode(body, type=_RepositoryRequest)
    except msgspec.MsgspecError as exc:
        raise InvalidRequest(f"invalid repository request: {exc}") from None
    version = parsed.parameters.get("version")
    if version is not None and not isinstance(version, str):
        raise InvalidRequest(f'parameter "version" must be a string, not {shown(repr(version))}')
    return version


@post("/v2/repository/index", status_code=200)
async def repository_index(request: Request[Any, Any, Any]) -> list[dict[str, Any]]:
    return [
        {"name": v.model, "version": v.version, "state": v.state.upper()}
        for v in _plane(request).loaded()
    ]


async def _load(request: Request[Any, Any, Any], model: str, version: str | None) -> dict[str, Any]:
    version = version or await _repository_version(request)
    if version is None:
        raise InvalidRequest(
            'load needs a version: POST .../versions/{v}/load or {"parameters": {"version": v}}'
        )
    loaded = await _plane(request).load(model, version)
    return {"name": loaded.model, "version": loaded.version, "state": loaded.state.upper()}


async def _unload(
    request: Request[Any, Any, Any], model: str, version: str | None
) -> dict[str, Any]:
    version = version or await _repository_version(request)
    unloaded = await _plane(request).unload(model, version)
    return {"name": model, "unloaded": unloaded}


@post("/v2/repository/models/{model:str}/load", status_code=200, guards=_CONTROL)
async def repository_load(request: Request[Any, Any, Any], model: FromPath[str]) -> dict[str, Any]:
    """Load ``model`` at the version given as ``{"parameters": {"version": ...}}``."""
    return await _load(request, model, None)


@post(
    "/v2/repository/models/{model:str}/versions/{version:str}/load",
    status_code=200,
    guards=_CONTROL,
)
async def repository_load_version(
    request: Request[Any, Any, Any], model: FromPath[str], version: FromPath[str]
) -> dict[str, Any]:
    return await _load(request, model, version)


@post("/v2/repository/models/{model:str}/unload", status_code=200, guards=_CONTROL)
async def repository_unload(
    request: Request[Any, Any, Any], model: FromPath[str]
) -> dict[str, Any]:
    """Unload the version in the body's parameters, or every loaded version of ``model``."""
    return await _unload(request, model, None)


@post(
    "/v2/repository/models/{model:str}/versions/{version:str}/unload",
    status_code=200,
    guards=_CONTROL,
)
async def repository_unload_version(
    request: Request[Any, Any, Any], model: FromPath[str], version: FromPath[str]
) -> dict[str, Any]:
    return await _unload(request, model, version)


@get("/metrics")
async def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    sink = _plane(request).metrics
    # NOTE: the header whole: Litestar appends a charset to a text/* media_type (gateway.app).
    return Response(sink.render(), headers={"Content-Type": sink.content_type})


def create_worker_app(
    plane: DataPlane,
    *,
    startup_loads: Sequence[tuple[str, str]] = (),
    services: Sequence[Service] = (),
    on_fatal: Callable[[BaseException], None] | None = None,
    control: ControlAccess | None = None,
    load_wait: LoadWait | None = None,
) -> WorkerApp:
    """The worker app around ``plane``.

    ``control`` guards the load and unload routes (`backends.control`); without one they
    are refused.

    At start-up the app serves at once (live) and loads ``startup_loads`` in the
    background; it reports ready when all are loaded and warm. A failed start-up load
    calls ``on_fatal`` (the CLI exits non-zero); with ``load_wait``, a version not published
    yet is waited for first (`backends.startup`). ``services`` start after the app and stop
    before the plane closes, so the last announcement says "stopped".
    """

    async def load_all() -> None:
        for model, version in startup_loads:
            try:
                await load_waiting(plane, model, version, load_wait or LoadWait())
            except Exception as exc:
                log.error("cannot load %s@%s: %s", model, version, exc)
                if on_fatal is not None:
                    on_fatal(exc)
                return
        plane.mark_started()

    @contextlib.asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        loader = asyncio.create_task(load_all(), name="startup loads")
        for service in services:
            await service.start()
        try:
            yield
        finally:
            loader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loader
            await plane.close()
            for service in reversed(services):
                await service.stop()

    handlers: dict[int | type[Exception], Any] = {}
    handlers.update(exception_handlers.items())
    litestar = Litestar(
        route_handlers=[
            server_metadata,
            server_live,
            server_ready,
            model_metadata,
            model_version_metadata,
            model_ready,
            model_version_ready,
            repository_index,
            repository_load,
            repository_load_version,
            repository_unload,
            repository_unload_version,
            metrics,
            *TRITON_ROUTES,
        ],
        state=State({"plane": plane, "control": control or ControlAccess()}),
        lifespan=[lifespan],
        exception_handlers=handlers,
        request_max_body_size=plane.options.max_body_bytes,
        openapi_config=None,
        logging_config=None,
        debug=False,
    )
    return WorkerApp(litestar, plane)
