"""The rollout controller tick by tick, on SQLite and PostgreSQL, with the real registry
service and counters under one hand-moved clock: readiness and its timeout, each gate's
verdict and what it does to the policy, and two replicas sharing a rollout under the lease
(the survivor resumes at the step the dead one left, no step applied twice)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.control.health import Health
from gateway.control.rollout_stats import OutcomeCounters
from gateway.control.rollouts import RolloutController
from gateway.metrics import GatewayMetrics
from registry.db import make_sessionmaker
from registry.rollouts import RolloutService
from tests.support.admin import Client, create_model, publish

INTERVAL = 10.0
GATES = {"min_requests": 50, "max_error_rate": 0.05, "max_latency_ratio": 2.0}


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Rig:
    client: Client
    model: str
    path: str
    clock: Clock
    service: RolloutService
    counters: OutcomeCounters
    ready: set[str] = field(default_factory=set)
    controllers: dict[str, RolloutController] = field(default_factory=dict)

    def controller(self, holder: str) -> RolloutController:
        if holder not in self.controllers:
            self.controllers[holder] = RolloutController(
                self.service,
                self.counters,
                lambda _m, v: v in self.ready,
                GatewayMetrics(),
                Health(),
                holder=holder,
                lease_ttl_s=5.0,
                clock=self.clock,
            )
        return self.controllers[holder]

    async def start(self, **body: Any) -> int:
        plan = {"version": "1.1.0", "steps": [10, 50, 100], "interval_s": INTERVAL}
        plan["gates"] = GATES
        response = await self.client.post(self.path, json={**plan, **body})
        assert response.status_code == 201, response.text
        return int(response.json()["id"])

    async def rollout(self, rollout_id: int) -> dict[str, Any]:
        out: dict[str, Any] = (await self.client.get(f"{self.path}/{rollout_id}")).json()
        return out

    async def arms(self) -> list[tuple[str, int]]:
        body = (await self.client.get(f"/admin/v1/models/{self.model}/traffic")).json()
        return [(a["version"], a["weight"]) for a in body["arms"]]

    async def actions(self) -> list[str]:
        page = await self.client.get("/admin/v1/audit", params={"model": self.model, "limit": 200})
        return [e["action"] for e in reversed(page.json()["items"])]

    def traffic(
        self, version: str, requests: int, errors: int = 0, latency_ms: float = 5.0
    ) -> None:
        for n in range(requests):
            self.counters.record(self.model, version, n < errors, latency_ms / 1000)


@pytest.fixture
async def rig(client: Client, engine: AsyncEngine, model_name: str) -> Rig:
    await create_model(client, model_name)
    for version in ("1.0.0", "1.1.0"):
        assert (await publish(client, model_name, version)).status_code == 201
    arms = [{"version": "1.0.0", "weight": 100}]
    put = await client.put(f"/admin/v1/models/{model_name}/traffic", json={"arms": arms})
    assert put.status_code == 200, put.text
    clock = Clock()
    service = RolloutService(make_sessionmaker(engine), clock=clock)
    counters = OutcomeCounters(clock=lambda: clock.now.timestamp())
    path = f"/admin/v1/models/{model_name}/rollouts"
    return Rig(client, model_name, path, clock, service, counters, {"1.0.0"})


async def test_a_candidate_without_a_ready_worker_waits_then_aborts(rig: Rig) -> None:
    rollout_id = await rig.start(gates={**GATES, "waiting_timeout_s": 30})
    gateway = rig.controller("g1")
    await gateway.tick()
    out = await rig.rollout(rollout_id)
    assert (out["state"], out["step"], out["reason"]) == (
        "waiting",
        -1,
        "waiting for a ready worker of version 1.1.0",
    )
    assert await rig.arms() == [("1.0.0", 100)]
    rig.clock.advance(31)
    await gateway.tick()
    out = await rig.rollout(rollout_id)
    assert out["state"] == "aborted"
    assert out["reason"] == f"version 1.1.0 of {rig.model} had no ready worker within 30 s"
    assert await rig.arms() == [("1.0.0", 100)]


async def test_a_good_candidate_steps_through_every_gate_and_is_promoted(rig: Rig) -> None:
    rollout_id = await rig.start(alias="prod")
    gateway = rig.controller("g1")
    rig.ready.add("1.1.0")
    await gateway.tick()
    out = await rig.rollout(rollout_id)
    assert (out["state"], out["step"], out["weight"]) == ("running", 0, 10)
    assert await rig.arms() == [("1.1.0", 10), ("1.0.0", 90)]
    rig.traffic("1.1.0", 49)
    rig.traffic("1.0.0", 400)
    rig.clock.advance(INTERVAL - 1)
    await gateway.tick()  # not due yet
    assert (await rig.rollout(rollout_id))["history"] == []
    rig.clock.advance(1)
    await gateway.tick()  # due, but 49 < 50 candidate attempts
    out = await rig.rollout(rollout_id)
    assert [h["verdict"] for h in out["history"]] == ["wait"]
    assert out["step"] == 0
    rig.traffic("1.1.0", 1)
    rig.clock.advance(INTERVAL / 2)
    await gateway.tick()  # the wait is judged again an interval after it, not before
    assert len((await rig.rollout(rollout_id))["history"]) == 1
    rig.clock.advance(INTERVAL / 2)
    await gateway.tick()
    out = await rig.rollout(rollout_id)
    assert [h["verdict"] for h in out["history"]] == ["wait", "pass"]
    assert out["history"][-1]["candidate"]["requests"] == 50
    assert (out["step"], out["weight"]) == (1, 50)
    assert await rig.arms() == [("1.1.0", 50), ("1.0.0", 50)]
    for _ in range(2):
        rig.clock.advance(1)
        rig.traffic("1.1.0", 100)
        rig.traffic("1.0.0", 100)
        rig.clock.advance(INTERVAL)
        await gateway.tick()
    out = await rig.rollout(rollout_id)
    assert out["state"] == "promoted"
    assert [h["verdict"] for h in out["history"]] == ["wait", "pass", "pass", "pass"]
    assert await rig.arms() == [("1.1.0", 100)]
    alias = (await rig.client.get(f"/admin/v1/models/{rig.model}/aliases/prod")).json()
    assert alias["version"] == "1.1.0"
    metrics = gateway.metrics.registry
    assert (
        metrics.get_sample_value(
            "modelgate_rollout_judgements_total", {"model": rig.model, "verdict": "pass"}
        )
        == 3
    )
    await gateway.tick()  # the rollout has left the active set: its final state shows
    labels = {"model": rig.model, "rollout": str(rollout_id)}
    assert metrics.get_sample_value("modelgate_rollout_state", {**labels, "state": "promoted"})
    assert metrics.get_sample_value("modelgate_rollout_weight", labels) == 100


async def test_a_failing_candidate_is_rolled_back_at_its_first_step(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="modelgate.gateway.rollouts")
    rollout_id = await rig.start()
    gateway = rig.controller("g1")
    rig.ready.add("1.1.0")
    await gateway.tick()
    rig.traffic("1.1.0", 100, errors=50)
    rig.traffic("1.0.0", 900)
    rig.clock.advance(INTERVAL)
    await gateway.tick()
    out = await rig.rollout(rollout_id)
    assert out["state"] == "rolled_back"
    assert out["reason"] == "error rate 50.0% > 5.0% over 100 requests at step 1 (10%)"
    assert out["history"][-1]["verdict"] == "fail"
    assert await rig.arms() == [("1.0.0", 100)]
    lines = [r.getMessage() for r in caplog.records if r.name == "modelgate.gateway.rollouts"]
    assert lines == [
        f"rollout {rollout_id} of {rig.model}: g1 drives it now, from the start",
        f"rollout {rollout_id} of {rig.model}: step 1 (10%) applied, 1.1.0 against 1.0.0",
        f"rollout {rollout_id} of {rig.model} rolled back to 1.0.0: {out['reason']}",
    ]


async def test_a_slow_candidate_is_rolled_back_by_the_latency_gate(rig: Rig) -> None:
    rollout_id = await rig.start()
    gateway = rig.controller("g1")
    rig.ready.add("1.1.0")
    await gateway.tick()
    rig.traffic("1.1.0", 100, latency_ms=50)
    rig.traffic("1.0.0", 900, latency_ms=5)
    rig.clock.advance(INTERVAL)
    await gateway.tick()
    out = await rig.rollout(rollout_id)
    assert out["state"] == "rolled_back"
    assert "the baseline's" in out["reason"]
    assert out["reason"].startswith("p99 ")
    assert await rig.arms() == [("1.0.0", 100)]


async def test_a_passed_step_waits_while_the_candidate_has_no_ready_worker(rig: Rig) -> None:
    rollout_id = await rig.start()
    gateway = rig.controller("g1")
    rig.ready.add("1.1.0")
    await gateway.tick()
    rig.traffic("1.1.0", 100)
    rig.traffic("1.0.0", 900)
    rig.ready.discard("1.1.0")
    rig.clock.advance(INTERVAL)
    await gateway.tick()
    out = await rig.rollout(rollout_id)
    assert (out["state"], out["step"], out["history"][-1]["verdict"]) == ("running", 0, "wait")
    assert "has no ready worker" in out["history"][-1]["reason"]
    assert await rig.arms() == [("1.1.0", 10), ("1.0.0", 90)]


async def test_a_paused_rollout_is_not_judged(rig: Rig) -> None:
    rollout_id = await rig.start()
    gateway = rig.controller("g1")
    rig.ready.add("1.1.0")
    await gateway.tick()
    assert (await rig.client.post(f"{rig.path}/{rollout_id}/pause")).status_code == 200
    rig.traffic("1.1.0", 100, errors=100)
    rig.clock.advance(INTERVAL * 3)
    await gateway.tick()
    out = await rig.rollout(rollout_id)
    assert (out["state"], out["history"]) == ("paused", [])


async def test_the_survivor_takes_over_at_the_step_the_dead_holder_left(rig: Rig) -> None:
    rollout_id = await rig.start()
    one, two = rig.controller("g1"), rig.controller("g2")
    rig.ready.add("1.1.0")
    await one.tick()
    await two.tick()  # g1 holds the lease: g2 does nothing
    out = await rig.rollout(rollout_id)
    assert (out["lease_holder"], out["step"]) == ("g1", 0)
    rig.traffic("1.1.0", 100)
    rig.traffic("1.0.0", 900)
    rig.clock.advance(INTERVAL)
    await one.tick()
    await two.tick()
    assert (await rig.rollout(rollout_id))["step"] == 1
    # g1 dies here: it ticks no more. Within the lease, g2 still waits.
    rig.clock.advance(4)
    await two.tick()
    assert (await rig.rollout(rollout_id))["lease_holder"] == "g1"
    rig.clock.advance(2)
    rig.traffic("1.1.0", 100)
    rig.traffic("1.0.0", 100)
    await two.tick()
    out = await rig.rollout(rollout_id)
    assert (out["lease_holder"], out["step"], out["state"]) == ("g2", 1, "running")
    rig.clock.advance(INTERVAL)
    await two.tick()
    rig.clock.advance(1)
    rig.traffic("1.1.0", 100)
    rig.clock.advance(INTERVAL)
    await two.tick()
    out = await rig.rollout(rollout_id)
    assert out["state"] == "promoted"
    assert [h["step"] for h in out["history"]] == [0, 1, 2]
    steps = [a for a in await rig.actions() if a in ("rollout.step", "rollout.lease")]
    assert steps == [
        "rollout.lease",
        "rollout.step",
        "rollout.step",
        "rollout.lease",
        "rollout.step",
    ]
