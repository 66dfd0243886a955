"""The ``modelgate`` command line: serve, worker, demo, db upgrade, tokens, admin commands.

Each command reads its settings once and passes them down; nothing below re-reads them.
"""

from __future__ import annotations

import asyncio
import sys

import click

from modelgate.cli.admin import register
from modelgate.cli.artifacts import artifacts
from modelgate.cli.http import client_settings
from modelgate.cli.worker import worker
from modelgate.core.logging import configure_logging
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


#: Options of the top-level command that may also be written after the subcommand.
_GLOBAL_OPTIONS = ("--url", "--token", "-o", "--output")


def hoist_global_options(args: list[str], keep: frozenset[str] = frozenset()) -> list[str]:
    """Move ``--url``, ``--token`` and ``-o/--output`` (with their values, in any of the
    forms ``--url U``, ``--url=U``, ``-oU``) to the front, so they work anywhere on the line;
    names in ``keep`` (a subcommand's own option of that name) and anything after ``--``
    stay where they are."""
    hoisted = tuple(o for o in _GLOBAL_OPTIONS if o not in keep)
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest.extend(args[i:])
            break
        name, eq, value = arg.partition("=")
        if name in hoisted and eq:
            front += [name, value]
        elif arg in hoisted and i + 1 < len(args):
            front += [arg, args[i + 1]]
            i += 1
        elif "-o" in hoisted and arg.startswith("-o") and not arg.startswith("--") and len(arg) > 2:
            front += ["-o", arg[2:]]
        else:
            rest.append(arg)
        i += 1
    return front + rest


def _declared(command: click.Command) -> set[str]:
    """Every option name ``command`` (and, for a group, each command below it) declares."""
    names = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            names |= _declared(sub)
    return names


class _Main(click.Group):
    """The top-level group: its global options are accepted after the subcommand too,
    except where that subcommand has an option of the same name (``worker --url``); every
    command's database errors leave as one line (`DatabaseProblem`), no traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except (DatabaseUnavailable, InvalidDatabaseUrl) as exc:
            raise DatabaseProblem(exc.message) from None

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        rest = hoist_global_options(args)
        name = next((a for a in _after_global(rest)), None)
        command = self.commands.get(name) if name else None
        keep = frozenset(_declared(command) & set(_GLOBAL_OPTIONS)) if command else frozenset()
        return super().parse_args(ctx, hoist_global_options(args, keep))


def _after_global(args: list[str]) -> list[str]:
    """``args`` (global options first) without the global options and their values."""
    i = 0
    while i < len(args) and args[i] in _GLOBAL_OPTIONS:
        i += 2
    return args[i:]


@click.group(cls=_Main)
@click.version_option(package_name="modelgate")
@click.option("--url", default=None, help="admin commands: gateway URL (MODELGATE_URL)")
@click.option("--token", default=None, help="admin commands: bearer token (MODELGATE_TOKEN)")
@click.option(
    "-o",
    "--output",
    type=click.Choice(["text", "json"]),
    default="text",
    help="admin commands: rich tables (text) or JSON for scripts; anywhere on the line",
)
@click.pass_context
def main(ctx: click.Context, url: str | None, token: str | None, output: str) -> None:
    """modelgate: route inference by model name and semantic-version constraint."""
    configure_logging(default_level="warning", access_log=False)  # serve/worker: their own
    ctx.obj = client_settings(url, token)
    ctx.meta["output"] = output


@main.command()
@click.option("--host", default=None, help="interface to bind (default 127.0.0.1)")
@click.option("--port", type=int, default=None, help="port (default 8000)")
@click.option(
    "--grpc-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="also serve the gRPC data plane on this port (default: none)",
)
def serve(host: str | None, port: int | None, grpc_port: int | None) -> None:
    """Run the gateway: data plane (HTTP, and gRPC with --grpc-port) and admin API."""
    from gateway.server import run_gateway
    from gateway.settings import GatewaySettings

    given = {"host": host, "port": port, "grpc_port": grpc_port}
    overrides = {k: v for k, v in given.items() if v is not None}
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
