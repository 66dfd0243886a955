"""The one renderer of errors: every failure leaves as ``{"error": "..."}`` with its status.

It covers modelgate's own errors, Litestar's (404, 405, validation, body too large) and
anything unexpected (500, logged with its traceback, never shown to the client).
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, NotFoundException, ValidationException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.types import ExceptionHandlersMap

from modelgate.core.errors import ModelgateError

__all__ = ["error_response", "exception_handlers"]

log = logging.getLogger("modelgate.errors")


def error_response(
    message: str, status_code: int, headers: dict[str, str] | None = None
) -> Response[dict[str, str]]:
    return Response(
        {"error": message}, status_code=status_code, headers=headers, media_type=MediaType.JSON
    )


def _validation_message(exc: ValidationException) -> str:
    extra = exc.extra if isinstance(exc.extra, list) else []
    parts = []
    for item in extra:
        if isinstance(item, dict):
            key = item.get("key")
            text = item.get("message", "")
            parts.append(f"{key}: {text}" if key else str(text))
    detail = "; ".join(p for p in parts if p)
    return f"invalid request: {detail}" if detail else f"invalid request: {exc.detail}"


def _modelgate(_: Request[Any, Any, Any], exc: ModelgateError) -> Response[dict[str, str]]:
    return error_response(exc.message, exc.status_code, exc.headers)


def _http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, str]]:
    if isinstance(exc, ValidationException):
        return error_response(_validation_message(exc), 400)
    if isinstance(exc, RequestEntityTooLarge):
        limit = request.route_handler.resolve_request_max_body_size()
        return error_response(f"request body is larger than the limit of {limit} bytes", 413)
    if exc.status_code == 405:
        return error_response(f"method {request.method} is not allowed on {request.url.path}", 405)
    if exc.status_code == 404 and isinstance(exc, NotFoundException):
        return error_response(f"no route for {request.method} {request.url.path}", 404)
    return error_response(str(exc.detail), exc.status_code, exc.headers)


def _json(_: Request[Any, Any, Any], exc: msgspec.DecodeError) -> Response[dict[str, str]]:
    return error_response(f"invalid JSON body: {exc}", 400)


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, str]]:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response("internal error; see the server log", 500)


exception_handlers: ExceptionHandlersMap = {
    ModelgateError: _modelgate,
    HTTPException: _http,
    msgspec.DecodeError: _json,
    Exception: _unexpected,
}
