"""``modelgate seed``: a fresh registry's first contents, idempotently (direct database access).

Creates the model and publishes the given versions of the generated demo model
(`backends.synthetic.scale_model`, the one ``modelgate demo`` publishes: ``y = x * k``,
``k`` 1.0 for the first version, 1.5 for the second, and so on), so that workers started
with ``--load MODEL@VERSION`` have something to load; and creates an admin token unless
a live one of that name exists. What already exists is left as it is, so a second run (a
second ``docker compose up``) succeeds and changes nothing.

The new token, when one is made, is printed alone on stdout (shown only this once);
everything else goes to stderr. With ``-o json``, stdout has one document instead: ``model``,
``versions`` (each ``version``, ``outcome`` ``published`` or ``existed``, ``status``,
``sha256``) and ``token`` (``name``, ``created``, ``prefix``, and ``token``, the secret,
when it was just made; ``null`` with ``--token-name ''``).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from typing import Any

import click

from backends.synthetic import scale_model
from modelgate.cli.output import emit_json, wants_json
from registry.artifacts import ArtifactStore
from registry.catalog import CatalogService
from registry.db import make_engine, make_sessionmaker
from registry.errors import Conflict, VersionNotFound
from registry.publishing import Publisher
from registry.schemas import ModelIn
from registry.settings import RegistrySettings
from registry.tokens import TokenService

__all__ = ["seed"]

ACTOR = "cli:seed"


def _say(text: str) -> None:
    click.echo(f"seed: {text}", err=True)


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _publish(publisher: Publisher, model: str, versions: list[str]) -> list[dict[str, Any]]:
    """Publish each of ``versions`` that does not exist; what became of each."""
    catalog = publisher.catalog
    try:
        await catalog.create_model(ACTOR, ModelIn(name=model, description="generated y = x * k"))
        _say(f'created model "{model}"')
    except Conflict:
        _say(f'model "{model}" exists')
    done: list[dict[str, Any]] = []
    for index, version in enumerate(versions):
        try:
            found = await catalog.get_version(model, version)
            _say(f"{model}@{found.version} exists ({found.status}); left as it is")
            done.append(_outcome("existed", found.version, found.status, found.sha256))
            continue
        except VersionNotFound:
            pass
        scale = 1.0 + 0.5 * index
        data = scale_model(scale)
        staged = await publisher.store.stage(_once(data), limit=len(data) + 1)
        try:
            out = await publisher.publish_staged(
                ACTOR, model, version, staged, uri=f"seed:{model}-{version}.onnx"
            )
        except Conflict:  # NOTE: another seed published it meanwhile
            _say(f"{model}@{version} exists; left as it is")
            found = await catalog.get_version(model, version)
            done.append(_outcome("existed", found.version, found.status, found.sha256))
            continue
        _say(f"published {model}@{out.version} (y = x * {scale}, sha256 {out.sha256[:12]})")
        done.append(_outcome("published", out.version, out.status, out.sha256))
    return done


def _outcome(outcome: str, version: str, status: str, sha256: str | None) -> dict[str, Any]:
    return {"version": version, "outcome": outcome, "status": status, "sha256": sha256}


async def _token(service: TokenService, name: str) -> dict[str, Any]:
    live = [t for t in await service.list() if t.name == name and not t.revoked]
    if live:
        _say(f'token "{name}" exists (prefix {live[0].prefix}); no new one made')
        return {"name": name, "created": False, "prefix": live[0].prefix, "token": None}
    out = await service.create(ACTOR, name, ["admin"])
    _say(f'created admin token "{name}" (printed on stdout, shown only this once)')
    return {"name": name, "created": True, "prefix": out.prefix, "token": out.token}


async def run_seed(
    settings: RegistrySettings, model: str, versions: list[str], token_name: str | None
) -> dict[str, Any]:
    """Seed the registry of ``settings``; what it did (the ``-o json`` document), with the
    new token's secret in ``token.token`` if one was made."""
    engine = make_engine(settings.database_url, **settings.engine_options())
    try:
        sessions = make_sessionmaker(engine)
        store = ArtifactStore(settings.artifact_root)
        publisher = Publisher(settings, store, CatalogService(sessions))
        done = await _publish(publisher, model, versions)
        token = await _token(TokenService(sessions), token_name) if token_name else None
    finally:
        await engine.dispose()
    return {"model": model, "versions": done, "token": token}


@click.command()
@click.option("--model", default="resnet-demo", show_default=True, help="model to create")
@click.option(
    "--version",
    "versions",
    multiple=True,
    default=("1.0.0",),
    show_default=True,
    help="repeatable: versions of the generated model to publish",
)
@click.option(
    "--token-name",
    default="seed-admin",
    show_default=True,
    help="create an admin token of this name unless a live one exists ('' for none)",
)
@click.pass_context
def seed(ctx: click.Context, model: str, versions: tuple[str, ...], token_name: str) -> None:
    """Publish the generated demo model and make an admin token, unless they exist (the new
    token alone on stdout; with -o json, what was done as one document)."""
    done = asyncio.run(run_seed(RegistrySettings(), model, list(versions), token_name or None))
    if wants_json(ctx):
        emit_json(done)
    elif done["token"] is not None and done["token"]["token"] is not None:
        sys.stdout.write(done["token"]["token"] + "\n")
