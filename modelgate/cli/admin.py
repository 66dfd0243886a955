"""Admin subcommands of ``modelgate``: talk to a gateway's admin API with httpx.

The gateway and token come from ``--url``/``--token`` or ``MODELGATE_URL``/``MODELGATE_TOKEN``.
Errors from the API are printed as they came (``{"error": ...}``) with a non-zero exit;
``-o json`` prints the API's answers instead of tables. Alias and traffic edits send
``If-Match`` (``--if-match ETAG``, else the ETag read just before the edit), so an edit made
meanwhile by someone else fails with a 412 instead of being overwritten.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from modelgate.cli.http import ApiError, api_call, api_request, emit_json, wants_json
from modelgate.cli.rollout import rollout
from modelgate.cli.workers import workers

__all__ = ["register"]

console = Console()

_IF_MATCH = click.option(
    "--if-match",
    default=None,
    metavar="ETAG",
    help="only if the object's ETag is still this one (from `show`); default: the ETag read "
    "just before the edit",
)


def _call(ctx: click.Context, method: str, path: str, **kwargs: Any) -> Any:
    return api_call(ctx, method, path, **kwargs)


def _done(ctx: click.Context, out: Any, message: str) -> None:
    """Print the API's answer with ``-o json``, else the one-line ``message``."""
    if wants_json(ctx):
        emit_json(out)
    else:
        console.print(message)


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
    show: str,
    *,
    if_match: str | None,
    **kwargs: Any,
) -> Any:
    """``method`` on ``path`` with ``If-Match``; a 412 says that ``what`` changed meanwhile
    and that nothing was overwritten."""
    tag = _current_etag(ctx, path, if_match)
    headers = {"If-Match": tag} if tag else {}
    try:
        return _call(ctx, method, path, headers=headers, **kwargs)
    except ApiError as exc:
        if exc.status != 412:
            raise
        raise click.ClickException(
            f"[412] {what} was changed by someone else since it was read, so this edit was "
            f"refused and nothing was overwritten ({exc.api_message}). Look at `{show}` "
            "and retry."
        ) from None


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    table = Table(*columns, title=title)
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    console.print(table)


def register(main: click.Group) -> None:
    """Add the admin command groups to the top-level ``modelgate`` group."""

    @main.group()
    def models() -> None:
        """Models: list, create."""

    @models.command("list")
    @click.pass_context
    def models_list(ctx: click.Context) -> None:
        page = _call(ctx, "GET", "/admin/v1/models", params={"limit": 500})
        if wants_json(ctx):
            emit_json(page)
            return
        rows = [
            [m["name"], m["versions"], m["description"], m["created_by"]] for m in page["items"]
        ]
        _table(f"{page['total']} models", ["name", "versions", "description", "by"], rows)

    @models.command("create")
    @click.argument("name")
    @click.option("--description", default="")
    @click.pass_context
    def models_create(ctx: click.Context, name: str, description: str) -> None:
        out = _call(
            ctx, "POST", "/admin/v1/models", json={"name": name, "description": description}
        )
        _done(ctx, out, f"created model {name}")

    @main.group()
    def versions() -> None:
        """Versions: list, publish, deprecate, undeprecate, yank, priority."""

    @versions.command("list")
    @click.argument("model")
    @click.option("--constraint", default=None, help="npm-style range, e.g. ^1.2")
    @click.pass_context
    def versions_list(ctx: click.Context, model: str, constraint: str | None) -> None:
        params = {"limit": 500, **({"constraint": constraint} if constraint else {})}
        page = _call(ctx, "GET", f"/admin/v1/models/{model}/versions", params=params)
        if wants_json(ctx):
            emit_json(page)
            return
        rows = [
            [v["version"], v["status"], v["priority"], v["sha256"][:12], v["created_at"]]
            for v in page["items"]
        ]
        _table(
            f"{model}: {page['total']} versions",
            ["version", "status", "priority", "sha256", "published"],
            rows,
        )

    @versions.command("publish")
    @click.argument("model")
    @click.argument("version")
    @click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @click.option("--priority", type=int, default=0)
    @click.pass_context
    def versions_publish(
        ctx: click.Context, model: str, version: str, file: Path, priority: int
    ) -> None:
        with file.open("rb") as handle:
            out = _call(
                ctx,
                "POST",
                f"/admin/v1/models/{model}/versions",
                data={"version": version, "priority": str(priority)},
                files={"file": (file.name, handle, "application/octet-stream")},
            )
        _done(ctx, out, f"published {model}@{out['version']} sha256={out['sha256']}")

    def _status(name: str, status: str) -> None:
        @versions.command(name)
        @click.argument("model")
        @click.argument("version")
        @click.option(
            "--force",
            is_flag=True,
            help="even when the version is an arm of the traffic policy or in a rollout",
        )
        @click.pass_context
        def change(ctx: click.Context, model: str, version: str, force: bool) -> None:
            out = _call(
                ctx,
                "PATCH",
                f"/admin/v1/models/{model}/versions/{version}",
                json={"status": status},
                params={"force": "true"} if force else None,
            )
            _done(ctx, out, f"{model}@{version} is now {status}")

        change.help = f"Mark a version {status} (409 while it serves, unless --force)."

    _status("deprecate", "deprecated")
    _status("undeprecate", "active")
    _status("yank", "yanked")

    @main.group()
    def alias() -> None:
        """Aliases: set, show, drop."""

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
        path = f"/admin/v1/models/{model}/aliases/{name}"
        what, show = f"alias {model}:{name}", f"modelgate alias show {model} {name}"
        out = _guarded(ctx, "PUT", path, what, show, if_match=if_match, json={"version": version})
        _done(ctx, out, f"{model}:{name} → {version}")

    @alias.command("show")
    @click.argument("model")
    @click.argument("name")
    @click.pass_context
    def alias_show(ctx: click.Context, model: str, name: str) -> None:
        """The alias's version, ETag (for --if-match) and history."""
        out = _call(ctx, "GET", f"/admin/v1/models/{model}/aliases/{name}")
        if wants_json(ctx):
            emit_json(out)
            return
        console.print(f"{model}:{name} → [bold]{out['version']}[/bold]  etag {out['etag']}")
        for h in out["history"]:
            console.print(f"  {h['at']}  {h['from']} → {h['to']}  by {h['by']}", highlight=False)

    @alias.command("drop")
    @click.argument("model")
    @click.argument("name")
    @_IF_MATCH
    @click.pass_context
    def alias_drop(ctx: click.Context, model: str, name: str, if_match: str | None) -> None:
        path = f"/admin/v1/models/{model}/aliases/{name}"
        what, show = f"alias {model}:{name}", f"modelgate alias show {model} {name}"
        _guarded(ctx, "DELETE", path, what, show, if_match=if_match)
        _done(ctx, {"dropped": f"{model}:{name}"}, f"dropped {model}:{name}")

    @main.group()
    def traffic() -> None:
        """The traffic policy: show, set, clear."""

    @traffic.command("show")
    @click.argument("model")
    @click.pass_context
    def traffic_show(ctx: click.Context, model: str) -> None:
        """The policy's arms, each marked when it cannot serve (and why), and its ETag."""
        out = _call(ctx, "GET", f"/admin/v1/models/{model}/traffic")
        if wants_json(ctx):
            emit_json(out)
            return
        rows = [[a["version"], a["weight"], _serving(a)] for a in out["arms"]]
        if out.get("shadow"):
            shadow = out["shadow"]
            rows.append([f"{shadow['version']} (shadow)", f"{shadow['fraction']:.0%} copied", ""])
        _table(f"{model}: traffic policy", ["version", "weight", "serving"], rows)
        console.print(
            f"sticky header {out['sticky_header']} · etag {out['etag']} · updated"
            f" {out['updated_at']} by {out['updated_by']}",
            highlight=False,
        )

    @traffic.command("set")
    @click.argument("model")
    @click.argument("arms", nargs=-1, required=True)
    @click.option("--shadow", default=None, metavar="VERSION=FRACTION")
    @click.option("--sticky-header", default="X-Route-Key")
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
        """ARMS are VERSION=WEIGHT, e.g. 1.1.0=90 2.0.0=10; the policy is replaced whole
        (If-Match: --if-match, else the ETag read just before)."""
        body: dict[str, Any] = {
            "arms": [_pair(a, int) for a in arms],
            "sticky_header": sticky_header,
        }
        if shadow:
            version, fraction = _pair(shadow, float).values()
            body["shadow"] = {"version": version, "fraction": fraction}
        path = f"/admin/v1/models/{model}/traffic"
        what, show = f"the traffic policy of {model}", f"modelgate traffic show {model}"
        out = _guarded(ctx, "PUT", path, what, show, if_match=if_match, json=body)
        message = f"{model}: " + ", ".join(arms) + (f", shadow {shadow}" if shadow else "")
        _done(ctx, out, message)

    @traffic.command("clear")
    @click.argument("model")
    @_IF_MATCH
    @click.pass_context
    def traffic_clear(ctx: click.Context, model: str, if_match: str | None) -> None:
        path = f"/admin/v1/models/{model}/traffic"
        what, show = f"the traffic policy of {model}", f"modelgate traffic show {model}"
        _guarded(ctx, "DELETE", path, what, show, if_match=if_match)
        _done(ctx, {"cleared": model}, f"{model}: traffic policy removed")

    @main.command()
    @click.argument("model")
    @click.argument("version", required=False)
    @click.option("--key", default=None, help="route key (sticky cohort)")
    @click.pass_context
    def resolve(ctx: click.Context, model: str, version: str | None, key: str | None) -> None:
        """Explain which version and worker would serve MODEL at VERSION."""
        params = {k: v for k, v in {"version": version, "key": key}.items() if v is not None}
        out = _call(ctx, "GET", f"/admin/v1/models/{model}/resolve", params=params)
        if wants_json(ctx):
            emit_json(out)
            return
        console.print(
            f"[bold]{model}[/bold] {version or '(no version)'} → [bold]{out['version']}[/bold]"
            f" via {out['arm']} on {out['worker'] or 'no worker'}"
        )
        for line in out["trace"]:
            console.print(f"  {line}", highlight=False)
        if out.get("arms"):
            arms = ", ".join(f"{a['version']}={a['weight']} ({_serving(a)})" for a in out["arms"])
            console.print(f"  arms: {arms}", highlight=False)

    main.add_command(workers)
    main.add_command(rollout)


def _serving(arm: dict[str, Any]) -> str:
    """``yes``, or ``NOT SERVING: <reason>`` for an arm the gateway cannot route to."""
    if arm.get("serving", True):
        return "yes"
    return f"NOT SERVING: {arm.get('reason') or 'unknown'}"


def _pair(text: str, kind: type) -> dict[str, Any]:
    name, sep, value = text.rpartition("=")
    if not sep or not name:
        raise click.BadParameter(f'expected VERSION=NUMBER, got "{text}"')
    try:
        number = kind(value)
    except ValueError:
        raise click.BadParameter(f'"{value}" in "{text}" is not a number') from None
    return {"version": name, "weight" if kind is int else "fraction": number}
