"""Load model versions from the registry: the version row, then the verified artifact."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from backends.errors import LoadFailed
from backends.source import Artifact
from backends.startup import VersionYanked
from modelgate.core.semver import split_version
from registry.artifacts import ArtifactStore
from registry.db import make_engine, make_sessionmaker, unavailable
from registry.errors import ModelNotFound, VersionNotFound
from registry.models import Model, ModelVersion, VersionStatus

__all__ = ["RegistrySource"]

#: ``model_versions.runtime`` of a version only external OIP servers serve.
EXTERNAL = "external"


class RegistrySource:
    """``fetch(model, version)``: the exact published version (build metadata may differ),
    refused when yanked or external (no artifact), its artifact's sha256 checked; a
    database that cannot be reached or is not migrated raises `DatabaseUnavailable`. Also
    a service: ``stop`` disposes the engine it owns."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        store: ArtifactStore,
        *,
        engine: AsyncEngine | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._store = store
        self._engine = engine

    @classmethod
    def from_settings(cls, settings: Any) -> RegistrySource:
        engine = make_engine(settings.database_url)
        return cls(make_sessionmaker(engine), ArtifactStore(settings.artifact_root), engine=engine)

    async def _row(self, model: str, version: str) -> ModelVersion:
        bind = self._engine or self._sessionmaker.kw.get("bind")
        with unavailable(bind.url if bind is not None else "the registry database"):
            return await self._find(model, version)

    async def _find(self, model: str, version: str) -> ModelVersion:
        async with self._sessionmaker() as session:
            query = select(ModelVersion).join(Model).where(Model.name == model)
            row = (
                await session.execute(query.where(ModelVersion.version == version))
            ).scalar_one_or_none()
            parts = split_version(version)
            if row is None and parts is not None:
                major, minor, patch, pre = parts
                row = (
                    await session.execute(
                        query.where(
                            ModelVersion.major == major,
                            ModelVersion.minor == minor,
                            ModelVersion.patch == patch,
                            ModelVersion.prerelease == pre,
                        )
                    )
                ).scalar_one_or_none()
            if row is None:
                exists = await session.scalar(select(Model.id).where(Model.name == model))
                if exists is None:
                    raise ModelNotFound(model)
                raise VersionNotFound(model, version)
            return row

    async def fetch(self, model: str, version: str) -> Artifact:
        row = await self._row(model, version)
        if row.status == VersionStatus.YANKED:
            raise VersionYanked(model, row.version)
        if row.runtime == EXTERNAL:
            raise LoadFailed(
                f'{model}@{row.version} was published with runtime "external": it has no '
                f"artifact, and only the external OIP servers registered for it (POST "
                f"/admin/v1/workers) serve it"
            )
        path = await asyncio.to_thread(self._store.verified_path, row.storage_key, row.sha256)
        return Artifact(model, row.version, path, row.sha256, dict(row.labels or {}))

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
