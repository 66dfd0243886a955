"""Admin subcommands of ``modelgate``: talk to a gateway's admin API with httpx.

The gateway and token come from ``--url``/``--token`` or ``MODELGATE_URL``/``MODELGATE_TOKEN``.
Errors from the API are printed as they came (``{"error": ...}``) with a non-zero exit.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import httpx
from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from rich.console import Console
from rich.table import Table

__all__ = ["ClientSettings", "client_settings", "register"]

console = Console()


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


def _client(ctx: click.Context) -> httpx.Client:
    settings: ClientSettings = ctx.find_root().obj
    headers = {"Authorization": f"Bearer {settings.token}"} if settings.token else {}
    return httpx.Client(base_url=settings.url, headers=headers, timeout=60)


def _call(ctx: click.Context, method: str, path: str, **kwargs: Any) -> Any:
    with _client(ctx) as client:
        try:
            response = client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise click.ClickException(f"cannot reach {ctx.find_root().obj.url}: {exc}") from None
    if response.status_code >= 400:
        try:
            message = response.json().get("error", response.text)
        except ValueError:
            message = response.text
        raise click.ClickException(f"[{response.status_code}] {message}")
    return response.json() if response.content else None


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
        rows = [
            [m["name"], m["versions"], m["description"], m["created_by"]] for m in page["items"]
        ]
        _table(f"{page['total']} models", ["name", "versions", "description", "by"], rows)

    @models.command("create")
    @click.argument("name")
    @click.option("--description", default="")
    @click.pass_context
    def models_create(ctx: click.Context, name: str, description: str) -> None:
        _call(ctx, "POST", "/admin/v1/models", json={"name": name, "description": description})
        console.print(f"created model {name}")

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
        console.print(f"published {model}@{out['version']} sha256={out['sha256']}")

    def _status(name: str, status: str) -> None:
        @versions.command(name)
        @click.argument("model")
        @click.argument("version")
        @click.option("--force", is_flag=True, help="Even while a policy arm or in a rollout.")
        @click.pass_context
        def change(ctx: click.Context, model: str, version: str, force: bool) -> None:
            _call(
                ctx,
                "PATCH",
                f"/admin/v1/models/{model}/versions/{version}",
                json={"status": status},
                params={"force": "true"} if force else None,
            )
            console.print(f"{model}@{version} is now {status}")

        change.help = f"Mark a version {status}."

    _status("deprecate", "deprecated")
    _status("undeprecate", "active")
    _status("yank", "yanked")

    @main.group()
    def alias() -> None:
        """Aliases: set, drop."""

    @alias.command("set")
    @click.argument("model")
    @click.argument("name")
    @click.argument("version")
    @click.pass_context
    def alias_set(ctx: click.Context, model: str, name: str, version: str) -> None:
        _call(ctx, "PUT", f"/admin/v1/models/{model}/aliases/{name}", json={"version": version})
        console.print(f"{model}:{name} → {version}")

    @alias.command("drop")
    @click.argument("model")
    @click.argument("name")
    @click.pass_context
    def alias_drop(ctx: click.Context, model: str, name: str) -> None:
        _call(ctx, "DELETE", f"/admin/v1/models/{model}/aliases/{name}")
        console.print(f"dropped {model}:{name}")

    @main.group()
    def traffic() -> None:
        """The traffic policy: show, set, clear."""

    @traffic.command("show")
    @click.argument("model")
    @click.pass_context
    def traffic_show(ctx: click.Context, model: str) -> None:
        console.print_json(json.dumps(_call(ctx, "GET", f"/admin/v1/models/{model}/traffic")))

    @traffic.command("set")
    @click.argument("model")
    @click.argument("arms", nargs=-1, required=True)
    @click.option("--shadow", default=None, metavar="VERSION=FRACTION")
    @click.option("--sticky-header", default="X-Route-Key")
    @click.pass_context
    def traffic_set(
        ctx: click.Context,
        model: str,
        arms: tuple[str, ...],
        shadow: str | None,
        sticky_header: str,
    ) -> None:
        """ARMS are VERSION=WEIGHT, e.g. 1.1.0=90 2.0.0=10."""
        body: dict[str, Any] = {
            "arms": [_pair(a, int) for a in arms],
            "sticky_header": sticky_header,
        }
        if shadow:
            version, fraction = _pair(shadow, float).values()
            body["shadow"] = {"version": version, "fraction": fraction}
        _call(ctx, "PUT", f"/admin/v1/models/{model}/traffic", json=body)
        console.print(f"{model}: " + ", ".join(arms) + (f", shadow {shadow}" if shadow else ""))

    @traffic.command("clear")
    @click.argument("model")
    @click.pass_context
    def traffic_clear(ctx: click.Context, model: str) -> None:
        _call(ctx, "DELETE", f"/admin/v1/models/{model}/traffic")
        console.print(f"{model}: traffic policy removed")

    @main.command()
    @click.argument("model")
    @click.argument("version", required=False)
    @click.option("--key", default=None, help="route key (sticky cohort)")
    @click.pass_context
    def resolve(ctx: click.Context, model: str, version: str | None, key: str | None) -> None:
        """Explain which version and worker would serve MODEL at VERSION."""
        params = {k: v for k, v in {"version": version, "key": key}.items() if v is not None}
        out = _call(ctx, "GET", f"/admin/v1/models/{model}/resolve", params=params)
        console.print(
            f"[bold]{model}[/bold] {version or '(no version)'} → [bold]{out['version']}[/bold]"
            f" via {out['arm']} on {out['worker'] or 'no worker'}"
        )
        for line in out["trace"]:
            console.print(f"  {line}", highlight=False)

    @main.command()
    @click.pass_context
    def workers(ctx: click.Context) -> None:
        """Workers with their loaded versions, load and ejection state."""
        rows = []
        for w in _call(ctx, "GET", "/admin/v1/workers"):
            loaded = ", ".join(
                f"{i['model']}@{i['version']}{'' if i['ready'] else '*'}" for i in w["loaded"]
            )
            b = w["balancer"] or {}
            rows.append(
                [
                    w["id"],
                    w["state"],
                    loaded,
                    w["in_flight"],
                    b.get("ewma_ms"),
                    "yes" if b.get("ejected_until") else "",
                    "stale" if w["stale"] else "fresh",
                ]
            )
        _table(
            "workers",
            ["id", "state", "loaded (* = warming)", "in flight", "ewma ms", "ejected", "seen"],
            rows,
        )


def _pair(text: str, kind: type) -> dict[str, Any]:
    name, sep, value = text.rpartition("=")
    if not sep or not name:
        raise click.BadParameter(f'expected VERSION=NUMBER, got "{text}"')
    try:
        number = kind(value)
    except ValueError:
        raise click.BadParameter(f'"{value}" in "{text}" is not a number') from None
    return {"version": name, "weight" if kind is int else "fraction": number}
