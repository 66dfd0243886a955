"""The dashboard's routes: ``/`` → ``/ui``, the page, its assets, and its state document.

The page and its assets (``gateway/dashboard/static``: HTML, CSS and JavaScript written for
it, no framework) are public and carry a Content-Security-Policy that lets the page load
and call nothing but this gateway. The state (``GET /ui/api/state``) needs a ``read`` token,
checked by the admin API's own guard (`registry.api.deps.require_scope`); the page's
actions call the admin API itself, which checks its own scopes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar import HttpMethod, MediaType, Request, Response, Router, get, route
from litestar.datastructures import CacheControlHeader
from litestar.response import Redirect
from litestar.static_files import create_static_files_router

from gateway.dashboard.state import DashboardState
from registry.api.deps import require_scope
from registry.tokens import Principal

__all__ = ["STATIC", "dashboard_routers"]

HERE = Path(__file__).parent
STATIC = HERE / "static"
#: The page may load and call only this origin; no inline script, no frames.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _state(request: Request[Any, Any, Any]) -> DashboardState:
    state: DashboardState = request.app.state.dashboard
    return state


@get("/", include_in_schema=False)
async def root() -> Redirect:
    return Redirect(path="/ui", status_code=302)


@route(
    "/ui",
    http_method=[HttpMethod.GET, HttpMethod.HEAD],
    include_in_schema=False,
    media_type=MediaType.HTML,
)
async def page(request: Request[Any, Any, Any]) -> Response[bytes]:
    """The page; ``HEAD`` (a monitor's or a proxy's check) answers as ``GET``, without a body."""
    # NOTE: read per request (a few kB): an edited asset shows without a restart.
    body = (HERE / "index.html").read_bytes()
    if request.method == HttpMethod.HEAD:
        headers = {**PAGE_HEADERS, "Content-Length": str(len(body))}
        return Response(b"", headers=headers)
    return Response(body, headers=PAGE_HEADERS)


@get("/ui/api/state", include_in_schema=False, guards=[require_scope], opt={"scope": "read"})
async def state(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    """The state document (`gateway.dashboard.state`), never cached."""
    principal: Principal = request.state.principal
    doc = await _state(request).build(principal)
    return Response(doc, headers={"Cache-Control": "no-store"})


def dashboard_routers() -> list[Any]:
    """The handlers and the assets router, for the app's ``route_handlers``."""
    assets = create_static_files_router(
        path="/ui/assets",
        directories=[STATIC],
        include_in_schema=False,
        cache_control=CacheControlHeader(no_cache=True),
        send_as_attachment=False,
    )
    return [Router(path="/", route_handlers=[root, page, state]), assets]
