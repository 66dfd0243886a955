"""The ``modelgate`` command line: serve, worker, demo, db upgrade, tokens, admin commands.

Each command reads its settings once and passes them down; nothing below re-reads them.
"""

from __future__ import annotations

import asyncio
import sys

import click

from modelgate.cli.admin import client_settings, register
from modelgate.cli.artifacts import artifacts
from modelgate.cli.worker import worker
from registry.settings import RegistrySettings

__all__ = ["main"]


@click.group()
@click.option("--url", default=None, help="admin commands: gateway URL (MODELGATE_URL)")
@click.option("--token", default=None, help="admin commands: bearer token (MODELGATE_TOKEN)")
@click.pass_context
def main(ctx: click.Context, url: str | None, token: str | None) -> None:
    """modelgate: route inference by model name and semantic-version constraint."""
    ctx.obj = client_settings(url, token)


@main.command()
@click.option("--host", default=None, help="interface to bind (default 127.0.0.1)")
@click.option("--port", type=int, default=None, help="port (default 8000)")
def serve(host: str | None, port: int | None) -> None:
    """Run the gateway: data plane and admin API."""
    from gateway.server import run_gateway
    from gateway.settings import GatewaySettings

    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    run_gateway(RegistrySettings(), GatewaySettings().model_copy(update=overrides))


@main.group()
def db() -> None:
    """Database schema commands."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Migrate the configured database (MODELGATE_DATABASE_URL) to the newest schema."""
    from registry.db import upgrade_to_head

    settings = RegistrySettings()
    upgrade_to_head(settings.database_url)
    click.echo(f"database at head: {_redacted(settings.database_url)}", err=True)


@main.group()
def tokens() -> None:
    """API tokens (direct database access, for the first admin token)."""


@tokens.command("create")
@click.option("--name", required=True, help="a name for the token, recorded in the audit log")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    type=click.Choice(["read", "publish", "admin"]),
    help="repeatable: read, publish, admin",
)
def tokens_create(name: str, scopes: tuple[str, ...]) -> None:
    """Create a token and print it alone on stdout (it is shown only this once)."""
    from modelgate.cli.bootstrap import create_token

    secret = asyncio.run(create_token(RegistrySettings(), name, list(scopes)))
    sys.stdout.write(secret + "\n")


@main.command()
@click.option("--port", type=int, default=8000, help="gateway port")
@click.option("--keep/--no-keep", default=True, help="keep serving after the tour (Ctrl-C ends)")
def demo(port: int, keep: bool) -> None:
    """The embedded end-to-end demo: SQLite, no Redis, generated models."""
    from modelgate.cli.demo import run_demo

    run_demo(port=port, keep=keep)


main.add_command(worker)
main.add_command(artifacts)
register(main)


def _redacted(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


if __name__ == "__main__":
    main()
