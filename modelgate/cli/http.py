"""How the admin subcommands talk to a gateway: one httpx client per command, and the
errors that end a command with its documented exit code.

The gateway and token come from ``--url``/``--token`` or ``MODELGATE_URL``/``MODELGATE_TOKEN``
(`ClientSettings`, the root context's ``obj``). Exit codes (`modelgate --help`): an answer
>= 400 is `ApiError` (1, except 401: `Unauthenticated`, 2), no answer at all `Unreachable` (2),
an answer that is not the admin API's (a redirect, a body that is not JSON: ``--url`` names
something else) `NotTheGateway` (2).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import click
import httpx
from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "ApiError",
    "ClientSettings",
    "NotTheGateway",
    "Unauthenticated",
    "Unreachable",
    "admin_path",
    "api_call",
    "api_path",
    "api_request",
    "client_settings",
    "make_client",
]


class ClientSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    url: str = Field(
        default="http://127.0.0.1:8000", validation_alias=AliasChoices("MODELGATE_URL", "url")
    )
    token: str | None = Field(
        default=None, validation_alias=AliasChoices("MODELGATE_TOKEN", "token")
    )


def client_settings(url: str | None, token: str | None) -> ClientSettings:
    """``--url``/``--token`` of the top-level command over the environment's values."""
    overrides = {k: v for k, v in {"url": url, "token": token}.items() if v is not None}
    return ClientSettings().model_copy(update=overrides)


def make_client(settings: ClientSettings) -> httpx.Client:
    """The client every admin command uses (tests replace this to interpose on requests)."""
    headers = {"Authorization": f"Bearer {settings.token}"} if settings.token else {}
    return httpx.Client(base_url=settings.url, headers=headers, timeout=60)


class ApiError(click.ClickException):
    """An answer >= 400: shown as ``[status] message``, exit code 1; ``status`` kept."""

    exit_code = 1

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"[{status}] {message}")
        self.status = status
        self.api_message = message


class Unauthenticated(ApiError):
    """A 401 (no token, or one the gateway does not know): exit code 2, like a wrong URL,
    since no retry helps until the command's ``--token``/``MODELGATE_TOKEN`` is fixed."""

    exit_code = 2

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, f"{message} (give --token or set MODELGATE_TOKEN)")


class Unreachable(click.ClickException):
    """The gateway did not answer (a bad URL, connection refused, a timeout): exit code 2."""

    exit_code = 2


class NotTheGateway(click.ClickException):
    """An answer that no modelgate admin API gives (a 3xx, a body that is not JSON): ``--url``
    points at something else (a proxy's redirect, a web server); exit code 2, like a wrong URL."""

    exit_code = 2


def api_path(base: str, *segments: str) -> str:
    """``base`` with each of ``segments`` appended as one path segment, quoted: a name such as
    ``../tokens`` or ``x/`` stays one segment and never changes which route is asked."""
    return base + "".join("/" + _segment(segment) for segment in segments)


def _segment(text: str) -> str:
    # NOTE: "." and ".." would be resolved away by the client, so their dots are escaped too.
    quoted = quote(text, safe="")
    return quoted.replace(".", "%2E") if text in (".", "..") else quoted


def admin_path(*segments: str) -> str:
    """``/admin/v1/...`` of ``segments`` (`api_path`): ``admin_path("models", m)``."""
    return api_path("/admin/v1", *segments)


def _settings(ctx: click.Context) -> ClientSettings:
    settings: ClientSettings = ctx.find_root().obj
    return settings


def _content_type(response: httpx.Response) -> str:
    kind: str = response.headers.get("content-type", "no content type")
    return kind.split(";")[0].strip()


def _json(response: httpx.Response, url: str) -> Any:
    """The decoded JSON body, or `NotTheGateway` when it is not JSON."""
    kind = _content_type(response)
    try:
        if "json" not in kind:
            raise ValueError(kind)
        return response.json()
    except ValueError:
        status = "" if response.is_success else f"{response.status_code} "
        raise NotTheGateway(
            f"{url} is not a modelgate admin API (it answered {status}{kind})"
        ) from None


def api_error(response: httpx.Response, url: str) -> ApiError:
    """The `ApiError` (or `Unauthenticated`) for an answer >= 400, with the API's ``error``;
    `NotTheGateway` when its body is not JSON (a web server's error page)."""
    body = _json(response, url)
    message = body.get("error", response.text) if isinstance(body, dict) else response.text
    kind = Unauthenticated if response.status_code == 401 else ApiError
    return kind(response.status_code, str(message))


def api_request(ctx: click.Context, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """Send one request (``kwargs`` as httpx takes them: ``json``, ``content``, ``timeout``);
    a transport failure raises `Unreachable`, an answer >= 400 `ApiError` carrying the
    API's ``error`` text, any other answer that is not 2xx (a redirect) `NotTheGateway`."""
    settings = _settings(ctx)
    with make_client(settings) as client:
        try:
            response = client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise Unreachable(f"cannot reach {settings.url}: {exc}") from None
    if response.status_code >= 400:
        raise api_error(response, settings.url)
    if not response.is_success:
        location = response.headers.get("location")
        where = "nowhere" if location is None else str(response.request.url.join(location))
        raise NotTheGateway(
            f"{response.request.url} answered {response.status_code} to {where}: "
            "point --url at the gateway itself"
        )
    return response


def api_call(ctx: click.Context, method: str, path: str, **kwargs: Any) -> Any:
    """`api_request`, returning the decoded JSON body (``None`` when empty); a body that is
    not JSON raises `NotTheGateway`."""
    response = api_request(ctx, method, path, **kwargs)
    return _json(response, _settings(ctx).url) if response.content else None
