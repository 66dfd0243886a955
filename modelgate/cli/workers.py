"""``modelgate workers``: list the workers (announced and external), load and unload
versions on modelgate workers (the gateway's Triton repository API, ``/v2/repository``),
and register or remove external OIP servers (Triton, MLServer, KServe) through the admin API."""

from __future__ import annotations

import time
from typing import Any

import click

from modelgate.cli.http import Unreachable, admin_path, api_call, api_path
from modelgate.cli.output import Column, show, table, wait_progress

__all__ = ["parse_served", "workers"]

#: How often a load/unload wait reads the workers.
POLL_S = 0.25

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
    load and unload place versions on modelgate workers; add and remove register external
    OIP servers."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(workers_list)


def _loaded(w: dict[str, Any]) -> str:
    return ", ".join(f"{i['model']}@{i['version']}{'' if i['ready'] else '*'}" for i in w["loaded"])


def _balancer(w: dict[str, Any], key: str) -> Any:
    return (w["balancer"] or {}).get(key)


def _kind(w: dict[str, Any]) -> str:
    return f"external ({w.get('protocol')})" if w.get("kind") == "external" else "announced"


def _seen(w: dict[str, Any]) -> str:
    if w.get("kind") == "external":
        return "registered"
    return "stale" if w["stale"] else "fresh"


_WORKER_COLUMNS = [
    Column("id", lambda w: w["id"]),
    Column("kind", _kind),
    Column("state", lambda w: w["state"]),
    Column("loaded (* = not ready)", _loaded),
    Column("in flight", lambda w: w["in_flight"]),
    Column("ewma ms", lambda w: None if (ms := _balancer(w, "ewma_ms")) is None else f"{ms:.1f}"),
    Column("ejected", lambda w: "yes" if _balancer(w, "ejected_until") else ""),
    Column("seen", _seen),
    Column("url", lambda w: w["url"], wide=True),
    Column("device", lambda w: w["device"], wide=True),
    Column("queue", lambda w: w["queue_depth"], wide=True),
    Column("capacity", lambda w: w["capacity"], wide=True),
    Column("last seen", lambda w: w["last_seen"], wide=True),
    Column("ejected until", lambda w: _balancer(w, "ejected_until"), wide=True),
]


@workers.command("list")
@click.pass_context
def workers_list(ctx: click.Context) -> None:
    """Announced workers and external servers, with the gateway's view of each (wide: URL,
    device, queue, capacity, last seen, ejection deadline)."""
    rows = api_call(ctx, "GET", admin_path("workers"))
    show(ctx, rows, lambda wide: table("workers", _WORKER_COLUMNS, rows, wide))


def _views(w: dict[str, Any], model: str, version: str | None) -> tuple[bool, bool]:
    """Whether worker row ``w`` has ``model@version`` (any version of it when ``None``)
    ready in its own announcement, and in the gateway's view."""
    announced = any(
        i["model"] == model and (version is None or i["version"] == version) and i["ready"]
        for i in w["loaded"]
    )
    wanted = f"{model}@{version}" if version else f"{model}@"
    ready = _balancer(w, "ready") or []
    seen = any(r == wanted if version else r.startswith(wanted) for r in ready)
    return announced, seen


def _shows(w: dict[str, Any], action: str, model: str, version: str | None) -> bool:
    """Whether ``w`` shows the outcome of ``action``: loaded in both views, or in neither."""
    views = _views(w, model, version)
    return all(views) if action == "load" else not any(views)


def _targets(ctx: click.Context, chosen: tuple[str, ...]) -> list[str]:
    if chosen:
        return list(dict.fromkeys(chosen))
    rows = api_call(ctx, "GET", admin_path("workers"))
    return [w["id"] for w in rows if w.get("kind") != "external" and not w["stale"]]


def _place(
    ctx: click.Context,
    action: str,
    model: str,
    version: str | None,
    chosen: tuple[str, ...],
    wait: bool,
    timeout: float,
) -> None:
    """``action`` (load, unload) ``model@version`` on the workers, then (``wait``) until
    each of them says so in its announcement and in the gateway's view."""
    targets = _targets(ctx, chosen)
    if not targets:
        raise click.ClickException(f"no modelgate worker is announced to {action} {model} on")
    path = api_path("/v2/repository/models", model, *(("versions", version) if version else ()))
    body = {"parameters": {"workers": ",".join(targets)}}
    what = f"{model}@{version}" if version else f"every version of {model}"
    with wait_progress(f"{action} {what} on {len(targets)} worker(s)", len(targets)) as update:
        try:
            api_call(ctx, "POST", f"{path}/{action}", json=body, timeout=timeout)
        except Unreachable as exc:
            raise Unreachable(
                f"{exc.message} (--timeout {timeout:g}s): the {action} may still go on, "
                "see `modelgate workers`"
            ) from None
        rows = _settled(ctx, action, model, version, targets, update, timeout if wait else None)
    message = f"{action}ed {what} on {', '.join(targets)}"
    doc = {"action": action, "model": model, "version": version, "workers": rows}
    show(ctx, doc, lambda wide: table(message, _WORKER_COLUMNS, rows, wide))


def _settled(
    ctx: click.Context,
    action: str,
    model: str,
    version: str | None,
    targets: list[str],
    update: Any,
    timeout: float | None,
) -> list[dict[str, Any]]:
    """The target workers' rows once each shows the outcome (``timeout`` None: at once)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        rows = [w for w in api_call(ctx, "GET", admin_path("workers")) if w["id"] in targets]
        done = [w["id"] for w in rows if _shows(w, action, model, version)]
        update(len(done), f"{action}: {len(done)}/{len(targets)} workers")
        if deadline is None or len(done) == len(targets):
            return rows
        if time.monotonic() > deadline:
            waiting = ", ".join(sorted(set(targets) - set(done)))
            raise click.ClickException(
                f"{action} of {model}{'@' + version if version else ''} succeeded, but after "
                f"{timeout:g}s {waiting} still did not show it (see `modelgate workers`)"
            )
        time.sleep(POLL_S)


#: The default of load/unload's ``--timeout``: a little over the gateway's own bound on each
#: worker's load (``MODELGATE_GATEWAY_REPOSITORY_TIMEOUT_S``, 300 s), so the gateway's
#: answer, not the client's patience, ends a slow load.
TIMEOUT_S = 330.0


def _placement(command: Any) -> Any:
    """The arguments and options load and unload share."""
    for option in (
        click.pass_context,
        click.option(
            "--timeout",
            type=click.FloatRange(min=0, min_open=True),
            default=TIMEOUT_S,
            help="seconds to wait: for the gateway's answer (it waits for the workers, each "
            "up to its MODELGATE_GATEWAY_REPOSITORY_TIMEOUT_S, 300 s), then for --wait; "
            f"past it the command fails [{TIMEOUT_S:g}]",
        ),
        click.option(
            "--wait/--no-wait",
            default=True,
            help="wait until every worker shows it, announced and in the gateway's view [wait]",
        ),
        click.option(
            "--worker",
            "chosen",
            multiple=True,
            metavar="ID",
            help="repeatable: only on this worker (default: every announced modelgate worker)",
        ),
        click.argument("version", required=False),
        click.argument("model"),
    ):
        command = option(command)
    return command


def _version_of(ctx: click.Context, model: str, version: str | None) -> tuple[str, str | None]:
    """``MODEL VERSION`` or ``MODEL@VERSION`` as (model, version); the version, when there
    is one, must be published (its 404 names it before any worker is asked)."""
    if "@" in model:
        if version is not None:
            raise click.UsageError(
                f'"{model}" has a version already: give MODEL VERSION or MODEL@VERSION, not both'
            )
        model, _, version = model.partition("@")
        if not model or not version:
            raise click.BadParameter("expected MODEL@VERSION", param_hint="MODEL")
    if version is not None:
        api_call(ctx, "GET", admin_path("models", model, "versions", version))
    return model, version


@workers.command("load")
@_placement
def workers_load(
    ctx: click.Context,
    model: str,
    version: str | None,
    chosen: tuple[str, ...],
    wait: bool,
    timeout: float,
) -> None:
    """Load VERSION of MODEL (an exact published version; MODEL VERSION or MODEL@VERSION)
    on modelgate workers, warm and ready, with a progress bar on stderr while it waits
    (needs the gateway's MODELGATE_GATEWAY_WORKER_CONTROL_TOKEN)."""
    model, version = _version_of(ctx, model, version)
    if version is None:
        raise click.UsageError("give the version to load: MODEL VERSION or MODEL@VERSION")
    _place(ctx, "load", model, version, chosen, wait, timeout)


@workers.command("unload")
@_placement
def workers_unload(
    ctx: click.Context,
    model: str,
    version: str | None,
    chosen: tuple[str, ...],
    wait: bool,
    timeout: float,
) -> None:
    """Unload VERSION of MODEL (MODEL VERSION or MODEL@VERSION; every version of MODEL when
    VERSION is left out) from modelgate workers; the gateway stops routing there first."""
    model, version = _version_of(ctx, model, version)
    _place(ctx, "unload", model, version, chosen, wait, timeout)


@workers.command("add")
@click.argument("server_id", metavar="ID")
@click.argument("url")
@click.option(
    "--protocol",
    type=click.Choice(["http", "grpc"]),
    default="http",
    help="how the gateway speaks to it: OIP v2 over HTTP or gRPC [http]",
)
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
    out = api_call(ctx, "POST", admin_path("workers"), json=body)
    names = ", ".join(
        f"{s['model']}@{s['version']} as {s['remote_model']}"
        + (f"@{s['remote_version']}" if s["remote_version"] else "")
        for s in out["serves"]
    )
    text = f"registered {out['id']} ({out['protocol']}) at {out['url']}: {names}"
    show(ctx, out, lambda _wide: text)


@workers.command("remove")
@click.argument("server_id", metavar="ID")
@click.pass_context
def workers_remove(ctx: click.Context, server_id: str) -> None:
    """Remove a registered external server; the gateway stops routing to it."""
    api_call(ctx, "DELETE", admin_path("workers", server_id))
    show(ctx, {"removed": server_id}, lambda _wide: f"removed {server_id}")
