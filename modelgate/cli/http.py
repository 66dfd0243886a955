"""How the admin subcommands talk to a gateway: one httpx client per command, errors as
``[status] message`` with a non-zero exit, and the ``-o json`` switch.

The gateway and token come from ``--url``/``--token`` or ``MODELGATE_URL``/``MODELGATE_TOKEN``
(`ClientSettings`, the root context's ``obj``); ``-o json`` sets ``ctx.meta["output"]``.
"""

from __future__ import annotations

import json
from typing import Any

import click
import httpx
from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "ApiError",
    "ClientSettings",
    "Unreachable",
    "api_call",
    "api_request",
    "client_settings",
    "emit_json",
    "make_client",
    "wants_json",
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

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"[{status}] {message}")
        self.status = status
        self.api_message = message


class Unreachable(click.ClickException):
    """The gateway did not answer (connection refused, timeout)."""


def _settings(ctx: click.Context) -> ClientSettings:
    settings: ClientSettings = ctx.find_root().obj
    return settings


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
        try:
            body = response.json()
            message = body.get("error", response.text) if isinstance(body, dict) else response.text
        except ValueError:
            message = response.text
        raise ApiError(response.status_code, str(message))
    return response


def api_call(ctx: click.Context, method: str, path: str, **kwargs: Any) -> Any:
    """`api_request`, returning the decoded JSON body (``None`` when empty)."""
    response = api_request(ctx, method, path, **kwargs)
    return response.json() if response.content else None


def wants_json(ctx: click.Context) -> bool:
    """Whether ``-o json`` was given anywhere on the command line."""
    return ctx.meta.get("output") == "json"


def emit_json(data: Any) -> None:
    """One JSON document on stdout (one line, so a stream of them is NDJSON)."""
    click.echo(json.dumps(data, default=str))
