"""``modelgate alias``, ``modelgate traffic`` and ``modelgate resolve``: what serves a model.

Alias and traffic edits send ``If-Match`` (``--if-match ETAG``, else the ETag read just
before the edit), so an edit made meanwhile by someone else fails with a 412 instead of
being overwritten.
"""

from __future__ import annotations

from typing import Any

import click
from rich.console import Group
from rich.text import Text

from modelgate.cli.http import ApiError, admin_path, api_call, api_request
from modelgate.cli.output import Column, show, table

__all__ = ["alias", "resolve", "traffic"]

_IF_MATCH = click.option(
    "--if-match",
    default=None,
    metavar="ETAG",
    help="only if the object's ETag is still this one (from `show`); default: the ETag read "
    "just before the edit",
)


def _current_etag(ctx: click.Context, path: str, if_match: str | None) -> str | None:
    """The ``If-Match`` for an edit of ``path``: ``--if-match`` as given, else the ETag of a
    GET just before (``None`` when there is nothing yet, so a create stays a create)."""
    if if_match is not None:
        return if_match
    try:
        tag = api_request(ctx, "GET", path).headers.get("ETag")
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise
    return None if tag is None else str(tag)


def _guarded(
    ctx: click.Context,
    method: str,
    path: str,
    what: str,
    show_command: str,
    *,
    if_match: str | None,
    **kwargs: Any,
) -> Any:
    """``method`` on ``path`` with ``If-Match``; a 412 says that ``what`` changed meanwhile
    and that nothing was overwritten."""
    tag = _current_etag(ctx, path, if_match)
    headers = {"If-Match": tag} if tag else {}
    try:
        return api_call(ctx, method, path, headers=headers, **kwargs)
    except ApiError as exc:
        if exc.status != 412:
            raise
        raise ApiError(
            412,
            f"{what} was changed by someone else since it was read, so this edit was "
            f"refused and nothing was overwritten ({exc.api_message}). Look at "
            f"`{show_command}` and retry.",
        ) from None


def _history_lines(out: dict[str, Any]) -> list[Text]:
    return [Text(f"  {h['at']}  {h['from']} → {h['to']}  by {h['by']}") for h in out["history"]]


_ALIAS_COLUMNS = [
    Column("alias", lambda a: a["alias"]),
    Column("version", lambda a: a["version"]),
    Column("updated", lambda a: a["updated_at"]),
    Column("by", lambda a: a["updated_by"]),
    Column("moves", lambda a: len(a["history"]), wide=True),
    Column("etag", lambda a: a["etag"], wide=True),
]


@click.group()
def alias() -> None:
    """Aliases (names such as prod that point at a version): list, show, set, drop."""


@alias.command("list")
@click.argument("model")
@click.pass_context
def alias_list(ctx: click.Context, model: str) -> None:
    """MODEL's aliases and the version each points at (wide: moves, ETag)."""
    out = api_call(ctx, "GET", admin_path("models", model, "aliases"))
    show(ctx, out, lambda wide: table(f"{model}: {len(out)} aliases", _ALIAS_COLUMNS, out, wide))


@alias.command("set")
@click.argument("model")
@click.argument("name")
@click.argument("version")
@_IF_MATCH
@click.pass_context
def alias_set(
    ctx: click.Context, model: str, name: str, version: str, if_match: str | None
) -> None:
    """Point alias NAME at VERSION (If-Match: --if-match, else the ETag read just before)."""
    path = admin_path("models", model, "aliases", name)
    what, show_command = f"alias {model}:{name}", f"modelgate alias show {model} {name}"
    out = _guarded(
        ctx, "PUT", path, what, show_command, if_match=if_match, json={"version": version}
    )
    show(ctx, out, lambda _wide: f"{model}:{name} → {version}")


@alias.command("show")
@click.argument("model")
@click.argument("name")
@click.pass_context
def alias_show(ctx: click.Context, model: str, name: str) -> None:
    """The alias's version, ETag (for --if-match) and history."""
    out = api_call(ctx, "GET", admin_path("models", model, "aliases", name))
    head = Text.assemble(f"{model}:{name} → ", (out["version"], "bold"), f"  etag {out['etag']}")
    show(ctx, out, lambda _wide: Group(head, *_history_lines(out)))


@alias.command("drop")
@click.argument("model")
@click.argument("name")
@_IF_MATCH
@click.pass_context
def alias_drop(ctx: click.Context, model: str, name: str, if_match: str | None) -> None:
    """Remove alias NAME (a reference to it then no longer resolves)."""
    path = admin_path("models", model, "aliases", name)
    what, show_command = f"alias {model}:{name}", f"modelgate alias show {model} {name}"
    _guarded(ctx, "DELETE", path, what, show_command, if_match=if_match)
    show(ctx, {"dropped": f"{model}:{name}"}, lambda _wide: f"dropped {model}:{name}")


def _serving(arm: dict[str, Any]) -> str:
    """``yes``, or ``NOT SERVING: <reason>`` for an arm the gateway cannot route to."""
    if arm.get("serving", True):
        return "yes"
    return f"NOT SERVING: {arm.get('reason') or 'unknown'}"


_ARM_COLUMNS = [
    Column("version", lambda a: a["version"]),
    Column("weight", lambda a: a["weight"]),
    Column("serving", lambda a: a["serving"]),
]


def _traffic_view(model: str, out: dict[str, Any], wide: bool) -> Group:
    rows = [
        {"version": a["version"], "weight": a["weight"], "serving": _serving(a)}
        for a in out["arms"]
    ]
    if out.get("shadow"):
        shadow = out["shadow"]
        rows.append(
            {
                "version": f"{shadow['version']} (shadow)",
                "weight": f"{shadow['fraction']:.0%} copied",
                "serving": "",
            }
        )
    foot = (
        f"sticky header {out['sticky_header']} · etag {out['etag']} · updated"
        f" {out['updated_at']} by {out['updated_by']}"
    )
    return Group(table(f"{model}: traffic policy", _ARM_COLUMNS, rows, wide), Text(foot))


@click.group()
def traffic() -> None:
    """The traffic policy (weighted arms, an optional shadow): show, set, clear."""


@traffic.command("show")
@click.argument("model")
@click.pass_context
def traffic_show(ctx: click.Context, model: str) -> None:
    """The policy's arms, each marked when it cannot serve (and why), and its ETag."""
    out = api_call(ctx, "GET", admin_path("models", model, "traffic"))
    show(ctx, out, lambda wide: _traffic_view(model, out, wide))


@traffic.command("set")
@click.argument("model")
@click.argument("arms", nargs=-1, required=True)
@click.option(
    "--shadow",
    default=None,
    metavar="VERSION=FRACTION",
    help="also copy this fraction (0-1) of requests to VERSION, answers discarded",
)
@click.option(
    "--sticky-header",
    default="X-Route-Key",
    help="the request header whose value pins a client to one arm",
)
@_IF_MATCH
@click.pass_context
def traffic_set(
    ctx: click.Context,
    model: str,
    arms: tuple[str, ...],
    shadow: str | None,
    sticky_header: str,
    if_match: str | None,
) -> None:
    """Replace MODEL's traffic policy, whole, with ARMS (VERSION=WEIGHT each, as in
    1.1.0=90 2.0.0=10), If-Match: --if-match, else the ETag read just before."""
    body: dict[str, Any] = {"arms": [_pair(a, int) for a in arms], "sticky_header": sticky_header}
    if shadow:
        version, fraction = _pair(shadow, float).values()
        body["shadow"] = {"version": version, "fraction": fraction}
    path = admin_path("models", model, "traffic")
    what, show_command = f"the traffic policy of {model}", f"modelgate traffic show {model}"
    out = _guarded(ctx, "PUT", path, what, show_command, if_match=if_match, json=body)
    message = f"{model}: " + ", ".join(arms) + (f", shadow {shadow}" if shadow else "")
    show(ctx, out, lambda _wide: message)


@traffic.command("clear")
@click.argument("model")
@_IF_MATCH
@click.pass_context
def traffic_clear(ctx: click.Context, model: str, if_match: str | None) -> None:
    """Remove the policy: MODEL's references resolve to one version again."""
    path = admin_path("models", model, "traffic")
    what, show_command = f"the traffic policy of {model}", f"modelgate traffic show {model}"
    _guarded(ctx, "DELETE", path, what, show_command, if_match=if_match)
    show(ctx, {"cleared": model}, lambda _wide: f"{model}: traffic policy removed")


def _resolve_view(model: str, version: str | None, out: dict[str, Any], wide: bool) -> Group:
    lines = [
        Text.assemble(
            (model, "bold"),
            f" {version or '(no version)'} → ",
            (out["version"], "bold"),
            f" via {out['arm']} on {out['worker'] or 'no worker'}",
        ),
        *(Text(f"  {line}") for line in out["trace"]),
    ]
    if out.get("arms"):
        arms = ", ".join(f"{a['version']}={a['weight']} ({_serving(a)})" for a in out["arms"])
        lines.append(Text(f"  arms: {arms}"))
    if wide:
        lines.append(Text(f"  reference kind: {out['kind']}"))
        lines.append(Text(f"  candidates: {', '.join(out['candidates']) or 'none'}"))
        lines.append(Text(f"  skipped: {', '.join(out['skipped']) or 'none'}"))
    return Group(*lines)


@click.command()
@click.argument("model")
@click.argument("version", required=False)
@click.option("--key", default=None, help="route key (sticky cohort)")
@click.pass_context
def resolve(ctx: click.Context, model: str, version: str | None, key: str | None) -> None:
    """Explain which version and worker would serve MODEL at VERSION (any reference: exact,
    alias, stable, latest, a range)."""
    params = {k: v for k, v in {"version": version, "key": key}.items() if v is not None}
    out = api_call(ctx, "GET", admin_path("models", model, "resolve"), params=params)
    show(ctx, out, lambda wide: _resolve_view(model, version, out, wide))


def _pair(text: str, kind: type) -> dict[str, Any]:
    name, sep, value = text.rpartition("=")
    if not sep or not name:
        raise click.BadParameter(f'expected VERSION=NUMBER, got "{text}"')
    try:
        number = kind(value)
    except ValueError:
        raise click.BadParameter(f'"{value}" in "{text}" is not a number') from None
    return {"version": name, "weight" if kind is int else "fraction": number}
