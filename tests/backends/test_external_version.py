"""A modelgate worker asked to load a version published with runtime external (no artifact)
refuses it, saying who serves it (real SQLite and PostgreSQL, migrated)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from backends.errors import LoadFailed
from backends.registry_source import RegistrySource
from registry.artifacts import ArtifactStore
from registry.catalog import CatalogService
from registry.db import make_sessionmaker
from registry.schemas import ModelIn


async def test_an_external_version_is_refused(engine: AsyncEngine, tmp_path: Path) -> None:
    sessions = make_sessionmaker(engine)
    catalog = CatalogService(sessions)
    name = f"x-{uuid.uuid4().hex[:10]}"
    await catalog.create_model("t", ModelIn(name=name))
    await catalog.publish(
        "t", name, "1.0.0", artifact=None, artifact_uri="", signature={}, runtime="external"
    )
    source = RegistrySource(sessions, ArtifactStore(tmp_path))
    with pytest.raises(LoadFailed, match=rf'{name}@1\.0\.0 was published with runtime "external"'):
        await source.fetch(name, "1.0.0")
