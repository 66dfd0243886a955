"""Rollouts in the registry, on SQLite and PostgreSQL: the admin API's verbs (acceptance 5),
bad input that answers 4xx and changes nothing, and the controller's calls under the lease,
which never apply a step twice (the registry half of acceptance 4)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from registry.db import make_sessionmaker
from registry.errors import Conflict, RolloutLeaseLost
from registry.rollouts import RolloutService
from registry.schemas import RolloutIn, RolloutOut
from registry.snapshot import ActiveRollout, load_snapshot
from tests.support.admin import Client, create_model, publish


class FakeClock:
    """The service's clock, moved by hand so lease expiry needs no sleeping."""

    def __init__(self) -> None:
        self.now = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class ReadyLive:
    """A gateway's live view in which exactly ``ready`` versions have a ready worker."""

    def __init__(self, ready: set[str]) -> None:
        self.ready = ready

    def worker_health(self) -> dict[str, dict[str, Any]]:
        return {}

    def has_ready(self, model: str, version: str) -> bool:
        return version in self.ready

    def explain_worker(self, model: str, version: str) -> tuple[str | None, list[str]]:
        return None, []


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def service(engine: AsyncEngine, clock: FakeClock) -> RolloutService:
    return RolloutService(make_sessionmaker(engine), clock=clock)


def judged(step: int, weight: float, verdict: str = "pass", requests: int = 200) -> dict[str, Any]:
    figures = {"requests": requests, "errors": 0, "error_rate": 0.0, "p99_ms": 3.0}
    return {
        "step": step,
        "weight": weight,
        "verdict": verdict,
        "at": datetime.now(UTC),
        "candidate": figures,
        "baseline": figures,
        "reason": f"{verdict} at step {step}",
    }


async def two_versions(client: Client, model: str, *, policy: bool = True) -> str:
    """1.0.0 serving all traffic, 1.1.0 published; returns the rollouts path."""
    await create_model(client, model)
    for version in ("1.0.0", "1.1.0"):
        assert (await publish(client, model, version)).status_code == 201
    if policy:
        arms = [{"version": "1.0.0", "weight": 100}]
        put = await client.put(f"/admin/v1/models/{model}/traffic", json={"arms": arms})
        assert put.status_code == 200, put.text
    return f"/admin/v1/models/{model}/rollouts"


async def start(client: Client, path: str, **body: Any) -> dict[str, Any]:
    response = await client.post(path, json={"version": "1.1.0", **body})
    assert response.status_code == 201, response.text
    out: dict[str, Any] = response.json()
    return out


async def arms(client: Client, model: str) -> list[tuple[str, int]]:
    body = (await client.get(f"/admin/v1/models/{model}/traffic")).json()
    return [(a["version"], a["weight"]) for a in body["arms"]]


async def actions(client: Client, model: str) -> list[str]:
    page = await client.get("/admin/v1/audit", params={"model": model, "limit": 200})
    return [e["action"] for e in reversed(page.json()["items"])]


async def test_start_waits_with_weight_0_and_leaves_the_policy_alone(
    client: Client, model_name: str
) -> None:
    path = await two_versions(client, model_name)
    out = await start(client, path, alias="prod")
    assert out["model"] == model_name
    assert (out["version"], out["baseline"], out["alias"]) == ("1.1.0", "1.0.0", "prod")
    assert (out["state"], out["step"], out["weight"]) == ("waiting", -1, 0)
    assert out["steps"] == [10, 25, 50, 100]
    assert out["gates"]["min_requests"] == 100
    assert out["history"] == []
    assert out["reason"] is None
    assert await arms(client, model_name) == [("1.0.0", 100)]
    assert (await client.get(f"{path}/{out['id']}")).json()["id"] == out["id"]
    aborted = await client.post(f"{path}/{out['id']}/abort")
    assert aborted.status_code == 200, aborted.text
    second = await start(client, path, steps=[50, 100])
    assert [r["id"] for r in (await client.get(path)).json()] == [second["id"], out["id"]]
    assert (await actions(client, model_name))[-3:] == [
        "rollout.start",
        "rollout.abort",
        "rollout.start",
    ]


async def test_the_baseline_defaults_to_the_highest_stable_version_besides_the_candidate(
    client: Client, model_name: str
) -> None:
    path = await two_versions(client, model_name, policy=False)
    assert (await start(client, path))["baseline"] == "1.0.0"


BAD_INPUT = [
    ({"version": "9.9.9"}, 404, '"9.9.9"'),
    ({"version": "1.2.0"}, 404, "yanked"),
    ({"version": "1.1.0", "steps": [10, 5, 100]}, 400, "5 follows 10"),
    ({"version": "1.1.0", "steps": [10, 10]}, 400, "10 follows 10"),
    ({"version": "1.1.0", "steps": [0, 50]}, 400, "step 0 is not in (0, 100]"),
    ({"version": "1.1.0", "steps": [50, 150]}, 400, "step 150 is not in (0, 100]"),
    ({"version": "1.1.0", "steps": [-10, 50]}, 400, "step -10"),
    ({"version": "1.1.0", "interval_s": -1}, 400, "interval_s -1"),
    ({"version": "1.1.0", "interval_s": 0}, 400, "interval_s 0"),
    ({"version": "1.1.0", "baseline": "1.1.0"}, 400, 'baseline "1.1.0" is the candidate'),
    ({"version": "1.1.0", "gates": {"max_error_rate": 2}}, 400, "max_error_rate 2"),
    ({"version": "1.1.0", "alias": "latest"}, 400, '"latest"'),
    ({"version": "1.1.0", "steps": []}, 400, "steps"),
    ({"version": "1.1.0", "surprise": 1}, 400, "surprise"),
]


async def test_bad_input_is_a_4xx_naming_the_value_and_changes_nothing(
    client: Client, model_name: str
) -> None:
    path = await two_versions(client, model_name)
    assert (await publish(client, model_name, "1.2.0")).status_code == 201
    yank = await client.patch(
        f"/admin/v1/models/{model_name}/versions/1.2.0", json={"status": "yanked"}
    )
    assert yank.status_code == 200, yank.text
    active = await start(client, path, version="1.1.0")
    await client.post(f"{path}/{active['id']}/abort")

    async def state() -> tuple[int, list[dict[str, Any]], list[tuple[str, int]]]:
        audit = await client.get("/admin/v1/audit", params={"model": model_name})
        return (
            audit.json()["total"],
            (await client.get(path)).json(),
            await arms(client, model_name),
        )

    before = await state()
    for body, status, named in BAD_INPUT:
        response = await client.post(path, json=body)
        assert response.status_code == status, (body, response.text)
        assert named in response.json()["error"], (body, response.text)
        assert await state() == before, body

    running = await start(client, path)
    before = await state()
    second = await client.post(path, json={"version": "1.1.0", "steps": [50, 100]})
    assert second.status_code == 409, second.text
    assert f"rollout {running['id']}" in second.json()["error"]
    assert await state() == before


async def test_pause_resume_and_promote_move_the_alias_and_leave_one_arm_on_the_candidate(
    client: Client, model_name: str, service: RolloutService, app: Any
) -> None:
    path = await two_versions(client, model_name)
    out = await start(client, path, alias="prod")
    rid = out["id"]
    assert await service.acquire(rid, "gw-a", ttl_s=5) is not None
    await service.advance("gw-a", rid, -1, None)
    assert await arms(client, model_name) == [("1.1.0", 10), ("1.0.0", 90)]

    paused = await client.post(f"{path}/{rid}/pause")
    assert paused.status_code == 200, paused.text
    assert paused.json()["state"] == "paused"
    again = await client.post(f"{path}/{rid}/pause")
    assert again.status_code == 409
    assert "paused" in again.json()["error"]
    with pytest.raises(RolloutLeaseLost):  # the controller does not judge a paused step
        await service.advance("gw-a", rid, 0, judged(0, 10))
    resumed = await client.post(f"{path}/{rid}/resume")
    assert resumed.status_code == 200, resumed.text
    assert (resumed.json()["state"], resumed.json()["step"]) == ("running", 0)

    unready = await client.post(f"{path}/{rid}/promote")  # no worker of 1.1.0 on this gateway
    assert unready.status_code == 409
    assert "no ready worker" in unready.json()["error"]
    assert (await client.get(f"{path}/{rid}")).json()["state"] == "running"
    app.state.registry.live = ReadyLive({"1.0.0", "1.1.0"})
    promoted = await client.post(f"{path}/{rid}/promote")
    assert promoted.status_code == 200, promoted.text
    assert (promoted.json()["state"], promoted.json()["weight"]) == ("promoted", 100)
    assert await arms(client, model_name) == [("1.1.0", 100)]
    alias = await client.get(f"/admin/v1/models/{model_name}/aliases/prod")
    assert alias.json()["version"] == "1.1.0"
    late = await client.post(f"{path}/{rid}/abort")
    assert late.status_code == 409
    assert "promoted" in late.json()["error"]
    assert (await actions(client, model_name))[-6:] == [
        "rollout.lease",
        "rollout.step",
        "rollout.pause",
        "rollout.resume",
        "alias.set",  # the promotion's alias move is audited as one
        "rollout.promote",
    ]
    moves = await client.get("/admin/v1/audit", params={"model": model_name, "action": "alias"})
    move = moves.json()["items"][0]
    assert (move["target"], move["after"]) == (
        f"{model_name}:prod",
        {"version": "1.1.0", "rollout": rid},
    )


async def test_abort_leaves_one_arm_on_the_baseline(
    client: Client, model_name: str, service: RolloutService
) -> None:
    path = await two_versions(client, model_name)
    rid = (await start(client, path))["id"]
    await service.acquire(rid, "gw-a", ttl_s=5)
    await service.advance("gw-a", rid, -1, None)
    await service.advance("gw-a", rid, 0, judged(0, 10))
    assert await arms(client, model_name) == [("1.1.0", 25), ("1.0.0", 75)]
    aborted = await client.post(f"{path}/{rid}/abort")
    assert aborted.status_code == 200, aborted.text
    body = aborted.json()
    assert (body["state"], body["weight"], body["lease_holder"]) == ("aborted", 0, None)
    assert "aborted by token:" in body["reason"]
    assert await arms(client, model_name) == [("1.0.0", 100)]
    with pytest.raises(RolloutLeaseLost):
        await service.advance("gw-a", rid, 1, judged(1, 25))
    assert await service.acquire(rid, "gw-a", ttl_s=5) is None  # nothing left to drive
    missing = await client.post(f"{path}/999999/pause")
    assert missing.status_code == 404
    assert "999999" in missing.json()["error"]


async def test_of_two_holders_only_one_acquires_and_an_expired_lease_is_taken_over(
    client: Client, model_name: str, service: RolloutService, clock: FakeClock
) -> None:
    path = await two_versions(client, model_name)
    rid = (await start(client, path))["id"]
    first, second = await asyncio.gather(
        service.acquire(rid, "gw-a", ttl_s=5), service.acquire(rid, "gw-b", ttl_s=5)
    )
    assert (first is None) != (second is None)
    winner, loser = ("gw-a", "gw-b") if first is not None else ("gw-b", "gw-a")
    clock.advance(4)
    renewed = await service.acquire(rid, winner, ttl_s=5)
    assert renewed is not None
    assert renewed.lease_holder == winner
    clock.advance(4)  # 8 s after the first grant, 4 s after the renewal: still live
    assert await service.acquire(rid, loser, ttl_s=5) is None
    with pytest.raises(RolloutLeaseLost, match=winner):
        await service.advance(loser, rid, -1, None)
    clock.advance(1.5)
    taken = await service.acquire(rid, loser, ttl_s=5)
    assert taken is not None
    assert taken.lease_holder == loser
    with pytest.raises(RolloutLeaseLost, match=loser):
        await service.advance(winner, rid, -1, None)
    leases = [a for a in await actions(client, model_name) if a == "rollout.lease"]
    assert len(leases) == 2  # the two grants to new holders; the renewal is not audited


async def test_a_stale_step_is_refused_so_no_step_applies_twice(
    client: Client, model_name: str, service: RolloutService, clock: FakeClock
) -> None:
    path = await two_versions(client, model_name)
    rid = (await start(client, path, steps=[20, 60], alias="prod"))["id"]
    await service.acquire(rid, "gw-a", ttl_s=5)
    await service.advance("gw-a", rid, -1, None)
    with pytest.raises(RolloutLeaseLost, match="at step 0, not -1"):
        await service.advance("gw-a", rid, -1, None)
    clock.advance(6)  # gw-a dies; gw-b takes over and resumes at the step gw-a left
    taken = await service.acquire(rid, "gw-b", ttl_s=5)
    assert taken is not None
    assert taken.step == 0
    waited = await service.record("gw-b", rid, 0, judged(0, 20, "wait", requests=3))
    assert (waited.step, waited.history[-1]["verdict"]) == (0, "wait")
    with pytest.raises(RolloutLeaseLost):
        await service.record("gw-a", rid, 0, judged(0, 20, "wait"))
    await service.advance("gw-b", rid, 0, judged(0, 20))
    with pytest.raises(RolloutLeaseLost, match="at step 1, not 0"):
        await service.advance("gw-b", rid, 0, judged(0, 20))
    done = await service.advance("gw-b", rid, 1, judged(1, 60))
    assert (done.state, done.weight, done.lease_holder) == ("promoted", 100, None)
    assert [j["verdict"] for j in done.history] == ["wait", "pass", "pass"]
    assert await arms(client, model_name) == [("1.1.0", 100)]
    alias = await client.get(f"/admin/v1/models/{model_name}/aliases/prod")
    assert alias.json()["version"] == "1.1.0"
    page = await client.get("/admin/v1/audit", params={"model": model_name, "limit": 200})
    steps = [e["after"]["step"] for e in page.json()["items"] if e["action"] == "rollout.step"]
    assert sorted(steps) == [0, 1]  # each step applied exactly once


async def test_a_failed_gate_rolls_back_to_one_arm_on_the_baseline(
    client: Client, model_name: str, service: RolloutService
) -> None:
    path = await two_versions(client, model_name)
    rid = (await start(client, path))["id"]
    await service.acquire(rid, "gw-a", ttl_s=5)
    with pytest.raises(RolloutLeaseLost):  # nothing to roll back before a step is applied
        await service.roll_back("gw-a", rid, judged(-1, 0, "fail"), "no")
    await service.advance("gw-a", rid, -1, None)
    with pytest.raises(RolloutLeaseLost, match="at step 0, not 1"):
        await service.roll_back("gw-a", rid, judged(1, 25, "fail"), "stale")
    reason = "error rate 50.0% > 1.0% over 230 requests at step 0 (10%)"
    out = await service.roll_back("gw-a", rid, judged(0, 10, "fail"), reason)
    assert (out.state, out.reason, out.weight) == ("rolled_back", reason, 0)
    assert out.history[-1]["verdict"] == "fail"
    assert await arms(client, model_name) == [("1.0.0", 100)]
    assert (await actions(client, model_name))[-1] == "rollout.rollback"
    assert (await client.get(f"{path}/{rid}")).json()["reason"] == reason


async def test_waiting_reasons_and_the_waiting_timeout(
    client: Client, model_name: str, service: RolloutService
) -> None:
    path = await two_versions(client, model_name, policy=False)
    rid = (await start(client, path))["id"]
    await service.acquire(rid, "gw-a", ttl_s=5)
    before = len(await actions(client, model_name))
    for _ in range(3):
        out = await service.set_waiting("gw-a", rid, "no ready worker of 1.1.0 yet")
    assert out.reason == "no ready worker of 1.1.0 yet"
    assert len(await actions(client, model_name)) == before + 1  # a repeat writes nothing
    out = await service.abort_waiting("gw-a", rid, "no ready worker of 1.1.0 within 300 s")
    assert (out.state, out.reason) == ("aborted", "no ready worker of 1.1.0 within 300 s")
    # no step was applied, so the policy was never the rollout's: still none
    assert (await client.get(f"/admin/v1/models/{model_name}/traffic")).status_code == 404


async def test_the_snapshot_carries_each_models_active_rollout(
    client: Client, model_name: str, engine: AsyncEngine
) -> None:
    path = await two_versions(client, model_name)
    rid = (await start(client, path))["id"]
    snapshot = await load_snapshot(make_sessionmaker(engine))
    assert snapshot.rollout(model_name) == ActiveRollout(rid, "1.1.0", "1.0.0", "waiting")
    await client.post(f"{path}/{rid}/abort")
    assert (await load_snapshot(make_sessionmaker(engine))).rollout(model_name) is None


@pytest.mark.parametrize("status", ["yanked", "deprecated"])
async def test_retiring_a_serving_version_is_409_naming_its_use_unless_forced(
    client: Client, model_name: str, status: str
) -> None:
    path = await two_versions(client, model_name)
    versions = f"/admin/v1/models/{model_name}/versions"
    verb = "yank" if status == "yanked" else "deprecate"
    arm = await client.patch(f"{versions}/1.0.0", json={"status": status})
    assert arm.status_code == 409, arm.text
    assert f'cannot {verb} version "1.0.0"' in arm.json()["error"]
    assert "an arm of the traffic policy" in arm.json()["error"]
    assert "force=true" in arm.json()["error"]
    rid = (await start(client, path))["id"]
    candidate = await client.patch(f"{versions}/1.1.0", json={"status": status})
    assert candidate.status_code == 409, candidate.text
    assert f"the candidate of rollout {rid}" in candidate.json()["error"]
    baseline = await client.patch(f"{versions}/1.0.0", json={"status": status})
    assert f"the baseline of rollout {rid}" in baseline.json()["error"]
    assert (await client.get(f"{versions}/1.1.0")).json()["status"] == "active"
    forced = await client.patch(
        f"{versions}/1.1.0", json={"status": status}, params={"force": "true"}
    )
    assert forced.status_code == 200, forced.text
    assert forced.json()["status"] == status
    back = await client.patch(f"{versions}/1.1.0", json={"status": "active"})
    assert back.status_code == 200, back.text  # undeprecating is never refused


async def test_traffic_and_explain_mark_the_arms_that_cannot_serve(
    client: Client, model_name: str, app: Any
) -> None:
    await two_versions(client, model_name, policy=False)
    assert (await publish(client, model_name, "1.2.0")).status_code == 201
    base = f"/admin/v1/models/{model_name}"
    policy = [{"version": v, "weight": w} for v, w in (("1.0.0", 70), ("1.1.0", 20), ("1.2.0", 10))]
    assert (await client.put(f"{base}/traffic", json={"arms": policy})).status_code == 200
    forced = await client.patch(
        f"{base}/versions/1.2.0", json={"status": "yanked"}, params={"force": "true"}
    )
    assert forced.status_code == 200, forced.text
    app.state.registry.live = ReadyLive({"1.0.0", "1.2.0"})
    marked = (await client.get(f"{base}/traffic")).json()["arms"]
    assert [(a["version"], a["serving"], a["reason"]) for a in marked] == [
        ("1.0.0", True, None),
        ("1.1.0", False, "no ready worker"),
        ("1.2.0", False, "yanked"),
    ]
    explained = (await client.get(f"{base}/resolve")).json()
    assert explained["version"] == "1.0.0"
    assert [(a["version"], a["reason"]) for a in explained["arms"]] == [
        ("1.0.0", None),
        ("1.1.0", "no ready worker"),
        ("1.2.0", "yanked"),
    ]
    policy_line = next(line for line in explained["trace"] if line.startswith("policy:"))
    assert "not serving: 1.1.0 no ready worker; 1.2.0 yanked" in policy_line


async def test_nothing_satisfies_names_the_deprecated_versions(
    client: Client, model_name: str
) -> None:
    await two_versions(client, model_name, policy=False)
    deprecated = await client.patch(
        f"/admin/v1/models/{model_name}/versions/1.1.0", json={"status": "deprecated"}
    )
    assert deprecated.status_code == 200, deprecated.text
    nothing = await client.get(f"/admin/v1/models/{model_name}/resolve", params={"version": "^1.1"})
    assert nothing.status_code == 404
    assert nothing.json()["error"] == (
        f'no version of "{model_name}" satisfies "^1.1" (have 1.1.0, 1.0.0; '
        f"deprecated, so served only to an exact version: 1.1.0)"
    )


async def test_an_id_beyond_any_row_is_a_404_and_beyond_64_bits_a_400(
    client: Client, model_name: str
) -> None:
    path = await two_versions(client, model_name)
    for rollout_id in (2**31 - 1, 2**31, 2**63 - 1):  # PostgreSQL's ids are 32-bit
        response = await client.get(f"{path}/{rollout_id}")
        assert response.status_code == 404, response.text
        assert str(rollout_id) in response.json()["error"]
    assert (await client.post(f"{path}/{2**63}/abort")).status_code == 400


async def test_reading_needs_read_and_changing_needs_publish(
    client: Client, model_name: str, tokens: dict[str, str], app: Any
) -> None:
    path = await two_versions(client, model_name)
    rid = (await start(client, path))["id"]
    read = {"Authorization": f"Bearer {tokens['read']}"}
    assert (await client.get(path, headers=read)).status_code == 200
    assert (await client.get(f"{path}/{rid}", headers=read)).status_code == 200
    for verb in ("pause", "resume", "promote", "abort"):
        refused = await client.post(f"{path}/{rid}/{verb}", headers=read)
        assert refused.status_code == 403, (verb, refused.text)
        assert '"publish"' in refused.json()["error"]
    refused = await client.post(path, json={"version": "1.1.0"}, headers=read)
    assert refused.status_code == 403, refused.text
    publish_only = {"Authorization": f"Bearer {tokens['publish']}"}
    forced = await client.post(
        f"{path}/{rid}/promote", params={"force": "true"}, headers=publish_only
    )
    assert forced.status_code == 200, forced.text  # no worker is ready here: forced through
    assert await arms(client, model_name) == [("1.1.0", 100)]


async def test_of_two_racing_starts_exactly_one_wins(
    client: Client, model_name: str, service: RolloutService
) -> None:
    path = await two_versions(client, model_name)
    plan = RolloutIn(version="1.1.0")
    results = await asyncio.gather(
        service.start("t", model_name, plan),
        service.start("t", model_name, plan),
        return_exceptions=True,
    )
    won = [r for r in results if isinstance(r, RolloutOut)]
    lost = [r for r in results if isinstance(r, Conflict)]
    assert (len(won), len(lost)) == (1, 1), results
    assert [r["id"] for r in (await client.get(path)).json()] == [won[0].id]
