"""``modelgate workers``: list the workers (announced and external), and register or remove
external OIP servers (Triton, MLServer, KServe) through the admin API."""

from __future__ import annotations

from typing import Any

import click
from rich.console import Console
from rich.table import Table

from modelgate.cli.http import api_call, emit_json, wants_json

__all__ = ["parse_served", "workers"]

console = Console()

SERVES_HELP = (
    "a published version it serves: MODEL@VERSION, optionally =REMOTE_MODEL[@REMOTE_VERSION] "
    "for the names the server knows it by (REMOTE_VERSION defaults to VERSION; an empty one, "
    "as in =iris@, addresses the model without a version); repeat for more"
)


def parse_served(text: str) -> dict[str, str]:
    """``MODEL@VERSION[=REMOTE_MODEL[@REMOTE_VERSION]]`` as a ``serves`` entry."""
    ours, eq, theirs = text.partition("=")
    model, at, version = ours.partition("@")
    if not at or not model or not version:
        raise click.BadParameter(
            f'expected MODEL@VERSION[=REMOTE_MODEL[@REMOTE_VERSION]], got "{text}"',
            param_hint="--serves",
        )
    served = {"model": model, "version": version}
    if eq:
        remote_model, at, remote_version = theirs.partition("@")
        if not remote_model:
            raise click.BadParameter(
                f'"{text}" names no remote model after "="', param_hint="--serves"
            )
        served["remote_model"] = remote_model
        if at:
            served["remote_version"] = remote_version
    return served


@click.group(invoke_without_command=True)
@click.pass_context
def workers(ctx: click.Context) -> None:
    """Workers with their loaded versions, load and ejection state (list, the default);
    add and remove register external OIP servers."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(workers_list)


@workers.command("list")
@click.pass_context
def workers_list(ctx: click.Context) -> None:
    """Announced workers and external servers, with the gateway's view of each."""
    rows = api_call(ctx, "GET", "/admin/v1/workers")
    if wants_json(ctx):
        emit_json(rows)
        return
    columns = ["id", "kind", "state", "loaded (* = not ready)", "in flight", "ewma ms"]
    table = Table(*columns, "ejected", "seen", title="workers")
    for w in rows:
        table.add_row(*(str(v) if v is not None else "" for v in _row(w)))
    console.print(table)


def _row(w: dict[str, Any]) -> list[Any]:
    loaded = ", ".join(
        f"{i['model']}@{i['version']}{'' if i['ready'] else '*'}" for i in w["loaded"]
    )
    b = w["balancer"] or {}
    external = w.get("kind") == "external"
    return [
        w["id"],
        f"external ({w.get('protocol')})" if external else "announced",
        w["state"],
        loaded,
        w["in_flight"],
        b.get("ewma_ms"),
        "yes" if b.get("ejected_until") else "",
        "registered" if external else ("stale" if w["stale"] else "fresh"),
    ]


@workers.command("add")
@click.argument("server_id", metavar="ID")
@click.argument("url")
@click.option("--protocol", type=click.Choice(["http", "grpc"]), default="http")
@click.option("--serves", "serves", multiple=True, required=True, help=SERVES_HELP)
@click.pass_context
def workers_add(
    ctx: click.Context, server_id: str, url: str, protocol: str, serves: tuple[str, ...]
) -> None:
    """Register an external OIP server at URL (http://host:port or grpc://host:port)."""
    body = {
        "id": server_id,
        "url": url,
        "protocol": protocol,
        "serves": [parse_served(s) for s in serves],
    }
    out = api_call(ctx, "POST", "/admin/v1/workers", json=body)
    if wants_json(ctx):
        emit_json(out)
        return
    names = ", ".join(
        f"{s['model']}@{s['version']} as {s['remote_model']}"
        + (f"@{s['remote_version']}" if s["remote_version"] else "")
        for s in out["serves"]
    )
    console.print(f"registered {out['id']} ({out['protocol']}) at {out['url']}: {names}")


@workers.command("remove")
@click.argument("server_id", metavar="ID")
@click.pass_context
def workers_remove(ctx: click.Context, server_id: str) -> None:
    """Remove a registered external server; the gateway stops routing to it."""
    api_call(ctx, "DELETE", f"/admin/v1/workers/{server_id}")
    if wants_json(ctx):
        emit_json({"removed": server_id})
        return
    console.print(f"removed {server_id}")
