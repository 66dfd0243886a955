"""The OpenAPI endpoints: ``/schema`` (and ``/schema/swagger``) is Swagger UI, with its
scripts, style sheet and icon served by the app itself from the ``swagger-ui-bundle-v2``
package under ``/schema/assets``, so the page works with no network; ``/schema/openapi.json``
is the document. Both render the document as `modelgate.core.openapi.Document` completes it.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Router
from litestar.datastructures import CacheControlHeader
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.static_files import create_static_files_router
from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]

from modelgate.core.openapi import Document

__all__ = ["ASSETS", "assets_router", "openapi_config"]

SCHEMA = "/schema"
#: Where the Swagger UI files are served (the package's own folder, read-only).
ASSETS = f"{SCHEMA}/assets"
# NOTE: Swagger UI 5 is the first to read OpenAPI 3.1, the version Litestar writes.
FAVICON = f"<link rel='icon' type='image/png' href='{ASSETS}/favicon-32x32.png'>"


class _JsonPlugin(JsonRenderPlugin):
    def __init__(self, document: Document) -> None:
        super().__init__()
        self.document = document

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return super().render(request, self.document(request.app, openapi_schema))


class _SwaggerPlugin(SwaggerRenderPlugin):
    def __init__(self, document: Document) -> None:
        super().__init__(
            path=["/swagger"],
            js_url=f"{ASSETS}/swagger-ui-bundle.js",
            css_url=f"{ASSETS}/swagger-ui.css",
            standalone_preset_js_url=f"{ASSETS}/swagger-ui-standalone-preset.js",
            favicon=FAVICON,
        )
        self.document = document

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return super().render(request, self.document(request.app, openapi_schema))


def openapi_config(title: str, version: str, document: Document) -> OpenAPIConfig:
    """``/schema`` as described above; the admin API's bearer tokens are its one scheme."""
    return OpenAPIConfig(
        title=title,
        version=version,
        path=SCHEMA,
        components=Components(
            security_schemes={"bearer": SecurityScheme(type="http", scheme="bearer")}
        ),
        render_plugins=[_SwaggerPlugin(document), _JsonPlugin(document)],
    )


def assets_router() -> Router:
    """The Swagger UI files, cached for a day (they change only with the package)."""
    return create_static_files_router(
        path=ASSETS,
        directories=[swagger_ui_path],
        include_in_schema=False,
        cache_control=CacheControlHeader(max_age=86400),
        send_as_attachment=False,
    )
