"""Loading from the registry (real SQLite and PostgreSQL, migrated) and announcing the worker
to the ``workers`` table and to Redis."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from backends.announce import Announcer
from backends.dataplane import DataPlane, WorkerOptions
from backends.registry_source import RegistrySource
from backends.settings import WorkerSettings
from backends.source import ChainSource, FileSource
from registry.artifacts import ArtifactStore
from registry.db import make_sessionmaker
from registry.errors import ChecksumMismatch, ModelNotFound, VersionNotFound
from registry.models import Worker
from tests.support.isolation import REDIS_URL, scoped
from tests.support.registry import publish

KEYS = scoped("announce")


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "artifacts")


@pytest.fixture
async def published(engine: AsyncEngine, store: ArtifactStore, model_dir: Path) -> str:
    name = f"w-{uuid.uuid4().hex[:10]}"
    scale = (model_dir / "scale-1.onnx").read_bytes()
    await publish(engine, store, name, {
        "1.0.0": (scale, "active", {}),
        "1.1.0+build.3": (scale, "deprecated", {"modelgate.fault.error_rate": "0.5"}),
        "2.0.0": (scale, "yanked", {}),
    })  # fmt: skip
    return name


async def test_fetch_exact_version_with_verified_artifact(
    engine: AsyncEngine, store: ArtifactStore, published: str
) -> None:
    source = RegistrySource(make_sessionmaker(engine), store)
    artifact = await source.fetch(published, "1.0.0")
    assert artifact.version == "1.0.0"
    assert hashlib.sha256(artifact.path.read_bytes()).hexdigest() == artifact.sha256
    other = await source.fetch(published, "1.1.0")
    assert other.version == "1.1.0+build.3"
    assert other.labels == {"modelgate.fault.error_rate": "0.5"}


async def test_fetch_refuses_yanked_unknown_and_corrupt(
    engine: AsyncEngine, store: ArtifactStore, published: str
) -> None:
    source = RegistrySource(make_sessionmaker(engine), store)
    with pytest.raises(VersionNotFound, match=r'"2.0.0" of .* is yanked and cannot be loaded'):
        await source.fetch(published, "2.0.0")
    with pytest.raises(VersionNotFound, match=r'version "3.0.0"'):
        await source.fetch(published, "3.0.0")
    with pytest.raises(ModelNotFound):
        await source.fetch("no-such-model", "1.0.0")
    artifact = await source.fetch(published, "1.0.0")
    artifact.path.write_bytes(b"tampered")
    with pytest.raises(ChecksumMismatch):
        await source.fetch(published, "1.0.0")


async def test_plane_loads_from_the_registry_with_version_labels(
    engine: AsyncEngine, store: ArtifactStore, published: str
) -> None:
    registry = RegistrySource(make_sessionmaker(engine), store)
    plane = DataPlane(WorkerOptions(), source=ChainSource([FileSource({}), registry]))
    loaded = await plane.load(published, "1.1.0")
    assert loaded.version == "1.1.0+build.3"
    assert loaded.faults.error_rate == 0.5
    assert plane.get(published, "1.1.0+other") is loaded
    await plane.close()


async def _serving_plane(model_dir: Path) -> DataPlane:
    plane = DataPlane(
        WorkerOptions(), source=FileSource({("scale", "1.0.0"): model_dir / "scale-1.onnx"})
    )
    await plane.load("scale", "1.0.0")
    plane.mark_started()
    return plane


async def test_announcer_upserts_the_workers_row(engine: AsyncEngine, model_dir: Path) -> None:
    plane = await _serving_plane(model_dir)
    worker_id = f"w-{uuid.uuid4().hex[:8]}"
    sessions = make_sessionmaker(engine)
    announcer = Announcer(plane, worker_id=worker_id, url="http://127.0.0.1:9",
                          sessionmaker=sessions, interval_s=3600)  # fmt: skip
    await announcer.start()
    await _until(lambda: announcer.beats >= 1)
    async with sessions() as session:
        row = await session.get(Worker, worker_id)
        assert row is not None
        assert (row.url, row.state, row.device) == ("http://127.0.0.1:9", "ready", "cpu")
        assert row.loaded == [{"model": "scale", "version": "1.0.0", "ready": True}]
        assert row.capacity == 512
    plane.begin_drain()
    await _until(lambda: announcer.beats >= 2)
    await plane.close()
    await announcer.stop()
    async with sessions() as session:
        state = await session.scalar(select(Worker.state).where(Worker.id == worker_id))
        assert state == "stopped"


@pytest.mark.redis
async def test_announcer_sets_a_ttl_key_and_publishes(model_dir: Path, tmp_path: Path) -> None:
    plane = await _serving_plane(model_dir)
    worker_id = f"w-{uuid.uuid4().hex[:8]}"
    settings = WorkerSettings(id=worker_id, redis_url=REDIS_URL, heartbeat_ttl_s=30,
                              redis_prefix=KEYS.prefix,
                              heartbeat_interval_s=3600,
                              database_url=f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")  # fmt: skip
    announcer = Announcer.from_settings(settings, plane, database=False)
    probe = aioredis.from_url(REDIS_URL)
    pubsub = probe.pubsub()
    await pubsub.subscribe(KEYS.workers_channel)
    try:
        await announcer.announce()
        message = None
        for _ in range(100):
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
            if message is not None and message["data"] == worker_id.encode():
                break
        assert message is not None
        assert message["data"] == worker_id.encode()
        stored = json.loads(await probe.get(KEYS.worker(worker_id)))
        assert stored["state"] == "ready"
        assert stored["loaded"] == [{"model": "scale", "version": "1.0.0", "ready": True}]
        assert 0 < await probe.pttl(KEYS.worker(worker_id)) <= 30_000
        await plane.close()
        await announcer.stop()
        stored = json.loads(await probe.get(KEYS.worker(worker_id)))
        assert stored["state"] == "stopped"
    finally:
        await probe.delete(KEYS.worker(worker_id))
        await pubsub.aclose()
        await probe.aclose()


def test_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELGATE_WORKER_MAX_BATCH_SIZE", "7")
    monkeypatch.setenv("MODELGATE_WORKER_FAULT_ERROR_RATE", "0.25")
    monkeypatch.setenv("MODELGATE_DATABASE_URL", "sqlite+aiosqlite:///elsewhere.db")
    monkeypatch.setenv("MODELGATE_REDIS_URL", REDIS_URL)
    settings = WorkerSettings(port=9100)
    options = settings.options()
    assert options.batch.max_batch_size == 7
    assert options.faults.error_rate == 0.25
    assert settings.database_url.endswith("elsewhere.db")
    assert settings.redis_url == REDIS_URL
    assert settings.worker_id.endswith("-9100")
    assert settings.advertised_url == "http://127.0.0.1:9100"
    assert settings.advertised_grpc_url is None


def test_the_grpc_target_takes_the_advertised_host() -> None:
    assert WorkerSettings(grpc_port=9101).advertised_grpc_url == "127.0.0.1:9101"
    moved = WorkerSettings(url="https://w1.internal:8443/", grpc_port=9101)
    assert moved.advertised_grpc_url == "w1.internal:9101"
    assert WorkerSettings(host="::1", grpc_port=9101).advertised_grpc_url == "[::1]:9101"


async def _until(check: object, attempts: int = 500) -> None:
    for _ in range(attempts):
        if check():  # type: ignore[operator]
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never became true")
