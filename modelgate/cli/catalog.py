"""``modelgate models`` and ``modelgate versions``: the catalog on the admin API
(``/admin/v1/models[/{m}/versions]``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from modelgate.cli.http import admin_path, api_call
from modelgate.cli.output import Column, show, table, transfer_progress
from modelgate.cli.upload import Multipart

__all__ = ["models", "versions"]

_MODEL_COLUMNS = [
    Column("name", lambda m: m["name"]),
    Column("versions", lambda m: m["versions"]),
    Column("description", lambda m: m["description"]),
    Column("by", lambda m: m["created_by"]),
    Column("created", lambda m: m["created_at"], wide=True),
    Column("updated", lambda m: m["updated_at"], wide=True),
    Column("etag", lambda m: m["etag"], wide=True),
]
_VERSION_COLUMNS = [
    Column("version", lambda v: v["version"]),
    Column("status", lambda v: v["status"]),
    Column("priority", lambda v: v["priority"]),
    Column("sha256", lambda v: v["sha256"] and v["sha256"][:12]),
    Column("published", lambda v: v["created_at"]),
    Column("size", lambda v: v["size_bytes"], wide=True),
    Column("runtime", lambda v: v["runtime"], wide=True),
    Column("labels", lambda v: ", ".join(f"{k}={x}" for k, x in v["labels"].items()), wide=True),
    Column("by", lambda v: v["created_by"], wide=True),
    Column("etag", lambda v: v["etag"], wide=True),
]


def _fields(title: str, rows: dict[str, Any]) -> Table:
    """One object as a two-column table (``models show``, ``versions show``)."""
    out = Table("field", "value", title=title, title_justify="left", show_header=False)
    for name, value in rows.items():
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        out.add_row(name, text)
    return out


@click.group()
def models() -> None:
    """Models: list, show, create."""


@models.command("list")
@click.pass_context
def models_list(ctx: click.Context) -> None:
    """Every model with its number of versions (wide: times and ETag)."""
    page = api_call(ctx, "GET", admin_path("models"), params={"limit": 500})
    show(
        ctx,
        page,
        lambda wide: table(f"{page['total']} models", _MODEL_COLUMNS, page["items"], wide),
    )


@models.command("show")
@click.argument("name")
@click.pass_context
def models_show(ctx: click.Context, name: str) -> None:
    """One model: description, versions, who created it, its ETag."""
    out = api_call(ctx, "GET", admin_path("models", name))
    show(ctx, out, lambda _wide: _fields(f"model {name}", out))


@models.command("create")
@click.argument("name")
@click.option("--description", default="", help="what the model is, shown by `models list`")
@click.pass_context
def models_create(ctx: click.Context, name: str, description: str) -> None:
    """Create model NAME (a model is needed before its first version is published)."""
    out = api_call(
        ctx, "POST", admin_path("models"), json={"name": name, "description": description}
    )
    show(ctx, out, lambda _wide: f"created model {name}")


@click.group()
def versions() -> None:
    """Versions: list, show, publish, deprecate, undeprecate, yank, priority."""


@versions.command("list")
@click.argument("model")
@click.option("--constraint", default=None, help="only versions in this npm-style range, e.g. ^1.2")
@click.option(
    "--status",
    type=click.Choice(["active", "deprecated", "yanked"]),
    default=None,
    help="only versions with this status",
)
@click.option("--include-prerelease", is_flag=True, help="let --constraint match pre-releases")
@click.pass_context
def versions_list(
    ctx: click.Context,
    model: str,
    constraint: str | None,
    status: str | None,
    include_prerelease: bool,
) -> None:
    """MODEL's versions, highest first (wide: size, runtime, labels, ETag)."""
    given = {"constraint": constraint, "status": status}
    params: dict[str, Any] = {"limit": 500, **{k: v for k, v in given.items() if v}}
    if include_prerelease:
        params["include_prerelease"] = "true"
    page = api_call(ctx, "GET", admin_path("models", model, "versions"), params=params)
    title = f"{model}: {page['total']} versions"
    show(ctx, page, lambda wide: table(title, _VERSION_COLUMNS, page["items"], wide))


@versions.command("show")
@click.argument("model")
@click.argument("version")
@click.pass_context
def versions_show(ctx: click.Context, model: str, version: str) -> None:
    """One version: status, priority, artifact (sha256, size), signature, labels, ETag."""
    out = api_call(ctx, "GET", admin_path("models", model, "versions", version))
    show(ctx, out, lambda _wide: _fields(f"{model}@{version}", out))


def _labels(pairs: tuple[str, ...]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise click.BadParameter(f'expected KEY=VALUE, got "{pair}"', param_hint="--label")
        labels[key] = value
    return labels


@versions.command("publish")
@click.argument("model")
@click.argument("version")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--priority",
    type=int,
    default=0,
    help="a number kept with the version (see `versions priority`)",
)
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="repeatable label")
@click.option("--description", default=None, help="what changed in this version")
@click.pass_context
def versions_publish(
    ctx: click.Context,
    model: str,
    version: str,
    file: Path,
    priority: int,
    labels: tuple[str, ...],
    description: str | None,
) -> None:
    """Upload FILE (an ONNX model) as MODEL@VERSION; the gateway checks and hashes it.

    The file is streamed (never read whole into memory), with a progress bar on stderr
    when it is a terminal."""
    fields = {"version": version, "priority": str(priority)}
    if labels:
        fields["labels"] = json.dumps(_labels(labels))
    if description is not None:
        fields["description"] = description
    body = Multipart(fields, file)
    out = _upload(ctx, admin_path("models", model, "versions"), body, f"{model}@{version}")
    show(ctx, out, lambda _w: f"published {model}@{out['version']} sha256={out['sha256']}")


def _upload(ctx: click.Context, path: str, body: Multipart, what: str) -> Any:
    """POST ``body`` streamed, with a transfer bar on stderr while it goes."""
    with transfer_progress(what, body.file_size) as sent:
        return api_call(ctx, "POST", path, content=body.stream(sent), headers=body.headers)


def _status(name: str, status: str) -> None:
    @versions.command(name, help=f"Mark a version {status} (409 while it serves, unless --force).")
    @click.argument("model")
    @click.argument("version")
    @click.option(
        "--force",
        is_flag=True,
        help="even when the version is an arm of the traffic policy or in a rollout",
    )
    @click.pass_context
    def change(ctx: click.Context, model: str, version: str, force: bool) -> None:
        out = api_call(
            ctx,
            "PATCH",
            admin_path("models", model, "versions", version),
            json={"status": status},
            params={"force": "true"} if force else None,
        )
        show(ctx, out, lambda _wide: f"{model}@{version} is now {status}")


_status("deprecate", "deprecated")
_status("undeprecate", "active")
_status("yank", "yanked")


@versions.command("priority")
@click.argument("model")
@click.argument("version")
@click.argument("priority", type=click.IntRange(0, 1_000_000))
@click.pass_context
def versions_priority(ctx: click.Context, model: str, version: str, priority: int) -> None:
    """Set VERSION's PRIORITY (0-1000000), a number kept with the version and shown by
    `versions list` for an operator's own ordering (resolution goes by precedence alone)."""
    out = api_call(
        ctx, "PATCH", admin_path("models", model, "versions", version), json={"priority": priority}
    )
    show(ctx, out, lambda _wide: f"{model}@{version} priority {out['priority']}")
