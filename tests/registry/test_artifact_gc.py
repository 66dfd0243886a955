"""The artifact collector and ``modelgate artifacts gc``: temp files and orphans older than
the grace go, what a row names stays, files being written are left alone, and a staged file
whose row committed (a crash before the rename) is moved into place (issue 8, finding 5)."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from registry.artifact_gc import ArtifactCollector
from registry.artifacts import ArtifactStore, StagedArtifact
from registry.catalog import CatalogService
from registry.db import make_sessionmaker
from registry.publishing import Publisher
from registry.schemas import ModelIn
from registry.settings import RegistrySettings
from tests.support.models import onnx_bytes

HOUR = 3600.0


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


def age(path: Path, seconds: float) -> Path:
    """Make ``path`` look ``seconds`` old."""
    then = time.time() - seconds
    os.utime(path, (then, then))
    return path


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "artifacts")


@pytest.fixture
def publisher(engine: AsyncEngine, store: ArtifactStore, database_url: str) -> Publisher:
    settings = RegistrySettings(database_url=database_url, artifact_root=store.root)
    return Publisher(settings, store, CatalogService(make_sessionmaker(engine)))


def collector(engine: AsyncEngine, store: ArtifactStore, grace_s: float) -> ArtifactCollector:
    return ArtifactCollector(store, make_sessionmaker(engine), grace_s=grace_s)


async def published(publisher: Publisher, model: str) -> StagedArtifact:
    """A model with version 1.0.0 of unique bytes, published through the real path."""
    await publisher.catalog.create_model("t", ModelIn(name=model))
    staged = await publisher.store.stage(
        chunks(onnx_bytes(scale=random.uniform(1, 1000))), limit=1 << 20
    )
    await publisher.publish_staged("t", model, "1.0.0", staged, uri="upload:m.onnx")
    return staged


def plant(store: ArtifactStore, relative: str, data: bytes = b"x" * 100) -> Path:
    path = store.root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


async def test_old_temp_files_and_orphans_go_and_the_rest_stays(
    engine: AsyncEngine, store: ArtifactStore, publisher: Publisher, model_name: str
) -> None:
    kept = (await published(publisher, model_name)).artifact.path
    age(kept, 2 * HOUR)
    orphan_sha = hashlib.sha256(b"orphan" + os.urandom(8)).hexdigest()
    orphan = age(plant(store, f"sha256/{orphan_sha[:2]}/{orphan_sha}"), 2 * HOUR)
    partial = age(plant(store, "tmp/upload-killed"), 2 * HOUR)
    unclaimed = age(plant(store, f"tmp/{orphan_sha}.abcd1234.staged"), 2 * HOUR)
    young = plant(store, "tmp/upload-young")

    dry = await collector(engine, store, HOUR).sweep(dry_run=True)
    assert sorted(f.path for f in dry.files) == sorted([orphan, partial, unclaimed])
    assert {f.kind for f in dry.files} == {"orphan", "temp"}
    assert all(p.exists() for p in (kept, orphan, partial, unclaimed, young))

    done = await collector(engine, store, HOUR).sweep()
    assert sorted(f.path for f in done.files) == sorted([orphan, partial, unclaimed])
    assert done.bytes == 300
    assert done.errors == []
    assert sorted(p for p in store.root.rglob("*") if p.is_file()) == sorted([kept, young])


async def test_files_being_written_are_never_swept(
    engine: AsyncEngine, store: ArtifactStore
) -> None:
    staging = store.open_staging(limit=1 << 20)
    await staging.write(b"x" * 10)
    age(staging.tmp, 2 * HOUR)
    assert (await collector(engine, store, 0).sweep()).files == []
    assert staging.tmp.exists()
    staging.abort()
    assert not staging.tmp.exists()


async def test_a_staged_file_whose_row_committed_is_restored(
    engine: AsyncEngine,
    store: ArtifactStore,
    publisher: Publisher,
    model_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The process "dies" between the commit and the rename: place never runs, and the
    # staged file is no longer this process's.
    monkeypatch.setattr(store, "place", lambda staged: staged.artifact)
    staged = await published(publisher, model_name)
    store.active.clear()
    assert staged.tmp.exists()
    assert not staged.artifact.path.exists()

    swept = await collector(engine, store, 0).sweep()
    assert [(f.kind, f.path) for f in swept.files] == [("restore", staged.tmp)]
    assert not staged.tmp.exists()
    assert store.verified_path(staged.artifact.storage_key, staged.artifact.sha256)


def test_cli_gc_lists_under_dry_run_then_removes(database_url: str, tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "artifacts")
    orphan = plant(store, f"sha256/ff/{'f' * 62}{os.urandom(1).hex()}")
    partial = plant(store, "tmp/upload-killed")
    env = {
        **os.environ,
        "MODELGATE_DATABASE_URL": database_url,
        "MODELGATE_ARTIFACT_ROOT": str(store.root),
        "MODELGATE_REGISTRY_ARTIFACT_GRACE_S": "0",
    }
    cli = [sys.executable, "-m", "modelgate", "artifacts", "gc"]

    dry = subprocess.run([*cli, "--dry-run"], env=env, capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr
    assert f"would remove orphan {orphan} (100 bytes" in dry.stdout
    assert f"would remove temp {partial} (100 bytes" in dry.stdout
    assert "2 files, would free 200 bytes" in dry.stderr
    assert orphan.exists()
    assert partial.exists()

    kept = subprocess.run([*cli, "--grace-s", "3600"], env=env, capture_output=True, text=True)
    assert kept.returncode == 0, kept.stderr
    assert "0 files" in kept.stderr
    assert orphan.exists()
    assert partial.exists()

    done = subprocess.run(cli, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"removed orphan {orphan}" in done.stdout
    assert not orphan.exists()
    assert not partial.exists()
