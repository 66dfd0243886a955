"""The artifact store never keeps a file for a publish that failed, and its filesystem's
failures answer 507/503, never 500 (issue 8, findings 5 and 11), on SQLite and PostgreSQL.

Each test has its own artifact root with a long grace and no timer, so nothing but the
publish path itself can have cleaned up: "no file left" here means none was ever left."""

from __future__ import annotations

import errno
import hashlib
import os
import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import event
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Session, UOWTransaction
from sqlalchemy.pool import NullPool

from gateway.app import create_app
from gateway.settings import GatewaySettings
from registry import artifacts
from registry.artifact_gc import ArtifactCollector
from registry.artifacts import ArtifactStore
from registry.db import make_engine, make_sessionmaker
from registry.models import ModelVersion
from registry.settings import RegistrySettings
from tests.support.admin import Client, create_model
from tests.support.models import onnx_bytes


def leftovers(root: Path) -> list[Path]:
    """Every file under the artifact root, temp files included."""
    return sorted(p for p in root.rglob("*") if p.is_file())


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> RegistrySettings:
    imports = tmp_path / "imports"
    imports.mkdir()
    return RegistrySettings(
        database_url=database_url,
        artifact_root=tmp_path / "artifacts",
        max_artifact_bytes=256 * 1024,
        import_roots=[imports],
        artifact_grace_s=3600,
        artifact_gc_interval_s=0,
    )


@pytest.fixture
async def store_client(
    settings: RegistrySettings, tokens: dict[str, str]
) -> AsyncIterator[AsyncTestClient[Litestar]]:
    engine = make_engine(settings.database_url, poolclass=NullPool)
    app = create_app(settings, GatewaySettings(), engine=engine)
    async with AsyncTestClient(app=app) as client:
        client.headers["Authorization"] = f"Bearer {tokens['admin']}"
        yield client
    await engine.dispose()


def unique_model() -> bytes:
    """A valid model whose bytes no other test publishes (so no other row names them)."""
    return onnx_bytes(scale=random.uniform(1.0, 1000.0))


async def upload(client: Client, model: str, data: dict[str, str], content: bytes) -> Any:
    files = {"file": ("model.onnx", content, "application/octet-stream")}
    return await client.post(f"/admin/v1/models/{model}/versions", data=data, files=files)


async def test_a_junk_upload_leaves_no_file(
    store_client: Client, settings: RegistrySettings, model_name: str
) -> None:
    await create_model(store_client, model_name)
    response = await upload(store_client, model_name, {"version": "1.0.0"}, b"junk" * 1000)
    assert response.status_code == 400, response.text
    assert "not a valid ONNX model" in response.json()["error"]
    assert leftovers(settings.artifact_root) == []


async def test_a_junk_uri_publish_leaves_no_file(
    store_client: Client, settings: RegistrySettings, model_name: str
) -> None:
    await create_model(store_client, model_name)
    junk = settings.import_roots[0] / "junk.onnx"
    junk.write_bytes(b"junk" * 1000)
    body = {
        "version": "1.0.0",
        "artifact_uri": junk.as_uri(),
        "sha256": hashlib.sha256(junk.read_bytes()).hexdigest(),
    }
    response = await store_client.post(f"/admin/v1/models/{model_name}/versions", json=body)
    assert response.status_code == 400, response.text
    assert leftovers(settings.artifact_root) == []


@pytest.mark.parametrize(
    ("data", "content", "status", "message"),
    [
        ({}, None, 400, '"version" field'),
        ({"version": "1.0.0", "priority": "many"}, None, 400, '"priority" must be an integer'),
        ({"version": "1.0.0"}, b"\0" * (300 * 1024), 413, "larger than the limit"),
    ],
    ids=["no-version", "bad-field", "too-large"],
)
async def test_a_rejected_form_leaves_no_file(
    store_client: Client,
    settings: RegistrySettings,
    model_name: str,
    data: dict[str, str],
    content: bytes | None,
    status: int,
    message: str,
) -> None:
    await create_model(store_client, model_name)
    response = await upload(store_client, model_name, data, content or unique_model())
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    assert leftovers(settings.artifact_root) == []


async def test_losers_of_a_same_version_race_leave_no_file(
    store_client: Client, settings: RegistrySettings, model_name: str
) -> None:
    import asyncio

    await create_model(store_client, model_name)
    results = await asyncio.gather(
        *(upload(store_client, model_name, {"version": "1.0.0"}, unique_model()) for _ in range(4))
    )
    assert sorted(r.status_code for r in results) == [201, 409, 409, 409]
    winner = next(r.json() for r in results if r.status_code == 201)
    assert leftovers(settings.artifact_root) == [settings.artifact_root / winner["storage_key"]]
    stored = (settings.artifact_root / winner["storage_key"]).read_bytes()
    assert hashlib.sha256(stored).hexdigest() == winner["sha256"]


@pytest.fixture
def commits_rejected() -> Iterator[None]:
    """The database refuses every commit that would add a version (as a deferred
    constraint or a trigger would), after the flush has succeeded."""

    def mark(session: Session, _flush: UOWTransaction, _objects: object) -> None:
        if any(isinstance(row, ModelVersion) for row in session.new):
            session.info["adds_version"] = True

    def reject(session: Session) -> None:
        if session.info.pop("adds_version", False):
            raise IntegrityError("COMMIT", None, Exception("rejected by the test"))

    event.listen(Session, "before_flush", mark)
    event.listen(Session, "before_commit", reject)
    yield
    event.remove(Session, "before_commit", reject)
    event.remove(Session, "before_flush", mark)


async def test_a_rejected_commit_leaves_no_file(
    store_client: Client, settings: RegistrySettings, model_name: str, commits_rejected: None
) -> None:
    await create_model(store_client, model_name)
    response = await upload(store_client, model_name, {"version": "1.0.0"}, unique_model())
    assert response.status_code == 409, response.text
    missing = await store_client.get(f"/admin/v1/models/{model_name}/versions/1.0.0")
    assert missing.status_code == 404
    assert leftovers(settings.artifact_root) == []


async def test_a_published_upload_is_in_the_store_and_nothing_else(
    store_client: Client, settings: RegistrySettings, model_name: str
) -> None:
    await create_model(store_client, model_name)
    content = unique_model()
    form = {"version": "1.0.0", "description": "d", "labels": '{"team": "x"}', "priority": "3"}
    response = await upload(store_client, model_name, form, content)
    assert response.status_code == 201, response.text
    out = response.json()
    assert (out["sha256"], out["size_bytes"]) == (hashlib.sha256(content).hexdigest(), len(content))
    assert (out["priority"], out["labels"], out["description"]) == (3, {"team": "x"}, "d")
    assert out["signature"]["inputs"][0]["name"] == "input"
    assert leftovers(settings.artifact_root) == [settings.artifact_root / out["storage_key"]]


def _failing(code: int) -> Any:
    def fail(*_args: Any, **_kwargs: Any) -> Any:
        raise OSError(code, "injected")

    return fail


@pytest.mark.parametrize(
    ("where", "code", "status", "reason"),
    [
        ("write", errno.ENOSPC, 507, "No space left on device"),
        ("write", errno.EDQUOT, 507, "Disk quota exceeded"),
        ("open", errno.EROFS, 503, "Read-only file system"),
        ("open", errno.EACCES, 503, "Permission denied"),
    ],
)
async def test_storage_failures_answer_507_or_503_with_the_reason(
    store_client: Client,
    settings: RegistrySettings,
    model_name: str,
    monkeypatch: pytest.MonkeyPatch,
    where: str,
    code: int,
    status: int,
    reason: str,
) -> None:
    await create_model(store_client, model_name)
    if where == "write":
        monkeypatch.setattr(artifacts._TempFile, "write_block", _failing(code))
    else:
        monkeypatch.setattr(artifacts.tempfile, "mkstemp", _failing(code))
    response = await upload(store_client, model_name, {"version": "1.0.0"}, unique_model())
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert reason in error
    assert str(settings.artifact_root.resolve()) in error
    if status == 503:
        assert response.headers["retry-after"].isdigit()
    assert leftovers(settings.artifact_root) == []


async def test_a_failed_rename_after_the_commit_is_rolled_forward(
    store_client: Client,
    settings: RegistrySettings,
    engine: AsyncEngine,
    model_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await create_model(store_client, model_name)
    shards = settings.artifact_root.resolve() / "sha256"
    replace = os.replace

    def failing_into_the_store(src: Any, dst: Any) -> None:
        if shards in Path(dst).parents:
            raise OSError(errno.EIO, "injected")
        replace(src, dst)

    monkeypatch.setattr(artifacts.os, "replace", failing_into_the_store)
    response = await upload(store_client, model_name, {"version": "1.0.0"}, unique_model())
    assert response.status_code == 503, response.text
    assert "Input/output error" in response.json()["error"]
    monkeypatch.undo()
    staged = leftovers(settings.artifact_root)
    assert [p.parent.name for p in staged] == ["tmp"], staged  # kept, not discarded

    collector = ArtifactCollector(
        ArtifactStore(settings.artifact_root), make_sessionmaker(engine), grace_s=0
    )
    swept = await collector.sweep()
    assert [f.kind for f in swept.files] == ["restore"]
    row = (await store_client.get(f"/admin/v1/models/{model_name}/versions/1.0.0")).json()
    assert leftovers(settings.artifact_root) == [settings.artifact_root / row["storage_key"]]
