"""Rollouts: an operator starts a stepwise canary; one gateway replica at a time drives it.

Operator calls (`start`, `pause`, `resume`, `promote`, `abort`) and the controller's calls
(`acquire`, `advance`, `record`, `set_waiting`, `roll_back`, `abort_waiting`) each run in
one transaction under the model's row lock, write one audit row ``rollout.<verb>`` and move
the registry revision. A controller call re-checks, in that same transaction, that its
caller holds an unexpired lease and that the rollout is still at the step the caller
judged; otherwise it raises `RolloutLeaseLost` and changes nothing, so no step is applied
twice and none is skipped when a replica dies and another takes over.

A step replaces the traffic policy's arms with ``[{candidate, w}, {baseline, 100 - w}]``
(one arm at 100); promotion leaves one arm on the candidate and moves the alias; a rollback
or an abort leaves one arm on the baseline.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from registry._base import ServiceBase
from registry._policy_writes import replace_arms
from registry._rollout_plan import check_plan, judgement_doc
from registry._rollout_rows import (
    arms_at,
    check_driver,
    default_baseline,
    finish_back,
    finish_promoted,
    label,
    lease_live,
    lock_rollout,
    rollout_doc,
    rollout_out,
)
from registry.db import WRITE_INTENT, unavailable
from registry.errors import (
    BadRequest,
    Conflict,
    RolloutLeaseLost,
    RolloutNotFound,
    VersionNotFound,
)
from registry.limits import ROW_ID_MAX
from registry.models import (
    ACTIVE_ROLLOUT_STATES,
    Model,
    ModelVersion,
    Rollout,
    RolloutState,
    VersionStatus,
)
from registry.policies import check_alias_name
from registry.schemas import RolloutIn, RolloutOut

__all__ = ["RolloutService", "rollout_out"]

S = RolloutState
_ACTIVE = tuple(str(s) for s in ACTIVE_ROLLOUT_STATES)


class RolloutService(ServiceBase):
    """Rollouts of a model's versions: the operator's verbs and the gateway controller's."""

    # -- operator calls ------------------------------------------------------------------

    async def start(self, actor: str, model: str, data: RolloutIn) -> RolloutOut:
        """Start a rollout in ``waiting`` (step -1, weight 0; the policy is not touched
        until the controller applies the first step). 400 for a bad plan, 404 for an unknown
        or yanked version, 409 for a deprecated candidate or a second active rollout."""
        check_plan(data)
        if data.alias is not None:
            check_alias_name(data.alias)
        async with self.write() as session:
            owner = await self.model_row(session, model, lock=True)
            active = await self._active_of(session, owner)
            if active is not None:
                raise Conflict(
                    f'model "{model}" already has an active {label(active)}: pause, promote '
                    f"or abort it before starting another"
                )
            candidate = await self._usable(session, owner, data.version)
            if candidate.status == VersionStatus.DEPRECATED:
                raise Conflict(
                    f'version "{candidate.version}" of "{model}" is deprecated: undeprecate it '
                    f"before rolling it out"
                )
            baseline = await self._baseline(session, owner, candidate, data.baseline)
            now = self.clock()
            row = Rollout(
                model_id=owner.id,
                version=candidate.version,
                baseline=baseline,
                alias=data.alias,
                steps=list(data.steps),
                interval_s=float(data.interval_s),
                gates=msgspec.to_builtins(data.gates),
                state=S.WAITING,
                step=-1,
                weight=0.0,
                history=[],
                reason=None,
                step_started_at=now,
                created_at=now,
                updated_at=now,
                created_by=actor,
            )
            session.add(row)
            try:
                await session.flush()
            except IntegrityError:
                raise Conflict(f'model "{model}" already has an active rollout') from None
            await self._audit(session, actor, "start", owner, row, None)
            return rollout_out(model, row)

    async def list(self, model: str, limit: int | None = None) -> builtins.list[RolloutOut]:
        """The model's rollouts, newest first (the newest ``limit`` only, when given)."""
        async with self.read() as session:
            owner = await self.model_row(session, model)
            rows = await session.execute(
                select(Rollout)
                .where(Rollout.model_id == owner.id)
                .order_by(Rollout.id.desc())
                .limit(limit)
            )
            return [rollout_out(model, r) for r in rows.scalars()]

    async def get(self, model: str, rollout_id: int) -> RolloutOut:
        async with self.read() as session:
            owner = await self.model_row(session, model)
            return rollout_out(model, await self._row(session, owner, rollout_id))

    async def pause(self, actor: str, model: str, rollout_id: int) -> RolloutOut:
        """Hold the rollout at its step: weights stay, nothing is judged until `resume`."""

        def change(row: Rollout, now: datetime) -> None:
            row.state = S.PAUSED

        return await self._operate(
            actor, model, rollout_id, "pause", (S.WAITING, S.RUNNING), change
        )

    async def resume(self, actor: str, model: str, rollout_id: int) -> RolloutOut:
        """Continue a paused rollout; the current step's window starts again now."""

        def change(row: Rollout, now: datetime) -> None:
            row.state = S.RUNNING if row.step >= 0 else S.WAITING
            row.step_started_at = now

        return await self._operate(actor, model, rollout_id, "resume", (S.PAUSED,), change)

    async def promote(
        self,
        actor: str,
        model: str,
        rollout_id: int,
        ready: Callable[[str], bool] | None = None,
    ) -> RolloutOut:
        """Skip to 100% and finish now: one arm on the candidate, the alias moved. With
        ``ready`` (a gateway's view), a candidate without a ready worker is a 409."""
        async with self.write() as session:
            owner = await self.model_row(session, model, lock=True)
            row = await self._row(session, owner, rollout_id, lock=True)
            self._expect(row, _ACTIVE, "promote")
            if ready is not None and not ready(row.version):
                raise Conflict(
                    f"{label(row)}: version {row.version} has no ready worker, so promoting "
                    f"would send all traffic to a version that cannot serve"
                )
            before = rollout_doc(row)
            await self._promote(session, actor, owner, row, before, f"promoted by {actor}")
            return rollout_out(model, row)

    async def abort(self, actor: str, model: str, rollout_id: int) -> RolloutOut:
        """Back to the baseline now: one arm on it (the policy is left alone if no step was
        applied yet)."""
        async with self.write() as session:
            owner = await self.model_row(session, model, lock=True)
            row = await self._row(session, owner, rollout_id, lock=True)
            self._expect(row, _ACTIVE, "abort")
            before = rollout_doc(row)
            reason = f"aborted by {actor}"
            await finish_back(session, owner, row, S.ABORTED, reason, actor, None, self.clock())
            await self._audit(session, actor, "abort", owner, row, before)
            return rollout_out(model, row)

    # -- controller calls ----------------------------------------------------------------

    async def active(self) -> builtins.list[RolloutOut]:
        """Every waiting, running or paused rollout of every model, oldest first."""
        async with self.read() as session:
            rows = await session.execute(
                select(Rollout, Model.name)
                .join(Model, Model.id == Rollout.model_id)
                .where(Rollout.state.in_(_ACTIVE))
                .order_by(Rollout.id)
            )
            return [rollout_out(name, row) for row, name in rows.all()]

    async def acquire(self, rollout_id: int, holder: str, ttl_s: float) -> RolloutOut | None:
        """Take the lease (free, expired, or already ours) until now + ``ttl_s`` and return
        the rollout; None when another holder's lease is live or the rollout is not active.

        A renewal by the same holder writes only the expiry: no audit row, no revision
        (so replicas do not reload their snapshot every tick); a take-over is audited as
        ``rollout.lease``."""
        if not 0 < ttl_s <= 3600:
            raise BadRequest(f"lease ttl_s {ttl_s} must be > 0 and at most 3600 seconds")
        taken = False
        with unavailable(self.database):
            async with self.sessions() as session, session.begin():
                await session.connection(execution_options={WRITE_INTENT: True})
                locked = await lock_rollout(session, rollout_id)
                if locked is None:
                    return None
                owner, row = locked
                if row.state not in _ACTIVE:
                    return None
                now = self.clock()
                if row.lease_holder not in (None, holder) and lease_live(row, now):
                    return None
                previous = row.lease_holder
                row.lease_holder, row.lease_expires_at = holder, now + timedelta(seconds=ttl_s)
                if previous != holder:
                    taken = True
                    row.row_version += 1
                    await ServiceBase.record(
                        self,
                        session,
                        actor=f"gateway:{holder}",
                        action="rollout.lease",
                        model=owner.name,
                        target=f"{owner.name}/rollout/{row.id}",
                        before={"lease_holder": previous},
                        after={"lease_holder": holder, "step": row.step},
                    )
                await session.flush()
                out = rollout_out(owner.name, row)
        if taken and self.on_commit is not None:
            self.on_commit()
        return out

    async def advance(
        self, holder: str, rollout_id: int, from_step: int, judgement: dict[str, Any] | None
    ) -> RolloutOut:
        """Apply step ``from_step + 1`` (its weight replaces the policy's arms, its window
        starts now, state running), appending ``judgement`` (the verdict on ``from_step``)
        when given. From the last step, promote instead. ``from_step`` -1 leaves ``waiting``."""
        states = (S.WAITING,) if from_step < 0 else (S.RUNNING,)
        doc = judgement_doc(judgement) if judgement is not None else None
        async with self.write() as session:
            owner, row = await self._driven(session, rollout_id, holder, from_step, states)
            before = rollout_doc(row)
            actor = f"gateway:{holder}"
            if doc is not None:
                row.history = [*row.history, doc]
            nxt = from_step + 1
            if nxt >= len(row.steps):
                reason = f"promoted after {len(row.steps)} steps passed their gates"
                await self._promote(session, actor, owner, row, before, reason)
                return rollout_out(owner.name, row)
            now = self.clock()
            row.step, row.weight = nxt, float(row.steps[nxt])
            row.state, row.step_started_at, row.reason = S.RUNNING, now, None
            arms = arms_at(row.version, row.baseline, row.weight)
            await replace_arms(session, owner, arms, actor, now)
            await self._audit(session, actor, "step", owner, row, before, arms=arms)
            return rollout_out(owner.name, row)

    async def record(  # type: ignore[override]
        self, holder: str, rollout_id: int, step: int, judgement: dict[str, Any]
    ) -> RolloutOut:
        """Append a ``wait`` judgement to a running step (too few candidate attempts); the
        step and its window's start stay."""
        doc = judgement_doc(judgement, verdict="wait")
        async with self.write() as session:
            owner, row = await self._driven(session, rollout_id, holder, step, (S.RUNNING,))
            before = rollout_doc(row)
            row.history = [*row.history, doc]
            row.reason = str(doc["reason"]) or None
            await self._audit(session, f"gateway:{holder}", "wait", owner, row, before)
            return rollout_out(owner.name, row)

    async def set_waiting(self, holder: str, rollout_id: int, reason: str) -> RolloutOut:
        """Say why a waiting rollout still waits (e.g. no ready worker yet); a repeat of the
        same reason changes nothing and writes nothing."""
        async with self.write() as session:
            owner, row = await self._driven(session, rollout_id, holder, None, (S.WAITING,))
            if row.reason != reason:
                before = rollout_doc(row)
                row.reason = reason
                await self._audit(session, f"gateway:{holder}", "waiting", owner, row, before)
            return rollout_out(owner.name, row)

    async def roll_back(
        self, holder: str, rollout_id: int, judgement: dict[str, Any], reason: str
    ) -> RolloutOut:
        """A gate failed on the step ``judgement["step"]``: state ``rolled_back``, one arm on
        the baseline, the judgement appended."""
        doc = judgement_doc(judgement)
        async with self.write() as session:
            step = int(doc["step"])
            owner, row = await self._driven(session, rollout_id, holder, step, (S.RUNNING,))
            before = rollout_doc(row)
            actor = f"gateway:{holder}"
            await finish_back(session, owner, row, S.ROLLED_BACK, reason, actor, doc, self.clock())
            await self._audit(session, actor, "rollback", owner, row, before)
            return rollout_out(owner.name, row)

    async def abort_waiting(self, holder: str, rollout_id: int, reason: str) -> RolloutOut:
        """The candidate never got a ready worker in time: state ``aborted``."""
        async with self.write() as session:
            owner, row = await self._driven(session, rollout_id, holder, None, (S.WAITING,))
            before = rollout_doc(row)
            actor = f"gateway:{holder}"
            await finish_back(session, owner, row, S.ABORTED, reason, actor, None, self.clock())
            await self._audit(session, actor, "abort", owner, row, before)
            return rollout_out(owner.name, row)

    # -- helpers -------------------------------------------------------------------------

    async def _promote(
        self,
        session: AsyncSession,
        actor: str,
        owner: Model,
        row: Rollout,
        before: dict[str, Any],
        reason: str,
    ) -> None:
        """Finish promoted and audit it; an alias the promotion moves is audited as the
        ``alias.set`` it is, so that ``audit --action alias`` shows every move."""
        previous = await finish_promoted(session, owner, row, actor, reason, self.clock())
        if row.alias is not None:
            await ServiceBase.record(
                self,
                session,
                actor=actor,
                action="alias.set",
                model=owner.name,
                target=f"{owner.name}:{row.alias}",
                before=None if previous is None else {"version": previous},
                after={"version": row.version, "rollout": row.id},
            )
        await self._audit(session, actor, "promote", owner, row, before)

    async def _audit(
        self,
        session: AsyncSession,
        actor: str,
        verb: str,
        owner: Model,
        row: Rollout,
        before: dict[str, Any] | None,
        arms: builtins.list[dict[str, Any]] | None = None,
    ) -> None:
        row.updated_at = self.clock()
        if before is not None:
            row.row_version += 1
        await session.flush()
        after = rollout_doc(row) | ({"arms": arms} if arms is not None else {})
        # NOTE: ServiceBase.record writes audit rows; this class's own `record` is the
        # controller's "wait" verb (the name the gateway's controller calls).
        await ServiceBase.record(
            self,
            session,
            actor=actor,
            action=f"rollout.{verb}",
            model=owner.name,
            target=f"{owner.name}/rollout/{row.id}",
            before=before,
            after=after,
        )

    async def _row(
        self, session: AsyncSession, owner: Model, rollout_id: int, *, lock: bool = False
    ) -> Rollout:
        if not 0 < rollout_id <= ROW_ID_MAX:
            raise RolloutNotFound(owner.name, rollout_id)
        query = select(Rollout).where(Rollout.id == rollout_id, Rollout.model_id == owner.id)
        if lock:
            query = query.with_for_update()
        row = await session.scalar(query)
        if row is None:
            raise RolloutNotFound(owner.name, rollout_id)
        return row

    async def _active_of(self, session: AsyncSession, owner: Model) -> Rollout | None:
        return await session.scalar(
            select(Rollout).where(Rollout.model_id == owner.id, Rollout.state.in_(_ACTIVE))
        )

    @staticmethod
    def _expect(row: Rollout, states: tuple[str, ...], verb: str) -> None:
        if row.state not in states:
            allowed = " or ".join(states)
            raise Conflict(f"cannot {verb} {label(row)}: only a {allowed} rollout can be")

    async def _operate(
        self,
        actor: str,
        model: str,
        rollout_id: int,
        verb: str,
        states: tuple[str, ...],
        change: Callable[[Rollout, datetime], None],
    ) -> RolloutOut:
        async with self.write() as session:
            owner = await self.model_row(session, model, lock=True)
            row = await self._row(session, owner, rollout_id, lock=True)
            self._expect(row, states, verb)
            before = rollout_doc(row)
            change(row, self.clock())
            await self._audit(session, actor, verb, owner, row, before)
            return rollout_out(model, row)

    async def _driven(
        self,
        session: AsyncSession,
        rollout_id: int,
        holder: str,
        step: int | None,
        states: tuple[str, ...],
    ) -> tuple[Model, Rollout]:
        """Lock the model, then the rollout, and check the caller still drives it at
        ``step`` (None: any step) in one of ``states``; else `RolloutLeaseLost`."""
        locked = await lock_rollout(session, rollout_id)
        if locked is None:
            raise RolloutLeaseLost(f"rollout {rollout_id} does not exist")
        owner, row = locked
        check_driver(row, holder, step, states, self.clock())
        return owner, row

    async def _usable(self, session: AsyncSession, owner: Model, version: str) -> ModelVersion:
        row = await self.version_row(session, owner, version)
        if row.status == VersionStatus.YANKED:
            raise VersionNotFound(owner.name, row.version, reason="is yanked and cannot serve")
        return row

    async def _baseline(
        self, session: AsyncSession, owner: Model, candidate: ModelVersion, given: str | None
    ) -> str:
        """The given baseline, else the policy's highest-weight arm other than the candidate,
        else the highest stable version other than the candidate."""
        if given is not None:
            chosen = (await self._usable(session, owner, given)).version
        else:
            chosen = await default_baseline(session, owner, candidate)
        if chosen == candidate.version:
            raise BadRequest(
                f'baseline "{chosen}" is the candidate itself: name another version of '
                f'"{owner.name}" as the baseline'
            )
        return chosen
