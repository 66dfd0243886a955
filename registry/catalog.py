"""Models and versions: create, publish, list, change status and priority."""

from __future__ import annotations

from typing import Any

import semver
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from registry._base import ServiceBase, check_if_match, etag
from registry.artifacts import StoredArtifact
from registry.constraints import parse_constraint, parse_version
from registry.errors import Conflict, VersionConflict
from registry.models import (
    ACTIVE_ROLLOUT_STATES,
    Model,
    ModelVersion,
    Rollout,
    TrafficPolicy,
    VersionStatus,
)
from registry.resolution import ModelView
from registry.schemas import ModelIn, ModelOut, Page, VersionOut, VersionPatch
from registry.views import load_views

__all__ = ["CatalogService", "version_out"]


def model_out(model: Model, versions: int) -> ModelOut:
    return ModelOut(
        name=model.name,
        description=model.description,
        created_at=model.created_at,
        created_by=model.created_by,
        updated_at=model.updated_at,
        versions=versions,
        etag=etag("m", model.id, model.row_version),
    )


def version_out(model: str, row: ModelVersion) -> VersionOut:
    return VersionOut(
        model=model,
        version=row.version,
        status=row.status,
        priority=row.priority,
        prerelease=row.is_prerelease,
        artifact_uri=row.artifact_uri,
        storage_key=row.storage_key,
        sha256=row.sha256,
        size_bytes=row.size_bytes,
        runtime=row.runtime,
        signature=row.signature,
        labels=row.labels,
        description=row.description,
        created_at=row.created_at,
        created_by=row.created_by,
        updated_at=row.updated_at,
        etag=etag("v", row.id, row.row_version),
    )


def _mutable(row: ModelVersion) -> dict[str, Any]:
    return {
        "version": row.version,
        "status": row.status,
        "priority": row.priority,
        "labels": dict(row.labels),
    }


class CatalogService(ServiceBase):
    """The registry's models and their published versions."""

    async def create_model(self, actor: str, data: ModelIn) -> ModelOut:
        now = self.clock()
        try:
            async with self.write() as session:
                model = Model(
                    name=data.name,
                    description=data.description,
                    created_at=now,
                    created_by=actor,
                    updated_at=now,
                )
                session.add(model)
                await session.flush()
                after = {"name": model.name, "description": model.description}
                await self.record(
                    session,
                    actor=actor,
                    action="model.create",
                    model=model.name,
                    target=model.name,
                    before=None,
                    after=after,
                )
        except IntegrityError:
            raise Conflict(f'model "{data.name}" already exists') from None
        return model_out(model, 0)

    async def list_models(self, offset: int, limit: int) -> Page:
        async with self.read() as session:
            total = await session.scalar(select(func.count()).select_from(Model)) or 0
            counts = (
                select(ModelVersion.model_id, func.count().label("n"))
                .group_by(ModelVersion.model_id)
                .subquery()
            )
            rows = await session.execute(
                select(Model, func.coalesce(counts.c.n, 0))
                .outerjoin(counts, counts.c.model_id == Model.id)
                .order_by(Model.name)
                .offset(offset)
                .limit(limit)
            )
            items = [model_out(m, int(n)) for m, n in rows.all()]
        return Page(items=items, total=int(total), offset=offset, limit=limit)

    async def get_model(self, name: str) -> ModelOut:
        async with self.read() as session:
            model = await self.model_row(session, name)
            count = await session.scalar(
                select(func.count()).where(ModelVersion.model_id == model.id)
            )
            return model_out(model, int(count or 0))

    async def check_publishable(self, model: str, version: str) -> None:
        """Fail fast, before an artifact is stored: unknown model, bad or duplicate version."""
        parsed = parse_version(version)
        async with self.read() as session:
            row = await self.model_row(session, model)
            await self._check_duplicate(session, row, model, parsed)

    async def _check_duplicate(
        self, session: AsyncSession, model: Model, name: str, parsed: semver.Version
    ) -> None:
        existing = await self.find_version(session, model, parsed)
        if existing is not None:
            raise VersionConflict(
                f'version "{parsed}" of "{name}" conflicts with the published "{existing.version}" '
                f"(versions equal ignoring build metadata are the same version)"
            )

    async def publish(
        self,
        actor: str,
        model: str,
        version: str,
        *,
        artifact: StoredArtifact | None,
        artifact_uri: str,
        signature: dict[str, Any],
        priority: int = 0,
        labels: dict[str, str] | None = None,
        description: str = "",
        runtime: str = "onnxruntime",
    ) -> VersionOut:
        """Record a new immutable version; a precedence-equal one is a 409, even when racing.
        Without an ``artifact`` (runtime ``external``) its artifact fields are empty."""
        parsed = parse_version(version)
        now = self.clock()
        try:
            async with self.write() as session:
                owner = await self.model_row(session, model)
                await self._check_duplicate(session, owner, model, parsed)
                row = ModelVersion(
                    model_id=owner.id,
                    version=str(parsed),
                    major=parsed.major,
                    minor=parsed.minor,
                    patch=parsed.patch,
                    prerelease=parsed.prerelease or "",
                    build=parsed.build or "",
                    is_prerelease=bool(parsed.prerelease),
                    artifact_uri=artifact_uri,
                    storage_key=artifact.storage_key if artifact is not None else "",
                    sha256=artifact.sha256 if artifact is not None else "",
                    size_bytes=artifact.size_bytes if artifact is not None else 0,
                    runtime=runtime,
                    signature=signature,
                    status=VersionStatus.ACTIVE,
                    priority=priority,
                    labels=dict(labels or {}),
                    description=description,
                    created_at=now,
                    created_by=actor,
                    updated_at=now,
                )
                session.add(row)
                await session.flush()
                after = _mutable(row) | {
                    "sha256": row.sha256,
                    "artifact_uri": artifact_uri,
                    "runtime": runtime,
                }
                await self.record(
                    session,
                    actor=actor,
                    action="version.publish",
                    model=model,
                    target=f"{model}@{row.version}",
                    before=None,
                    after=after,
                )
        except IntegrityError:
            raise VersionConflict(
                f'version "{parsed}" of "{model}" was published concurrently by someone else'
            ) from None
        return version_out(model, row)

    async def get_version(self, model: str, version: str) -> VersionOut:
        async with self.read() as session:
            owner = await self.model_row(session, model)
            return version_out(model, await self.version_row(session, owner, version))

    async def list_versions(
        self,
        model: str,
        *,
        status: str | None,
        constraint: str | None,
        include_prerelease: bool,
        offset: int,
        limit: int,
    ) -> Page:
        """Versions highest first; ``constraint`` filters with npm semantics."""
        allowed = parse_constraint(constraint) if constraint else None
        async with self.read() as session:
            owner = await self.model_row(session, model)
            query = select(ModelVersion).where(ModelVersion.model_id == owner.id)
            if status:
                query = query.where(ModelVersion.status == status)
            rows = list((await session.execute(query)).scalars().all())
        parsed = {row.id: parse_version(row.version) for row in rows}
        rows.sort(key=lambda r: parsed[r.id], reverse=True)
        if allowed is not None:
            rows = [
                r
                for r in rows
                if allowed.allows(parsed[r.id], include_prerelease=include_prerelease)
            ]
        items = [version_out(model, r) for r in rows[offset : offset + limit]]
        return Page(items=items, total=len(rows), offset=offset, limit=limit)

    async def _uses(self, session: AsyncSession, owner: Model, version: str) -> list[str]:
        """What serves through ``version`` now: policy arms, the shadow, active rollouts."""
        uses: list[str] = []
        policy = await session.scalar(
            select(TrafficPolicy).where(TrafficPolicy.model_id == owner.id)
        )
        if policy is not None:
            for arm in policy.arms:
                if arm["version"] == version:
                    uses.append(
                        f'an arm of the traffic policy of "{owner.name}" (weight {arm["weight"]})'
                    )
            if policy.shadow is not None and policy.shadow["version"] == version:
                uses.append(f'the shadow of the traffic policy of "{owner.name}"')
        rollouts = await session.execute(
            select(Rollout)
            .where(
                Rollout.model_id == owner.id,
                Rollout.state.in_([str(s) for s in ACTIVE_ROLLOUT_STATES]),
            )
            .order_by(Rollout.id)
        )
        for rollout in rollouts.scalars():
            label = (
                f"rollout {rollout.id} ({rollout.baseline} → {rollout.version}, {rollout.state})"
            )
            if rollout.version == version:
                uses.append(f"the candidate of {label}")
            if rollout.baseline == version:
                uses.append(f"the baseline of {label}")
        return uses

    async def patch_version(
        self,
        actor: str,
        model: str,
        version: str,
        patch: VersionPatch,
        if_match: str | None,
        *,
        force: bool = False,
    ) -> VersionOut:
        """Change status, priority or labels. Deprecating or yanking a version that is a
        policy arm (or the shadow) or in an active rollout is a 409 naming it, unless
        ``force``."""
        async with self.write() as session:
            owner = await self.model_row(session, model, lock=True)
            row = await self.version_row(session, owner, version)
            check_if_match(if_match, etag("v", row.id, row.row_version))
            retiring = patch.status in (VersionStatus.DEPRECATED, VersionStatus.YANKED)
            if retiring and patch.status != row.status and not force:
                uses = await self._uses(session, owner, row.version)
                if uses:
                    verb = "deprecate" if patch.status == "deprecated" else "yank"
                    raise Conflict(
                        f'cannot {verb} version "{row.version}" of "{model}": it is '
                        + "; ".join(uses)
                        + f". Change those first, or {verb} it anyway with ?force=true"
                    )
            before = _mutable(row)
            if patch.status is not None:
                row.status = patch.status
            if patch.priority is not None:
                row.priority = patch.priority
            if patch.labels is not None:
                row.labels = dict(patch.labels)
            after = _mutable(row)
            if after != before:
                row.row_version += 1
                row.updated_at = self.clock()
                action = (
                    "version.status" if after["status"] != before["status"] else "version.update"
                )
                await self.record(
                    session,
                    actor=actor,
                    action=action,
                    model=model,
                    target=f"{model}@{row.version}",
                    before=before,
                    after=after,
                )
            await session.flush()
        return version_out(model, row)

    async def view(self, model: str) -> ModelView:
        """The model as resolution sees it (versions, aliases, policy), read from SQL."""
        async with self.read() as session:
            owner = await self.model_row(session, model)
            views = await load_views(session, [owner])
        return views[owner.name]
