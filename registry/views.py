"""Read views: the registry's rows as resolution sees them (`ModelView`), in a few queries.

Both the admin services (explain, model views) and the gateway's snapshot read through
here; nothing in this module writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from registry.constraints import parse_version
from registry.models import (
    ACTIVE_ROLLOUT_STATES,
    Alias,
    Model,
    ModelVersion,
    Rollout,
    TrafficPolicy,
)
from registry.resolution import Arm, ModelView, Policy, Shadow, VersionInfo

__all__ = ["ActiveRollout", "load_active_rollouts", "load_views", "policy_of", "version_info"]


@dataclass(frozen=True, slots=True)
class ActiveRollout:
    """A model's waiting, running or paused rollout, as every gateway replica knows it."""

    id: int
    candidate: str
    baseline: str
    state: str


async def load_active_rollouts(session: AsyncSession) -> dict[str, ActiveRollout]:
    """The active rollout of each model that has one (at most one per model), by model name."""
    rows = await session.execute(
        select(Rollout, Model.name)
        .join(Model, Model.id == Rollout.model_id)
        .where(Rollout.state.in_([str(s) for s in ACTIVE_ROLLOUT_STATES]))
        .order_by(Rollout.id)
    )
    return {
        name: ActiveRollout(row.id, row.version, row.baseline, row.state)
        for row, name in rows.all()
    }


async def load_views(session: AsyncSession, models: Sequence[Model]) -> dict[str, ModelView]:
    """Build resolution views for ``models`` in three queries (explain, snapshots)."""
    ids = [m.id for m in models]
    versions: dict[int, list[ModelVersion]] = {i: [] for i in ids}
    by_id: dict[int, ModelVersion] = {}
    for row in (
        await session.execute(select(ModelVersion).where(ModelVersion.model_id.in_(ids)))
    ).scalars():
        versions[row.model_id].append(row)
        by_id[row.id] = row
    aliases: dict[int, dict[str, str]] = {i: {} for i in ids}
    for alias in (await session.execute(select(Alias).where(Alias.model_id.in_(ids)))).scalars():
        aliases[alias.model_id][alias.name] = by_id[alias.version_id].version
    policies: dict[int, Policy] = {}
    query = select(TrafficPolicy).where(TrafficPolicy.model_id.in_(ids))
    for policy_row in (await session.execute(query)).scalars():
        policies[policy_row.model_id] = policy_of(policy_row)
    return {
        m.name: ModelView.build(
            m.name, [version_info(v) for v in versions[m.id]], aliases[m.id], policies.get(m.id)
        )
        for m in models
    }


def policy_of(row: TrafficPolicy) -> Policy:
    shadow = Shadow(row.shadow["version"], float(row.shadow["fraction"])) if row.shadow else None
    arms = tuple(Arm(a["version"], int(a["weight"])) for a in row.arms)
    return Policy(arms, row.sticky_header, shadow)


def version_info(row: ModelVersion) -> VersionInfo:
    return VersionInfo(row.version, parse_version(row.version), row.status, row.priority)
