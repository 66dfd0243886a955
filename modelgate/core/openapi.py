"""The OpenAPI document as the server really behaves: one error schema, and every status a
route answers, taken from the errors the route declares it raises.

A route declares its errors in its Litestar ``opt`` under `RAISES`: a sequence of error
classes (`ModelgateError` subclasses, or Litestar's own exceptions such as
``ValidationException``), each with its ``status_code`` and, where it has them, its
``headers`` (``Retry-After``, ``WWW-Authenticate``). Any layer may declare: a router for
every route under it (authentication, the database), a controller for its routes, a
handler for itself; a route raises the union of its layers' declarations.

`Document` completes Litestar's generated document: it drops the error responses Litestar
made up (``{status_code, detail, extra}``), adds the declared ones, each ``{"error": ...}``
(`ERROR_SCHEMA`, the one body `modelgate.core.rendering` renders), adds a request body a
handler declares under `REQUEST_BODY` (for handlers that read their body themselves), and
merges paths served outside Litestar (the bare-ASGI data plane).
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from litestar import Litestar
from litestar.exceptions import HTTPException
from litestar.handlers import HTTPRouteHandler
from litestar.routes import HTTPRoute

from modelgate.core.errors import ModelgateError

__all__ = [
    "ERROR",
    "ERROR_SCHEMA",
    "RAISES",
    "REQUEST_BODY",
    "Answer",
    "Document",
    "Raisable",
    "Spec",
    "declared",
    "error_responses",
    "header",
    "json_body",
]

#: The ``opt`` key under which a layer lists the error classes its routes raise.
RAISES = "raises"
#: The ``opt`` key of a request body (an OpenAPI Request Body object) a handler reads itself.
REQUEST_BODY = "request_body"
#: The component name of the error body.
ERROR = "Error"
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Every error: one sentence naming the offending value and what would do.",
    "required": ["error"],
    "properties": {"error": {"type": "string", "minLength": 1}},
    "additionalProperties": False,
}
ERROR_REF = {"$ref": f"#/components/schemas/{ERROR}"}


@dataclass(frozen=True)
class Answer:
    """A status a route answers that no error class of its own stands for (an upstream
    answer passed through), with the headers it may carry."""

    status_code: int
    description: str
    headers: Mapping[str, str] | None = None


Raisable = type[ModelgateError] | type[HTTPException] | Answer
#: An OpenAPI fragment as plain JSON data.
Spec = dict[str, Any]

#: Response headers an error class may carry, as documented.
_HEADERS: dict[str, Spec] = {
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    },
    "WWW-Authenticate": {
        "description": "The scheme to authenticate with: ``Bearer``.",
        "schema": {"type": "string"},
    },
}


def header(description: str, schema: Spec | None = None) -> Spec:
    """An OpenAPI Header object."""
    return {"description": description, "schema": schema or {"type": "string"}}


def json_body(schema: Spec, description: str = "") -> Spec:
    """An OpenAPI Response object with a JSON body of ``schema``."""
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _summary(cls: Raisable) -> str:
    """``Name: first paragraph of its docstring`` (the name alone when it has none of its own)."""
    if isinstance(cls, Answer):
        return cls.description
    own = vars(cls).get("__doc__")
    if not own:
        return cls.__name__
    first = inspect.cleandoc(own).split("\n\n")[0].replace("\n", " ").split(". ")[0]
    return f"{cls.__name__}: {first.rstrip('.')}"


def error_responses(errors: Iterable[Raisable]) -> dict[str, Spec]:
    """OpenAPI responses for ``errors``, one per status: the `ERROR` body, a description
    naming each error class, and the headers any of them sends."""
    by_status: dict[int, list[Raisable]] = {}
    for cls in errors:
        group = by_status.setdefault(int(cls.status_code), [])
        if cls not in group:
            group.append(cls)
    out: dict[str, Spec] = {}
    for status in sorted(by_status):
        group = by_status[status]
        response = json_body(ERROR_REF, "; ".join(_summary(cls) for cls in group))
        sent = [set(_class_headers(cls) or {}) for cls in group]
        names = sorted(set().union(*sent))
        if names:
            # NOTE: required when every error of the status sends it.
            response["headers"] = {
                name: {
                    **_HEADERS.get(name, header(name)),
                    "required": all(name in one for one in sent),
                }
                for name in names
            }
        out[str(status)] = response
    return out


def _class_headers(cls: Raisable) -> Mapping[str, str] | None:
    headers = getattr(cls, "headers", None)
    return headers if isinstance(headers, Mapping) else None


def _share_headers(responses: dict[str, Spec], main: str) -> None:
    """Every 2xx answer of a handler carries its response headers, not only the default one
    Litestar documents them on (``PUT`` of an alias: 200 moved, 201 created)."""
    headers = responses.get(main, {}).get("headers")
    if headers:
        for code, response in responses.items():
            if code.startswith("2"):
                response.setdefault("headers", headers)


def declared(handler: HTTPRouteHandler) -> list[Raisable]:
    """The errors ``handler`` raises: the union of what each of its layers declares."""
    out: list[Raisable] = []
    for layer in handler.ownership_layers:
        for cls in (getattr(layer, "opt", None) or {}).get(RAISES, ()):
            if cls not in out:
                out.append(cls)
    return out


@dataclass
class Document:
    """Completes a generated document once (see the module's docstring); ``paths`` and
    ``components`` (schemas by name) are added as given, for routes Litestar does not see."""

    paths: Callable[[], Mapping[str, Spec]] = dict
    components: Callable[[], Mapping[str, Spec]] = dict
    tags: Sequence[Spec] = ()
    _done: tuple[int, Spec] | None = field(default=None, init=False, repr=False)

    def __call__(self, app: Litestar, generated: Spec) -> Spec:
        if self._done is not None and self._done[0] == id(generated):
            return self._done[1]
        schema = copy.deepcopy(generated)
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas[ERROR] = ERROR_SCHEMA
        for route in app.routes:
            if isinstance(route, HTTPRoute):
                self._route(schema["paths"], route)
        schemas.update(self.components())
        schema["paths"].update(self.paths())
        schema["tags"] = [*schema.get("tags", []), *self.tags]
        self._done = (id(generated), schema)
        return schema

    @staticmethod
    def _route(paths: dict[str, Spec], route: HTTPRoute) -> None:
        item = paths.get(route.path_format or "/")
        if item is None:
            return
        for handler in route.route_handlers:
            for method in handler.http_methods:
                operation = item.get(method.lower())
                if operation is None:
                    continue
                responses = {
                    code: response
                    for code, response in operation.get("responses", {}).items()
                    if int(code) < 400
                }
                _share_headers(responses, str(handler.status_code))
                responses.update(error_responses(declared(handler)))
                operation["responses"] = responses
                body = handler.opt.get(REQUEST_BODY)
                if body is not None:
                    operation["requestBody"] = body
