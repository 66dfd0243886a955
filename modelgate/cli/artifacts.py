"""``modelgate artifacts gc [--dry-run]``: sweep the artifact store once, with direct access
to the database and the store (like ``tokens create``), and list what went (or would go)."""

from __future__ import annotations

import asyncio

import click
from sqlalchemy.exc import OperationalError, ProgrammingError

from modelgate.cli.output import emit_json, wants_json
from registry.artifact_gc import ArtifactCollector, Sweep
from registry.artifacts import ArtifactStore
from registry.db import make_engine, make_sessionmaker
from registry.settings import RegistrySettings

__all__ = ["artifacts"]


@click.group()
def artifacts() -> None:
    """The artifact store (direct database and filesystem access)."""


@artifacts.command("gc")
@click.option("--dry-run", is_flag=True, help="list what would go; change nothing")
@click.option(
    "--grace-s",
    type=click.FloatRange(min=0),
    default=None,
    help="keep files younger than this (default MODELGATE_REGISTRY_ARTIFACT_GRACE_S)",
)
@click.pass_context
def gc(ctx: click.Context, dry_run: bool, grace_s: float | None) -> None:
    """Remove temp files and orphans (store files no version names) older than the grace;
    move a staged file whose version committed into place (with -o json: the sweep as one
    document, {"dry_run", "root", "grace_s", "files", "bytes", "errors"}, on stdout)."""
    settings = RegistrySettings()
    grace = settings.artifact_grace_s if grace_s is None else grace_s
    sweep = asyncio.run(_sweep(settings, grace, dry_run))
    verb = {"temp": "remove", "orphan": "remove", "restore": "restore"}
    done = [
        (("would " if dry_run else "") + verb[swept.kind] + ("" if dry_run else "d"), swept)
        for swept in sweep.files
    ]
    if wants_json(ctx):
        emit_json(
            {
                "dry_run": dry_run,
                "root": str(settings.artifact_root),
                "grace_s": grace,
                "files": [
                    {
                        "action": action,
                        "kind": f.kind,
                        "path": str(f.path),
                        "size_bytes": f.size_bytes,
                        "age_s": f.age_s,
                    }
                    for action, f in done
                ],
                "bytes": sweep.bytes,
                "errors": [str(error) for error in sweep.errors],
            }
        )
    else:
        for action, swept in done:
            click.echo(
                f"{action} {swept.kind} {swept.path} "
                f"({swept.size_bytes} bytes, {swept.age_s:.0f} s old)"
            )
    for error in sweep.errors:
        click.echo(f"could not sweep {error}", err=True)
    freed = "would free" if dry_run else "freed"
    click.echo(
        f"{len(sweep.files)} files, {freed} {sweep.bytes} bytes in {settings.artifact_root} "
        f"(grace {grace:g} s)",
        err=True,
    )
    if sweep.errors:
        raise SystemExit(1)


async def _sweep(settings: RegistrySettings, grace_s: float, dry_run: bool) -> Sweep:
    engine = make_engine(settings.database_url)
    try:
        store = ArtifactStore(settings.artifact_root)
        collector = ArtifactCollector(store, make_sessionmaker(engine), grace_s=grace_s)
        return await collector.sweep(dry_run=dry_run)
    except (OperationalError, ProgrammingError) as exc:
        raise click.ClickException(
            f"cannot read the versions ({exc.orig}); has the database been migrated? "
            f"run: modelgate db upgrade"
        ) from None
    finally:
        await engine.dispose()
