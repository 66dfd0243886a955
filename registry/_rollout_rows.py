"""A rollout's rows as the API and the audit log show them, and how it ends: the policy
and alias writes of a promotion, a rollback or an abort."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from registry._base import as_utc
from registry._policy_writes import move_alias, replace_arms
from registry.constraints import parse_version
from registry.errors import BadRequest, RolloutLeaseLost
from registry.limits import ROW_ID_MAX
from registry.models import (
    Model,
    ModelVersion,
    Rollout,
    RolloutState,
    TrafficPolicy,
    VersionStatus,
)
from registry.schemas import RolloutOut

__all__ = [
    "arms_at",
    "check_driver",
    "default_baseline",
    "finish_back",
    "finish_promoted",
    "label",
    "lease_live",
    "lock_rollout",
    "rollout_doc",
    "rollout_out",
]


def rollout_out(model: str, row: Rollout) -> RolloutOut:
    return RolloutOut(
        id=row.id,
        model=model,
        version=row.version,
        baseline=row.baseline,
        alias=row.alias,
        state=row.state,
        step=row.step,
        weight=row.weight,
        steps=list(row.steps),
        interval_s=row.interval_s,
        gates=dict(row.gates),
        history=list(row.history),
        reason=row.reason,
        lease_holder=row.lease_holder,
        step_started_at=as_utc(row.step_started_at) if row.step_started_at else None,
        created_at=as_utc(row.created_at),
        updated_at=as_utc(row.updated_at),
        created_by=row.created_by,
        lease_expires_at=as_utc(row.lease_expires_at) if row.lease_expires_at else None,
    )


def rollout_doc(row: Rollout) -> dict[str, Any]:
    """What the audit log records of a rollout at each transition."""
    return {
        "id": row.id,
        "version": row.version,
        "baseline": row.baseline,
        "state": row.state,
        "step": row.step,
        "weight": row.weight,
        "reason": row.reason,
        "lease_holder": row.lease_holder,
    }


def label(row: Rollout) -> str:
    return f"rollout {row.id} ({row.baseline} → {row.version}, {row.state})"


def arms_at(candidate: str, baseline: str, weight: float) -> list[dict[str, Any]]:
    w = round(weight)
    if w >= 100:
        return [{"version": candidate, "weight": 100}]
    if w <= 0:
        return [{"version": baseline, "weight": 100}]
    return [{"version": candidate, "weight": w}, {"version": baseline, "weight": 100 - w}]


async def default_baseline(session: AsyncSession, owner: Model, candidate: ModelVersion) -> str:
    """The policy's highest-weight arm other than the candidate, else the highest stable
    version other than the candidate; a 400 when there is neither."""
    policy = await session.scalar(select(TrafficPolicy).where(TrafficPolicy.model_id == owner.id))
    if policy is not None:
        arms = [a for a in policy.arms if a["version"] != candidate.version and a["weight"] > 0]
        if arms:
            return str(max(arms, key=lambda a: int(a["weight"]))["version"])
    rows = await session.execute(
        select(ModelVersion).where(
            ModelVersion.model_id == owner.id,
            ModelVersion.status == VersionStatus.ACTIVE,
            ModelVersion.is_prerelease.is_(False),
            ModelVersion.id != candidate.id,
        )
    )
    stable = sorted((r.version for r in rows.scalars()), key=parse_version, reverse=True)
    if not stable:
        raise BadRequest(
            f'no baseline for "{owner.name}": no traffic policy arm and no stable version '
            f'besides {candidate.version}; name one with "baseline"'
        )
    return stable[0]


async def finish_promoted(
    session: AsyncSession, owner: Model, row: Rollout, actor: str, reason: str, now: datetime
) -> str | None:
    """State promoted: one arm on the candidate, the alias (if any) moved to it; returns the
    version the alias pointed at before (None: no alias, or it was created)."""
    row.state, row.weight, row.reason = RolloutState.PROMOTED, 100.0, reason
    row.lease_holder, row.lease_expires_at = None, None
    await replace_arms(session, owner, arms_at(row.version, row.baseline, 100), actor, now)
    if row.alias is None:
        return None
    target = await session.scalar(
        select(ModelVersion).where(
            ModelVersion.model_id == owner.id, ModelVersion.version == row.version
        )
    )
    assert target is not None, row.version
    _, before = await move_alias(session, owner, row.alias, target, actor, now)
    return before


async def finish_back(
    session: AsyncSession,
    owner: Model,
    row: Rollout,
    state: RolloutState,
    reason: str,
    actor: str,
    judgement: dict[str, Any] | None,
    now: datetime,
) -> None:
    """State rolled back or aborted: one arm on the baseline once a step was applied (before
    that the policy was never the rollout's to change)."""
    applied = row.step >= 0
    if judgement is not None:
        row.history = [*row.history, judgement]
    row.state, row.weight, row.reason = state, 0.0, reason
    row.lease_holder, row.lease_expires_at = None, None
    if applied:
        arms = arms_at(row.version, row.baseline, 0)
        await replace_arms(session, owner, arms, actor, now)


async def lock_rollout(session: AsyncSession, rollout_id: int) -> tuple[Model, Rollout] | None:
    """The rollout and its model, locked in the one order every rollout transaction takes
    (the model row FOR UPDATE, then the rollout row FOR UPDATE, then `record`'s registry
    revision); None when there is no such rollout.

    NOTE: the model comes first even for a controller call that names only the rollout.
    Locking the rollout first deadlocked against an operator's verb on PostgreSQL: the verb
    held the model FOR UPDATE and waited for the rollout, while the controller's second
    write of its rollout row re-ran the foreign-key check (PostgreSQL does for a row version
    its own transaction wrote), which asks for FOR KEY SHARE on that model row.
    """
    if not 0 < rollout_id <= ROW_ID_MAX:
        return None
    model_id = await session.scalar(select(Rollout.model_id).where(Rollout.id == rollout_id))
    if model_id is None:
        return None
    owner = await session.scalar(select(Model).where(Model.id == model_id).with_for_update())
    assert owner is not None  # rollouts.model_id is a foreign key; models are never deleted
    row = await session.scalar(
        select(Rollout)
        .where(Rollout.id == rollout_id, Rollout.model_id == owner.id)
        .with_for_update()
    )
    return None if row is None else (owner, row)


def lease_live(row: Rollout, now: datetime) -> bool:
    return row.lease_expires_at is not None and as_utc(row.lease_expires_at) > now


def check_driver(
    row: Rollout, holder: str, step: int | None, states: tuple[str, ...], now: datetime
) -> None:
    """`RolloutLeaseLost` unless ``holder``'s lease is live, the rollout is at ``step``
    (None: any) and in one of ``states``."""
    if row.lease_holder != holder or not lease_live(row, now):
        until = as_utc(row.lease_expires_at).isoformat() if row.lease_expires_at else "-"
        raise RolloutLeaseLost(
            f"{label(row)} is not driven by {holder}: lease held by "
            f"{row.lease_holder or 'nobody'} until {until}"
        )
    if step is not None and row.step != step:
        raise RolloutLeaseLost(
            f"{label(row)} is at step {row.step}, not {step}: another driver moved it"
        )
    if row.state not in states:
        raise RolloutLeaseLost(f"{label(row)} is no longer {' or '.join(states)}")
