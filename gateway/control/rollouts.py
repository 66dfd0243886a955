"""The rollout controller: one of the gateway's control loops, driving every active rollout.

Every tick (``MODELGATE_GATEWAY_ROLLOUT_TICK_S``, 0.5 s) each replica reads the active
rollouts from SQL and tries to take or renew each one's lease
(``MODELGATE_GATEWAY_ROLLOUT_LEASE_TTL_S``, 5 s); the holder drives it one transition at a
time, each one SQL transaction in `registry.rollouts.RolloutService` that re-checks the
lease and the step, so a step is never applied twice nor skipped when a replica dies and
another takes over (it resumes from the state in SQL):

* ``waiting``: once the candidate has a ready worker, apply the first step; past the
  gates' ``waiting_timeout_s`` without one, abort.
* ``running``: ``interval_s`` after the step started (or after its latest ``wait``), judge
  the window from the step's start to now (`gateway.control.rollout_gates.judge`) on the
  per-attempt counters of both versions (`OutcomeCounters`, every replica's through
  Redis): ``wait`` is recorded, ``fail`` rolls back, ``pass`` applies the next step or
  promotes after the last. A passed step whose candidate has no ready worker here waits
  (its weight would go to a version that cannot serve).
* ``paused``: nothing.

Metrics: ``modelgate_rollout_state`` and ``modelgate_rollout_weight`` of each model's latest
rollout as this replica last read it, ``modelgate_rollout_judgements_total`` of the
judgements this replica made. Each step, wait, rollback, promotion and abort is logged on
``modelgate.gateway.rollouts``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from gateway.control.background import Tasks, poll
from gateway.control.health import Health
from gateway.control.rollout_gates import at_step, judge, next_judgement_at
from gateway.control.rollout_stats import OutcomeCounters
from gateway.metrics import GatewayMetrics
from registry.errors import RegistryError, RolloutLeaseLost
from registry.models import ACTIVE_ROLLOUT_STATES, RolloutState
from registry.rollouts import RolloutService
from registry.schemas import RolloutGates, RolloutOut

__all__ = ["RolloutController"]

log = logging.getLogger("modelgate.gateway.rollouts")

STATES = tuple(str(s) for s in RolloutState)
ACTIVE = frozenset(str(s) for s in ACTIVE_ROLLOUT_STATES)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class RolloutController:
    """Drives the rollouts whose lease this replica holds; ``ready(model, version)`` is
    this replica's view of whether a version has a ready worker."""

    def __init__(
        self,
        service: RolloutService,
        counters: OutcomeCounters,
        ready: Callable[[str, str], bool],
        metrics: GatewayMetrics,
        health: Health,
        *,
        holder: str,
        tick_s: float = 0.5,
        lease_ttl_s: float = 5.0,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.service = service
        self.counters = counters
        self.ready = ready
        self.metrics = metrics
        self.health = health
        self.holder = holder
        self.tick_s = tick_s
        self.lease_ttl_s = lease_ttl_s
        self.clock = clock
        #: Model → the id of the rollout its metrics show.
        self._shown: dict[str, int] = {}
        self._ended: set[int] = set()
        #: Rollouts as this tick's transitions left them.
        self._fresh: dict[int, RolloutOut] = {}
        self._wake = asyncio.Event()
        self._tasks = Tasks()

    async def start(self) -> None:
        self._tasks.spawn(poll(self._wake, self.tick_s, self.tick), "rollouts")

    async def stop(self) -> None:
        await self._tasks.stop()

    async def tick(self) -> None:
        """One pass over the active rollouts; never raises (a failure waits for the next)."""
        try:
            active = await self.service.active()
        except Exception as exc:
            self.health.fail("database", f"cannot read the rollouts: {exc}", check="rollouts")
            return
        self.health.ok("database", check="rollouts")
        self._fresh = {}
        for rollout in active:
            try:
                await self._drive(rollout)
            except RolloutLeaseLost as exc:
                # Another replica or an operator moved it since it was read: nothing changed.
                log.info("rollout %d of %s left alone: %s", rollout.id, rollout.model, exc)
            except RegistryError as exc:
                log.warning("rollout %d of %s: %s", rollout.id, rollout.model, exc)
            except Exception as exc:
                self.health.fail(
                    "database", f"cannot drive rollout {rollout.id}: {exc}", check="rollouts"
                )
        await self._export([self._fresh.get(r.id, r) for r in active])

    async def _drive(self, seen: RolloutOut) -> None:
        rollout = await self.service.acquire(seen.id, self.holder, self.lease_ttl_s)
        if rollout is None:
            return
        if seen.lease_holder != self.holder:
            log.info(
                "rollout %d of %s: %s drives it now, from %s",
                rollout.id,
                rollout.model,
                self.holder,
                "the start" if rollout.step < 0 else at_step(rollout.step, rollout.weight),
            )
        if rollout.state == RolloutState.WAITING:
            await self._waiting(rollout)
        elif rollout.state == RolloutState.RUNNING:
            await self._running(rollout)

    async def _waiting(self, rollout: RolloutOut) -> None:
        model, version = rollout.model, rollout.version
        if self.ready(model, version):
            await self._advance(rollout, None)
            return
        gates = msgspec.convert(rollout.gates, RolloutGates)
        since = rollout.step_started_at or rollout.created_at
        if self.clock() >= since + timedelta(seconds=gates.waiting_timeout_s):
            reason = (
                f"version {version} of {model} had no ready worker within "
                f"{gates.waiting_timeout_s:g} s"
            )
            self._moved(await self.service.abort_waiting(self.holder, rollout.id, reason))
            log.warning("rollout %d of %s aborted: %s", rollout.id, model, reason)
            return
        reason = f"waiting for a ready worker of version {version}"
        if rollout.reason != reason:
            self._moved(await self.service.set_waiting(self.holder, rollout.id, reason))
            log.info("rollout %d of %s: %s", rollout.id, model, reason)

    async def _running(self, rollout: RolloutOut) -> None:
        started = rollout.step_started_at or rollout.updated_at
        now = self.clock()
        if now < next_judgement_at(started, rollout.step, rollout.interval_s, rollout.history):
            return
        model = rollout.model
        try:
            since, until = started.timestamp(), now.timestamp()
            candidate = await self.counters.window(model, rollout.version, since, until)
            baseline = await self.counters.window(model, rollout.baseline, since, until)
        except Exception as exc:
            self.health.fail(
                "redis", f"cannot read the rollout counters: {exc}", check="rollout-counters"
            )
            return
        self.health.ok("redis", check="rollout-counters")
        gates = msgspec.convert(rollout.gates, RolloutGates)
        verdict = judge(
            gates, rollout.step, rollout.weight, candidate, baseline, rollout.history, now
        )
        judgement = verdict.judgement
        if verdict.verdict == "pass" and not self.ready(model, rollout.version):
            reason = (
                f"{at_step(rollout.step, rollout.weight)} passed, but version "
                f"{rollout.version} has no ready worker for more weight; the step waits longer"
            )
            judgement = {**judgement, "verdict": "wait", "reason": reason}
        self.metrics.rollout_judgements.labels(model, judgement["verdict"]).inc()
        if judgement["verdict"] == "wait":
            self._moved(await self.service.record(self.holder, rollout.id, rollout.step, judgement))
            log.info("rollout %d of %s waits: %s", rollout.id, model, judgement["reason"])
        elif judgement["verdict"] == "fail":
            self._moved(
                await self.service.roll_back(self.holder, rollout.id, judgement, verdict.reason)
            )
            log.warning(
                "rollout %d of %s rolled back to %s: %s",
                rollout.id,
                model,
                rollout.baseline,
                verdict.reason,
            )
        else:
            log.info("rollout %d of %s: %s", rollout.id, model, verdict.reason)
            await self._advance(rollout, judgement)

    async def _advance(self, rollout: RolloutOut, judgement: dict[str, Any] | None) -> None:
        after = await self.service.advance(self.holder, rollout.id, rollout.step, judgement)
        self._moved(after)
        if after.state == RolloutState.PROMOTED:
            log.info(
                "rollout %d of %s promoted: version %s takes all traffic%s",
                after.id,
                after.model,
                after.version,
                f', alias "{after.alias}" moved to it' if after.alias else "",
            )
        else:
            log.info(
                "rollout %d of %s: %s applied, %s against %s",
                after.id,
                after.model,
                at_step(after.step, after.weight),
                after.version,
                after.baseline,
            )

    def _moved(self, after: RolloutOut) -> None:
        """A transition this replica made: its metrics show the state it left."""
        self._fresh[after.id] = after

    async def _export(self, latest: list[RolloutOut]) -> None:
        """Gauges of each model's latest rollout: the active ones as read (or moved) in this
        tick, and, once, the final state of one another replica ended."""
        current = {r.model: r for r in latest}
        self._ended.update(r.id for r in latest if r.state not in ACTIVE)
        for model, rollout_id in list(self._shown.items()):
            now = current.get(model)
            if now is not None and now.id == rollout_id:
                continue
            if now is not None or rollout_id in self._ended:
                if now is not None:
                    self._forget(model, rollout_id)
                continue
            try:
                final = await self.service.get(model, rollout_id)
            except RegistryError:
                self._forget(model, rollout_id)
                continue
            except Exception:
                continue  # the database: the next tick asks again
            self._ended.add(rollout_id)
            self._show(final)
        for rollout in latest:
            self._show(rollout)

    def _show(self, rollout: RolloutOut) -> None:
        rid = str(rollout.id)
        self._shown[rollout.model] = rollout.id
        for state in STATES:
            value = 1.0 if state == rollout.state else 0.0
            self.metrics.rollout_state.labels(rollout.model, rid, state).set(value)
        self.metrics.rollout_weight.labels(rollout.model, rid).set(rollout.weight)

    def _forget(self, model: str, rollout_id: int) -> None:
        rid = str(rollout_id)
        for state in STATES:
            self.metrics.rollout_state.remove(model, rid, state)
        self.metrics.rollout_weight.remove(model, rid)
        self._ended.discard(rollout_id)
        if self._shown.get(model) == rollout_id:
            del self._shown[model]
