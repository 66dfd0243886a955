"""Registry rows written directly, for tests of the parts that read them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from registry.artifacts import ArtifactStore
from registry.db import make_sessionmaker
from registry.models import Model, ModelVersion
from registry.tokens import TokenService


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def publish(engine: AsyncEngine, store: ArtifactStore, model: str,
                  versions: dict[str, tuple[bytes, str, dict[str, str]]]) -> None:  # fmt: skip
    """Insert a model and versions ``{version: (onnx bytes, status, labels)}`` directly."""
    now = datetime.now(UTC)
    async with make_sessionmaker(engine)() as session, session.begin():
        row = Model(name=model, description="", created_at=now, created_by="t", updated_at=now)
        session.add(row)
        await session.flush()
        for version, (data, status, labels) in versions.items():
            stored = await store.ingest(_chunks(data), limit=1 << 20)
            core, _, build = version.partition("+")
            core, _, pre = core.partition("-")
            major, minor, patch = (int(p) for p in core.split("."))
            session.add(ModelVersion(
                model_id=row.id, version=version, major=major, minor=minor, patch=patch,
                prerelease=pre, build=build, is_prerelease=bool(pre),
                artifact_uri=f"file://{stored.path}", storage_key=stored.storage_key,
                sha256=stored.sha256, size_bytes=stored.size_bytes, runtime="onnx",
                signature={}, status=status, labels=labels, created_at=now, created_by="t",
                updated_at=now,
            ))  # fmt: skip


async def make_token(engine: AsyncEngine, *scopes: str) -> str:
    """A token with ``scopes``, written straight to the database."""
    out = await TokenService(make_sessionmaker(engine)).create(
        "test", f"t-{'-'.join(scopes)}", list(scopes)
    )
    assert out.token is not None
    return out.token
