"""Writes of a model's traffic policy and aliases inside a caller's transaction.

Shared by the operator routes (`registry.policies`) and rollouts (`registry.rollouts`), so
a rollout's step replaces the policy, and its promotion moves the alias, exactly as an
operator's edit would: the row version moves (the ETag goes stale) and alias history grows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from registry.models import Alias, AliasHistory, Model, ModelVersion, TrafficPolicy

__all__ = ["move_alias", "policy_doc", "replace_arms"]


def policy_doc(row: TrafficPolicy | None) -> dict[str, Any] | None:
    """The policy as the audit log records it."""
    if row is None:
        return None
    return {"arms": row.arms, "sticky_header": row.sticky_header, "shadow": row.shadow}


async def replace_arms(
    session: AsyncSession, model: Model, arms: list[dict[str, Any]], actor: str, now: datetime
) -> TrafficPolicy:
    """Replace the policy's arms whole (a weight edit replaces, never appends); the sticky
    header and shadow stay. Creates the policy when the model has none."""
    row = await session.scalar(select(TrafficPolicy).where(TrafficPolicy.model_id == model.id))
    if row is None:
        row = TrafficPolicy(
            model_id=model.id,
            arms=arms,
            sticky_header="X-Route-Key",
            shadow=None,
            updated_at=now,
            updated_by=actor,
        )
        session.add(row)
    else:
        row.arms, row.updated_at, row.updated_by = arms, now, actor
        row.row_version += 1
    await session.flush()
    return row


async def move_alias(
    session: AsyncSession,
    model: Model,
    name: str,
    target: ModelVersion,
    actor: str,
    now: datetime,
    existing: Alias | None = None,
) -> tuple[Alias, str | None]:
    """Point alias ``name`` at ``target`` (created when absent) and write its history row;
    returns the alias and the version it pointed at before (None when created)."""
    row = existing
    if row is None:
        row = await session.scalar(
            select(Alias).where(Alias.model_id == model.id, Alias.name == name)
        )
    before: str | None = None
    if row is None:
        row = Alias(
            model_id=model.id, name=name, version_id=target.id, updated_at=now, updated_by=actor
        )
        session.add(row)
    else:
        previous = await session.get(ModelVersion, row.version_id)
        before = previous.version if previous else None
        row.version_id, row.updated_at, row.updated_by = target.id, now, actor
        row.row_version += 1
    session.add(
        AliasHistory(
            model_id=model.id,
            alias=name,
            from_version=before,
            to_version=target.version,
            changed_at=now,
            changed_by=actor,
        )
    )
    await session.flush()
    return row, before
