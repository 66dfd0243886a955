"""The ``modelgate`` command line: serve, worker, demo, db upgrade, tokens, admin commands.

Each command reads its settings once and passes them down; nothing below re-reads them.
"""

from __future__ import annotations

import click

from modelgate.cli.admin import register
from modelgate.cli.artifacts import artifacts
from modelgate.cli.http import client_settings
from modelgate.cli.output import FORMATS, emit_json, refuse_output, wants_json
from modelgate.cli.seed import seed
from modelgate.cli.worker import worker
from modelgate.core.logging import configure_logging
from registry.errors import DatabaseUnavailable, InvalidDatabaseUrl
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


def hoist_global_options(
    args: list[str], keep: frozenset[str] = frozenset(), valued: frozenset[str] = frozenset()
) -> list[str]:
    """Move ``--url``, ``--token`` and ``-o/--output`` (with their values, in any of the
    forms ``--url U``, ``--url=U``, ``-oU``) to the front, so they work anywhere on the line;
    names in ``keep`` (a subcommand's own option of that name), the value after an option
    in ``valued`` (the commands' options that take one: ``--description "-only"`` is a
    value, never ``-o nly``) and anything after ``--`` stay where they are."""
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
        elif arg in valued and arg not in hoisted:
            rest += args[i : i + 2]
            i += 1
        elif "-o" in hoisted and arg.startswith("-o") and not arg.startswith("--") and len(arg) > 2:
            front += ["-o", arg[2:]]
        else:
            rest.append(arg)
        i += 1
    return front + rest


def _path_options(group: click.Group, args: list[str]) -> tuple[set[str], set[str]]:
    """The option names declared by the commands ``args`` names below ``group`` (the
    subcommand, its subcommand, ...): those of the same name as a global one stay put;
    and, of them, those that take a value (whose value is never hoisted)."""
    names: set[str] = set()
    valued: set[str] = set()
    command: click.Command = group
    for arg in args:
        if not isinstance(command, click.Group):
            break
        sub = command.commands.get(arg)
        if sub is None:
            continue
        for p in sub.params:
            names |= {*p.opts, *p.secondary_opts}
            if isinstance(p, click.Option) and not p.is_flag and not p.count:
                valued |= set(p.opts)
        command = sub
    return names, valued


class _Main(click.Group):
    """The top-level group: its global options are accepted after the subcommand too,
    except where a command on the line has an option of the same name (``worker --url``);
    every command's database errors leave as one line (`DatabaseProblem`), no traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except (DatabaseUnavailable, InvalidDatabaseUrl) as exc:
            raise DatabaseProblem(exc.message) from None

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        names, valued = _path_options(self, _after_global(hoist_global_options(args)))
        keep = frozenset(names & set(_GLOBAL_OPTIONS))
        return super().parse_args(ctx, hoist_global_options(args, keep, frozenset(valued)))


def _after_global(args: list[str]) -> list[str]:
    """``args`` (global options first) without the global options and their values."""
    i = 0
    while i < len(args) and args[i] in _GLOBAL_OPTIONS:
        i += 2
    return args[i:]


EPILOG = """\b
Exit codes:
  0  the command did what it was asked
  1  the operation failed: the API refused it (4xx, 5xx, e.g. not found, a conflict,
     a 403 for a token without the scope) or a wait ran out
  2  usage or connection: a bad option or argument, the gateway cannot be reached,
     --url names something else (a redirect, an answer that is not JSON), no token
     or an unknown one (401), the database cannot be used
  3, 4  rollout status --watch: the rollout was rolled back (3) or aborted (4)

\b
-o table|wide|json, --url and --token may stand anywhere on the line; json prints the
API's answer as one JSON document on stdout (serve, worker and demo print logs, not a
result: they refuse -o; MODELGATE_LOG_FORMAT=json makes their lines JSON). Tables are
never cut when piped."""


@click.group(cls=_Main, epilog=EPILOG)
@click.version_option(package_name="modelgate", message="modelgate %(version)s")
@click.option("--url", default=None, help="admin commands: gateway URL (MODELGATE_URL)")
@click.option("--token", default=None, help="admin commands: bearer token (MODELGATE_TOKEN)")
@click.option(
    "-o",
    "--output",
    type=click.Choice(FORMATS),
    default="table",
    help="admin commands: a table, a wide table (more columns), or the API's JSON for "
    "scripts; anywhere on the line",
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
@click.pass_context
def serve(ctx: click.Context, host: str | None, port: int | None, grpc_port: int | None) -> None:
    """Run the gateway: data plane (HTTP, and gRPC with --grpc-port) and admin API (it
    writes logs, JSON lines with MODELGATE_LOG_FORMAT=json; -o does not apply)."""
    refuse_output(ctx)
    from gateway.server import run_gateway
    from gateway.settings import GatewaySettings

    given = {"host": host, "port": port, "grpc_port": grpc_port}
    overrides = {k: v for k, v in given.items() if v is not None}
    run_gateway(RegistrySettings(), GatewaySettings().model_copy(update=overrides))


@main.group()
def db() -> None:
    """Database schema commands."""


@db.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Migrate the configured database (MODELGATE_DATABASE_URL) to the newest schema (with
    -o json: {"database_url", "revision"} on stdout, the password hidden)."""
    from alembic.script import ScriptDirectory

    from registry.db import alembic_config, upgrade_to_head

    settings = RegistrySettings()
    upgrade_to_head(settings.database_url)
    url = _redacted(settings.database_url)
    revision = ScriptDirectory.from_config(alembic_config(settings.database_url)).get_current_head()
    if wants_json(ctx):
        emit_json({"database_url": url, "revision": revision})
    else:
        click.echo(f"database at head ({revision}): {url}", err=True)


@main.command()
@click.option("--port", type=int, default=8000, help="gateway port")
@click.option("--keep/--no-keep", default=True, help="keep serving after the tour (Ctrl-C ends)")
@click.pass_context
def demo(ctx: click.Context, port: int, keep: bool) -> None:
    """The embedded end-to-end demo: SQLite, no Redis, generated models (it prints a tour
    and logs; -o does not apply)."""
    from modelgate.cli.demo import DemoError, run_demo

    refuse_output(ctx)
    try:
        run_demo(port=port, keep=keep)
    except DemoError as exc:
        raise UsageProblem(str(exc)) from None


main.add_command(worker)
main.add_command(artifacts)
main.add_command(seed)
register(main)


def _redacted(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


if __name__ == "__main__":
    main()
