"""``modelgate tokens`` and ``modelgate audit``.

``tokens create`` writes the database directly (it makes the first admin token, before any
gateway can be called); ``tokens list|revoke`` and ``audit`` use the admin API and need an
admin token. No command ever shows a secret but the one ``tokens create`` just made.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import click
import msgspec

from modelgate.cli.http import admin_path, api_call
from modelgate.cli.output import Column, emit_json, show, table, wants_json
from registry.errors import InvalidInput
from registry.limits import TOKEN_NAME_MAX, check_text
from registry.settings import RegistrySettings

__all__ = ["audit", "tokens"]


def _token_name(name: str) -> str:
    try:
        check_text("token name", name, TOKEN_NAME_MAX)
    except InvalidInput as exc:
        raise click.BadParameter(exc.message) from None
    return name


@click.group()
def tokens() -> None:
    """API tokens: create (direct database access, for the first admin token), list and
    revoke (admin API, admin token)."""


@tokens.command("create")
@click.option(
    "--name",
    required=True,
    callback=lambda _ctx, _param, value: _token_name(value),
    help=f"a name for the token (audit actor token:<name>; at most {TOKEN_NAME_MAX} characters)",
)
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    type=click.Choice(["read", "publish", "admin", "infer"]),
    help="repeatable: read, publish, admin (admin API; admin implies infer), infer (inference)",
)
@click.option(
    "--rate-limit-rps",
    type=click.FloatRange(min=0, max=1e9),
    default=None,
    help="the token's own inference limit in requests/s (0: unlimited; default: the gateway's)",
)
@click.option(
    "--rate-limit-burst",
    type=click.FloatRange(min=0, max=1e9),
    default=None,
    help="the token's burst (default: its rate, or the gateway's burst)",
)
@click.pass_context
def tokens_create(
    ctx: click.Context,
    name: str,
    scopes: tuple[str, ...],
    rate_limit_rps: float | None,
    rate_limit_burst: float | None,
) -> None:
    """Create a token in the configured database (MODELGATE_DATABASE_URL) and print it
    alone on stdout (it is shown only this once; with -o json, the token's record with
    the secret in its token field)."""
    from modelgate.cli.bootstrap import create_token

    limits = {"rate_limit_rps": rate_limit_rps, "rate_limit_burst": rate_limit_burst}
    out = asyncio.run(create_token(RegistrySettings(), name, list(scopes), **limits))
    if wants_json(ctx):
        emit_json(msgspec.to_builtins(out))
    else:
        click.echo(out.token)


def _limit(t: dict[str, Any]) -> str:
    if t["rate_limit_rps"] is None:
        return "gateway default"
    burst = "" if t["rate_limit_burst"] is None else f" burst {t['rate_limit_burst']:g}"
    return f"{t['rate_limit_rps']:g}/s{burst}"


_TOKEN_COLUMNS = [
    Column("id", lambda t: t["id"]),
    Column("name", lambda t: t["name"]),
    Column("scopes", lambda t: ", ".join(t["scopes"])),
    Column("prefix", lambda t: t["prefix"]),
    Column("revoked", lambda t: "revoked" if t["revoked"] else ""),
    Column("created", lambda t: t["created_at"], wide=True),
    Column("by", lambda t: t["created_by"], wide=True),
    Column("rate limit", _limit, wide=True),
]


@tokens.command("list")
@click.option("--all", "everything", is_flag=True, help="revoked tokens too")
@click.pass_context
def tokens_list(ctx: click.Context, everything: bool) -> None:
    """The tokens, never their secrets (prefix: the first characters of each); the table
    has the live ones unless --all (wide: created, by whom, rate limit); -o json is the
    API's answer, revoked tokens included."""
    every = api_call(ctx, "GET", admin_path("tokens"))
    shown = [t for t in every if everything or not t["revoked"]]
    show(ctx, every, lambda wide: table(f"{len(shown)} tokens", _TOKEN_COLUMNS, shown, wide))


@tokens.command("revoke")
@click.argument("token_id", metavar="ID", type=click.IntRange(min=1))
@click.pass_context
def tokens_revoke(ctx: click.Context, token_id: int) -> None:
    """Revoke token ID (from `tokens list`): requests with it are refused from now on."""
    api_call(ctx, "DELETE", admin_path("tokens", str(token_id)))
    show(ctx, {"revoked": token_id}, lambda _wide: f"revoked token {token_id}")


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _change(e: dict[str, Any]) -> str:
    """What an event changed: ``key: before → after`` for each differing key, the new
    object's fields for a creation, ``removed`` for a deletion."""
    before, after = e["before"], e["after"]
    if before and after:
        keys = [k for k in after if before.get(k) != after.get(k)] or list(after)
        return "; ".join(f"{k}: {_text(before.get(k))} → {_text(after.get(k))}" for k in keys)
    if after:
        return "; ".join(f"{k}={_text(v)}" for k, v in after.items())
    return "removed" if before else ""


_AUDIT_COLUMNS = [
    Column("id", lambda e: e["id"]),
    Column("at", lambda e: e["at"]),
    Column("actor", lambda e: e["actor"]),
    Column("action", lambda e: e["action"]),
    Column("target", lambda e: e["target"]),
    Column("change", _change, wide=True),
    Column("revision", lambda e: e["revision"], wide=True),
]


@click.command()
@click.option("--model", default=None, help="only events of this model")
@click.option(
    "--action",
    default=None,
    help="only this action (alias.set) or family (alias: every alias.* action)",
)
@click.option("--actor", default=None, help="only events by this actor, e.g. token:ci")
@click.option(
    "--since",
    type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S%z"]),
    default=None,
    metavar="TIME",
    help="only events at or after TIME: 2026-01-31, 2026-01-31T12:00:00[+02:00] "
    "(UTC unless it has an offset)",
)
@click.option("--limit", type=click.IntRange(1, 500), default=50, help="events per page [50]")
@click.option("--offset", type=click.IntRange(min=0), default=0, help="events to skip [0]")
@click.pass_context
def audit(
    ctx: click.Context,
    model: str | None,
    action: str | None,
    actor: str | None,
    since: datetime | None,
    limit: int,
    offset: int,
) -> None:
    """The audit log, newest first: who did what to which object (wide: the change)."""
    given = {"model": model, "action": action, "actor": actor}
    params: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    if since is not None:
        params["since"] = (since if since.tzinfo else since.replace(tzinfo=UTC)).isoformat()
    page = api_call(
        ctx, "GET", admin_path("audit"), params={**params, "limit": limit, "offset": offset}
    )
    shown = f"{len(page['items'])} of {page['total']} audit events"
    show(ctx, page, lambda wide: table(shown, _AUDIT_COLUMNS, page["items"], wide))
