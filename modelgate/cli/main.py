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
from registry.errors import DatabaseUnavailable, InvalidDatabaseUrl, InvalidInput
from registry.limits import TOKEN_NAME_MAX, check_text
from registry.settings import RegistrySettings

__all__ = ["main"]


class DatabaseProblem(click.ClickException):
    """The database cannot be used: one line on stderr with the fix, exit code 2."""

    exit_code = 2


class UsageProblem(click.ClickException):
    """The command cannot run as asked (a busy port): one line on stderr, exit code 2."""

    exit_code = 2


class _Commands(click.Group):
    """Every command's database errors leave as one line (`DatabaseProblem`), no traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except (DatabaseUnavailable, InvalidDatabaseUrl) as exc:
            raise DatabaseProblem(exc.message) from None


@click.group(cls=_Commands)
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
def tokens_create(
    name: str,
    scopes: tuple[str, ...],
    rate_limit_rps: float | None,
    rate_limit_burst: float | None,
) -> None:
    """Create a token and print it alone on stdout (it is shown only this once)."""
    from modelgate.cli.bootstrap import create_token

    limits = {"rate_limit_rps": rate_limit_rps, "rate_limit_burst": rate_limit_burst}
    secret = asyncio.run(create_token(RegistrySettings(), name, list(scopes), **limits))
    sys.stdout.write(secret + "\n")


@main.command()
@click.option("--port", type=int, default=8000, help="gateway port")
@click.option("--keep/--no-keep", default=True, help="keep serving after the tour (Ctrl-C ends)")
def demo(port: int, keep: bool) -> None:
    """The embedded end-to-end demo: SQLite, no Redis, generated models."""
    from modelgate.cli.demo import DemoError, run_demo

    try:
        run_demo(port=port, keep=keep)
    except DemoError as exc:
        raise UsageProblem(str(exc)) from None


main.add_command(worker)
main.add_command(artifacts)
register(main)


def _token_name(name: str) -> str:
    try:
        check_text("token name", name, TOKEN_NAME_MAX)
    except InvalidInput as exc:
        raise click.BadParameter(exc.message) from None
    return name


def _redacted(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


if __name__ == "__main__":
    main()
