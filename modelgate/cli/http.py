"""How the admin subcommands talk to a gateway: one httpx client per command, and the
errors that end a command with its documented exit code.

The gateway and token come from ``--url``/``--token`` or ``MODELGATE_URL``/``MODELGATE_TOKEN``
(`ClientSettings`, the root context's ``obj``). Exit codes (`modelgate --help`): an answer
>= 400 is `ApiError` (1, except 401: `Unauthenticated`, 2), no answer at all `Unreachable` (2).
"""

from __future__ import annotations

from typing import Any

import click
import httpx
from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "ApiError",
    "ClientSettings",
    "Unauthenticated",
    "Unreachable",
    "api_call",
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


def _settings(ctx: click.Context) -> ClientSettings:
    settings: ClientSettings = ctx.find_root().obj
    return settings


def api_error(response: httpx.Response) -> ApiError:
    """The `ApiError` (or `Unauthenticated`) for an answer >= 400, with the API's ``error``."""
    try:
        body = response.json()
        message = body.get("error", response.text) if isinstance(body, dict) else response.text
    except ValueError:
        message = response.text
    kind = Unauthenticated if response.status_code == 401 else ApiError
    return kind(response.status_code, str(message))


def api_request(ctx: click.Context, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """Send one request; a transport failure raises `Unreachable`, an answer >= 400
    `ApiError` carrying the API's ``error`` text."""
    settings = _settings(ctx)
    with make_client(settings) as client:
        try:
            response = client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise Unreachable(f"cannot reach {settings.url}: {exc}") from None
    if response.status_code >= 400:
        raise api_error(response)
    return response


def api_call(ctx: click.Context, method: str, path: str, **kwargs: Any) -> Any:
    """`api_request`, returning the decoded JSON body (``None`` when empty)."""
    response = api_request(ctx, method, path, **kwargs)
    return response.json() if response.content else None
