"""The data plane end to end from `GatewayDataPlane.infer` down: the real routing table,
balancer, retry budget, metrics and forwarder, with fake workers on 127.0.0.1 as the only
fakes (`tests.support.fake_workers`)."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import pytest
import semver
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.balancing.balancer import Balancer, WorkerInfo
from gateway.balancing.retry import RetryBudget
from gateway.dataplane import GatewayDataPlane
from gateway.errors import (
    BackendUnavailable,
    BadGatewayRequest,
    DeadlineExceeded,
    NoReadyWorker,
    Overloaded,
)
from gateway.forward import Forwarder, Reply
from gateway.inbound import ACCESS_LOG
from gateway.metrics import GatewayMetrics
from gateway.routing import RoutingTable
from gateway.settings import GatewaySettings
from modelgate.core.errors import ModelgateError
from registry.resolution import Arm, ModelView, Policy, Shadow, VersionInfo
from registry.snapshot import ActiveRollout, RegistrySnapshot
from tests.support.blackhole import HungConnect
from tests.support.fake_workers import FakeWorker, Mode, refused_url, until

MODEL = "m"
BODY = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]})
JSON = {"content-type": "application/json"}


@dataclass
class Gateway:
    plane: GatewayDataPlane
    fakes: dict[str, FakeWorker]
    #: Worker names in the order they received requests (refused workers never appear).
    log: list[str]

    @property
    def balancer(self) -> Balancer:
        return self.plane.table.balancer

    def worker(self, worker_id: str) -> dict[str, Any]:
        return next(row for row in self.balancer.snapshot() if row["id"] == worker_id)

    def sample(self, name: str, **labels: str) -> float:
        value = self.plane.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value

    def retries(self, outcome: str = "allowed") -> float:
        return self.sample(
            "modelgate_gateway_retries_total", model=MODEL, version="1.0.0", outcome=outcome
        )

    def refusals(self, code: int, reason: str) -> float:
        return self.sample(
            "modelgate_gateway_errors_total", model=MODEL, code=str(code), reason=reason
        )

    async def infer(self, headers: Mapping[str, str] | None = None) -> Reply:
        return await self.plane.infer(MODEL, None, {**JSON, **(headers or {})}, BODY.encode())


Build = Callable[..., Awaitable[Gateway]]


def header(reply: Reply, name: str) -> str:
    return next(v.decode() for k, v in reply.headers if k == name.encode())


def snapshot(versions: Iterable[str], policy: Policy | None) -> RegistrySnapshot:
    infos = [VersionInfo(v, semver.Version.parse(v)) for v in versions]
    return RegistrySnapshot(1, {MODEL: ModelView.build(MODEL, infos, policy=policy)})


@pytest.fixture
async def build() -> AsyncIterator[Build]:
    """Makes gateways over fake workers: ``{id: mode}`` (None: connection refused,
    "no-connect": a connect that hangs), each serving ``serves[id]`` (default 1.0.0);
    keyword arguments are `GatewaySettings`."""
    made: list[Gateway] = []
    hung: list[HungConnect] = []

    async def make(
        modes: Mapping[str, Mode | None],
        *,
        serves: Mapping[str, Iterable[str]] | None = None,
        policy: Policy | None = None,
        **overrides: Any,
    ) -> Gateway:
        settings = GatewaySettings(**{"strategy": "round_robin", "slow_start_s": 0, **overrides})
        log: list[str] = []
        fakes: dict[str, FakeWorker] = {}
        workers: dict[str, WorkerInfo] = {}
        versions: set[str] = set()
        for worker_id, mode in modes.items():
            if mode is None:
                url = refused_url()
            elif mode == "no-connect":
                hung.append(HungConnect())
                url = hung[-1].url
            else:
                fakes[worker_id] = await FakeWorker(worker_id, mode, log).start()
                url = fakes[worker_id].url
            ready = set((serves or {}).get(worker_id, ["1.0.0"]))
            versions |= ready
            workers[worker_id] = WorkerInfo(
                worker_id, url, frozenset((MODEL, v) for v in ready), 0.0
            )
        table = RoutingTable(Balancer(settings, rng=random.Random(7)), rng=lambda: 0.0)
        table.install(snapshot(versions, policy))
        table.workers_changed(workers)
        forwarder = Forwarder(connect_timeout_s=settings.connect_timeout_s)
        await forwarder.start()
        budget = RetryBudget.from_settings(settings)
        plane = GatewayDataPlane(table, forwarder, budget, GatewayMetrics(), settings)
        made.append(gateway := Gateway(plane, fakes, log))
        return gateway

    yield make
    for gateway in made:
        for fake in gateway.fakes.values():
            fake.release()
        # NOTE: shadow copies run as tasks of their own; they end once no fake holds them.
        await asyncio.gather(*gateway.plane.shadows.tasks, return_exceptions=True)
        await gateway.plane.forwarder.stop()
        for fake in gateway.fakes.values():
            await fake.stop()
    for listener in hung:
        listener.close()


# -- retries ---------------------------------------------------------------------------


async def test_a_503_is_retried_on_another_worker(build: Build) -> None:
    gw = await build({"a": 503, "b": "ok"})
    for n in range(1, 4):
        gw.log.clear()
        reply = await gw.infer()
        assert gw.log == ["a", "b"]  # round robin: "a" first, its retry elsewhere
        assert (reply.status, json.loads(reply.body)["id"], header(reply, "x-backend")) == (
            200,
            "b",
            "b",
        )
        assert gw.retries() == n
    assert gw.worker("a")["consecutive_failures"] == 3


async def test_a_refused_connection_is_retried_on_another_worker(build: Build) -> None:
    gw = await build({"a": None, "b": "ok"})
    reply = await gw.infer()
    assert (reply.status, header(reply, "x-backend"), gw.log) == (200, "b", ["b"])
    assert gw.worker("a")["consecutive_failures"] == 1
    assert gw.worker("b")["consecutive_failures"] == 0


async def test_retries_never_go_back_to_a_worker_already_tried(build: Build) -> None:
    gw = await build({"a": 503, "b": "close", "c": 503, "d": "ok"}, strategy="p2c")
    for _ in range(12):
        gw.log.clear()
        reply = await gw.infer()
        assert reply.status == 200
        assert gw.log[-1] == "d", gw.log
        assert len(gw.log) == len(set(gw.log)), gw.log


async def test_every_worker_is_tried_once_when_all_fail(build: Build) -> None:
    gw = await build({"a": 503, "b": 503, "c": None}, request_timeout_s=3.0)
    with pytest.raises(NoReadyWorker, match="already tried") as caught:
        await gw.infer()
    assert caught.value.status_code == 503
    assert sorted(gw.log) == ["a", "b"]
    assert gw.refusals(503, "NoReadyWorker") == 1


async def test_exhausting_every_worker_gives_the_retry_slot_back(build: Build) -> None:
    gw = await build({"a": 503, "b": 503})
    with pytest.raises(NoReadyWorker):
        await gw.infer()
    assert gw.plane.budget.active_requests == 0
    assert gw.plane.budget.active_retries == 0


async def test_a_workers_5xx_replies_eject_it(build: Build) -> None:
    gw = await build({"a": 500, "b": "ok"}, consecutive_failures=3)
    for _ in range(3):
        gw.log.clear()
        failed = await gw.infer()  # round robin: "a", then "b"
        assert (failed.status, gw.log) == (500, ["a"])  # a 500 is the worker's answer
        assert (await gw.infer()).status == 200
    row = gw.worker("a")
    assert row["ejected_until"] is not None
    assert row["ejection_count"] == 1
    gw.log.clear()
    for _ in range(4):
        assert (await gw.infer()).status == 200
    assert gw.log == ["b"] * 4
    assert gw.worker("b")["ejected_until"] is None


async def test_a_workers_4xx_is_an_answer_not_a_fault(build: Build) -> None:
    gw = await build({"a": 400, "b": "ok"}, consecutive_failures=2, retry_on="5xx,unready")
    for _ in range(6):
        gw.log.clear()
        reply = await gw.infer()  # round robin: "a" answers 400, "b" 200
        assert len(gw.log) == 1
        assert reply.status == (400 if gw.log == ["a"] else 200)
    row = gw.worker("a")
    assert (row["consecutive_failures"], row["ejected_until"]) == (0, None)
    assert gw.retries() == 0


async def test_with_5xx_in_retry_on_a_500_is_retried_elsewhere(build: Build) -> None:
    gw = await build({"a": 500, "b": "ok"}, retry_on="connect-failure,5xx")
    reply = await gw.infer()
    assert (reply.status, gw.log, header(reply, "x-backend")) == (200, ["a", "b"], "b")
    assert gw.worker("a")["consecutive_failures"] == 1
    assert gw.retries() == 1


async def test_a_500_with_nowhere_else_to_go_reaches_the_client_as_it_was(build: Build) -> None:
    gw = await build({"a": 500, "b": 500}, retry_on="5xx")
    reply = await gw.infer()
    assert (reply.status, json.loads(reply.body), gw.log) == (
        500,
        {"error": "b answers 500"},
        ["a", "b"],
    )
    assert gw.plane.budget.active_retries == 0


async def test_a_503_left_out_of_retry_on_is_not_retried(build: Build) -> None:
    gw = await build({"a": 503, "b": "ok"}, retry_on="connect-failure")
    with pytest.raises(BackendUnavailable, match="worker a answered 503"):
        await gw.infer()
    assert (gw.log, gw.retries()) == (["a"], 0)


async def test_a_connect_that_hangs_is_retried_on_another_worker(build: Build) -> None:
    gw = await build({"a": "no-connect", "b": "ok"}, connect_timeout_s=0.2)
    reply = await gw.infer()  # round robin: "a" first
    assert (reply.status, header(reply, "x-backend"), gw.log) == (200, "b", ["b"])
    assert gw.worker("a")["consecutive_failures"] == 1
    assert gw.retries() == 1


async def test_an_attempt_past_its_timeout_is_retried_and_counts_against_its_worker(
    build: Build,
) -> None:
    gw = await build({"a": "hang", "b": "ok"}, attempt_timeout_s=0.2)
    reply = await gw.infer()
    assert (reply.status, header(reply, "x-backend"), gw.log) == (200, "b", ["a", "b"])
    assert gw.worker("a")["consecutive_failures"] == 1
    assert gw.worker("a")["in_flight"] == 0


# -- requests in flight on a worker gone bad -------------------------------------------


async def hanging_on_a(gw: Gateway) -> asyncio.Task[Reply]:
    """A request started on the hung worker "a" (round robin picks it first)."""
    task = asyncio.create_task(gw.infer())
    await until(lambda: gw.fakes["a"].hits == 1, "the request to reach a")
    return task


@pytest.mark.parametrize("news", ["unready", "ejected"])
async def test_a_request_on_a_worker_gone_bad_moves_to_another(build: Build, news: str) -> None:
    gw = await build({"a": "hang", "b": "ok"}, attempt_timeout_s=0)
    task = await hanging_on_a(gw)
    if news == "unready":  # as the prober does
        gw.balancer.mark_unready("a", MODEL, "1.0.0")
        gw.plane.worker_unready("a", MODEL, "1.0.0")
    else:
        gw.plane.worker_ejected("a")
    reply = await asyncio.wait_for(task, 5)  # not the 30 s deadline
    assert (reply.status, header(reply, "x-backend"), gw.log) == (200, "b", ["a", "b"])
    assert gw.worker("a")["in_flight"] == 0
    assert gw.worker("a")["consecutive_failures"] == 1
    assert gw.retries() == 1
    assert (gw.plane.budget.active_retries, gw.plane.budget.active_requests) == (0, 0)
    assert len(gw.plane.in_flight) == 0


async def test_other_versions_on_a_worker_found_unready_keep_their_requests(
    build: Build,
) -> None:
    gw = await build({"a": "hang", "b": "ok"}, attempt_timeout_s=0)
    task = await hanging_on_a(gw)
    gw.plane.worker_unready("a", MODEL, "9.9.9")
    for _ in range(2):  # abandoning would happen on the loop's next turn
        await asyncio.sleep(0)
    assert not task.done()
    assert gw.plane.budget.retries_allowed == 0
    gw.fakes["a"].release()
    reply = await asyncio.wait_for(task, 5)
    assert (reply.status, header(reply, "x-backend")) == (200, "a")


@pytest.mark.parametrize(
    ("modes", "overrides", "why"),
    [
        ({"a": "hang"}, {}, "nowhere else to go"),
        (
            {"a": "hang", "b": "ok"},
            {"retry_budget_ratio": 0, "retry_budget_min_concurrent": 0},
            "no retry budget",
        ),
        ({"a": "hang", "b": "ok"}, {"retry_on": "connect-failure"}, "unready not in retry_on"),
    ],
)
async def test_an_attempt_that_cannot_be_retried_runs_on(
    build: Build, modes: dict[str, Mode], overrides: dict[str, Any], why: str
) -> None:
    gw = await build(modes, attempt_timeout_s=0, **overrides)
    task = await hanging_on_a(gw)
    gw.plane.worker_unready("a", MODEL, "1.0.0")
    # NOTE: abandoning is deferred to the loop's next turn; give it that turn and one more.
    for _ in range(2):
        await asyncio.sleep(0)
    assert not task.done(), why
    gw.fakes["a"].release()
    reply = await asyncio.wait_for(task, 5)
    assert (reply.status, header(reply, "x-backend"), gw.log) == (200, "a", ["a"]), why
    assert gw.plane.budget.active_retries == 0


# -- deadline and the concurrency gate -------------------------------------------------


async def test_the_clients_deadline_gives_504_when_the_worker_hangs(build: Build) -> None:
    gw = await build({"a": "hang"})
    with pytest.raises(DeadlineExceeded) as caught:
        await gw.infer({"x-request-timeout-ms": "50"})
    assert caught.value.status_code == 504
    assert gw.fakes["a"].hits == 1
    # A client's own short deadline says nothing about the worker's health.
    assert gw.worker("a")["consecutive_failures"] == 0
    assert gw.worker("a")["in_flight"] == 0
    assert gw.refusals(504, "DeadlineExceeded") == 1


@pytest.mark.parametrize("raw", ["soon", "-1", "nan"])
async def test_a_malformed_deadline_is_refused_before_forwarding(build: Build, raw: str) -> None:
    gw = await build({"a": "ok"})
    with pytest.raises(BadGatewayRequest, match="X-Request-Timeout-Ms") as caught:
        await gw.infer({"x-request-timeout-ms": raw})
    assert caught.value.status_code == 400
    assert gw.log == []


async def test_the_gate_queues_then_sheds_with_429(build: Build) -> None:
    gw = await build({"a": "hang"}, model_concurrency=1, model_queue=1)
    first = asyncio.create_task(gw.infer())
    await until(lambda: gw.fakes["a"].hits == 1, "the first request to reach the worker")
    second = asyncio.create_task(gw.infer())
    await until(lambda: gw.plane.gates[MODEL].waiting == 1, "the second request to queue")
    with pytest.raises(Overloaded) as caught:
        await gw.infer()
    assert caught.value.status_code == 429
    assert gw.sample("modelgate_gateway_shed_total", model=MODEL, reason="queue") == 1
    assert gw.fakes["a"].hits == 1  # the queued request waits at the gate, not the worker
    gw.fakes["a"].release()
    replies = await asyncio.gather(first, second)
    assert [r.status for r in replies] == [200, 200]
    assert gw.fakes["a"].hits == 2


# -- shadow copies ---------------------------------------------------------------------

SHADOWED = Policy((Arm("1.0.0", 1),), shadow=Shadow("2.0.0", 1.0))


@pytest.mark.parametrize(("mode", "outcome"), [(500, "500"), ("close", "failed")])
async def test_a_failing_shadow_never_changes_the_primary_reply(
    build: Build, mode: Mode, outcome: str
) -> None:
    gw = await build({"p": "ok", "s": mode}, serves={"s": ["2.0.0"]}, policy=SHADOWED)
    reply = await gw.infer()
    assert (reply.status, header(reply, "x-model-version"), header(reply, "x-backend")) == (
        200,
        "1.0.0",
        "p",
    )
    assert json.loads(reply.body)["id"] == "p"
    labels = {"model": MODEL, "version": "2.0.0", "outcome": outcome}
    await until(lambda: gw.sample("modelgate_gateway_shadow_total", **labels) == 1, "shadow")
    assert gw.fakes["s"].requests[0][0] == f"/v2/models/{MODEL}/versions/2.0.0/infer"
    assert gw.retries() == 0


async def test_a_hanging_shadow_does_not_hold_the_primary_reply(build: Build) -> None:
    gw = await build({"p": "ok", "s": "hang"}, serves={"s": ["2.0.0"]}, policy=SHADOWED)
    replies = [await gw.infer() for _ in range(3)]
    # Every reply came back while the shadow worker still held its copies.
    assert [(r.status, header(r, "x-backend")) for r in replies] == [(200, "p")] * 3
    await until(lambda: gw.fakes["s"].hits == 3, "the shadow copies to arrive")
    gw.fakes["s"].release()
    labels = {"model": MODEL, "version": "2.0.0", "outcome": "ok"}
    await until(lambda: gw.sample("modelgate_gateway_shadow_total", **labels) == 3, "shadows")


# -- the policy's sticky header --------------------------------------------------------

SPLIT = Policy((Arm("1.0.0", 1), Arm("2.0.0", 1)), sticky_header="X-User")


async def split_gateway(build: Build, policy: Policy = SPLIT) -> Gateway:
    return await build({"w1": "ok", "w2": "ok"}, serves={"w2": ["2.0.0"]}, policy=policy)


async def arm(gw: Gateway, headers: Mapping[str, str]) -> str:
    reply = await gw.infer(headers)
    assert reply.status == 200
    version = header(reply, "x-model-version")
    assert json.loads(reply.body)["model_version"] == version  # the worker got that arm
    return version


async def test_the_sticky_header_keeps_a_user_on_one_arm(build: Build) -> None:
    gw = await split_gateway(build)
    chosen: dict[str, str] = {}
    for n in range(20):
        user = f"user-{n}"
        arms = {await arm(gw, {"x-user": user}) for _ in range(4)}
        assert len(arms) == 1, (user, arms)
        chosen[user] = arms.pop()
    assert set(chosen.values()) == {"1.0.0", "2.0.0"}  # different users spread


async def test_x_route_key_is_ignored_when_the_policy_names_another_header(
    build: Build,
) -> None:
    gw = await split_gateway(build)
    for n in range(4):
        arms = {await arm(gw, {"x-user": f"user-{n}", "x-route-key": f"k-{k}"}) for k in range(8)}
        assert len(arms) == 1, arms


async def test_x_route_key_is_the_default_sticky_header(build: Build) -> None:
    gw = await split_gateway(build, Policy(SPLIT.arms))
    chosen = set()
    for n in range(12):
        arms = {await arm(gw, {"x-route-key": f"k-{n}", "x-user": f"u-{u}"}) for u in range(3)}
        assert len(arms) == 1, arms
        chosen |= arms
    assert chosen == {"1.0.0", "2.0.0"}


# -- rollouts: a failed candidate attempt is retried on the baseline -------------------

ROLLOUT = Policy((Arm("2.0.0", 100), Arm("1.0.0", 0)))
CANARY_SERVES = {"c": ["2.0.0"], "b": ["1.0.0"]}


def in_rollout(gw: Gateway, candidate: str = "2.0.0", baseline: str = "1.0.0") -> None:
    """Give ``gw`` a snapshot with an active rollout of ``candidate`` against ``baseline``."""
    table = gw.plane.table
    assert table.snapshot is not None
    rollouts = {MODEL: ActiveRollout(1, candidate, baseline, "running")}
    table.install(replace(table.snapshot, rollouts=rollouts))


async def window(gw: Gateway, version: str) -> tuple[int, int]:
    now = time.time()
    stats = await gw.plane.outcomes.window(MODEL, version, now - 60, now)
    return stats.requests, stats.errors


@pytest.mark.parametrize("mode", [500, 503, "close", None])
async def test_a_failed_candidate_attempt_is_retried_on_the_baseline(
    build: Build, mode: Mode | None
) -> None:
    gw = await build({"c": mode, "b": "ok"}, serves=CANARY_SERVES, policy=ROLLOUT)
    in_rollout(gw)
    reply = await gw.infer()
    assert reply.status == 200
    assert header(reply, "x-model-version") == "1.0.0"
    assert header(reply, "x-route") == "baseline-retry:1.0.0"
    assert header(reply, "x-backend") == "b"
    assert await window(gw, "2.0.0") == (1, 1)  # the gate still sees the failure
    assert await window(gw, "1.0.0") == (1, 0)
    assert (
        gw.sample(
            "modelgate_gateway_retries_total", model=MODEL, version="2.0.0", outcome="allowed"
        )
        == 1
    )
    assert (gw.plane.budget.active_requests, gw.plane.budget.active_retries) == (0, 0)


async def test_at_a_100_percent_step_a_failed_candidate_attempt_still_goes_to_the_baseline(
    build: Build,
) -> None:
    gw = await build(
        {"c": 500, "b": "ok"}, serves=CANARY_SERVES, policy=Policy((Arm("2.0.0", 100),))
    )
    in_rollout(gw)
    reply = await gw.infer()
    assert (reply.status, header(reply, "x-model-version"), gw.log) == (200, "1.0.0", ["c", "b"])


async def test_a_yanked_baseline_serves_no_retry(build: Build) -> None:
    gw = await build(
        {"c": 500, "b": "ok"}, serves=CANARY_SERVES, policy=Policy((Arm("2.0.0", 100),))
    )
    table = gw.plane.table
    assert table.snapshot is not None
    view = table.snapshot.models[MODEL]
    yanked = [replace(v, status="yanked") if v.version == "1.0.0" else v for v in view.versions]
    snapshot = replace(
        table.snapshot, models={MODEL: ModelView.build(MODEL, yanked, policy=view.policy)}
    )
    table.install(snapshot)
    in_rollout(gw)
    reply = await gw.infer()
    assert (reply.status, gw.log) == (500, ["c"])


async def test_without_a_rollout_a_candidates_500_is_its_answer_and_uncounted(
    build: Build,
) -> None:
    gw = await build({"c": 500, "b": "ok"}, serves=CANARY_SERVES, policy=ROLLOUT)
    reply = await gw.infer()
    assert (reply.status, gw.log) == (500, ["c"])
    assert await window(gw, "2.0.0") == (0, 0)  # counting costs nothing without a rollout


async def test_a_pinned_candidate_is_never_served_by_the_baseline(build: Build) -> None:
    gw = await build({"c": 500, "b": "ok"}, serves=CANARY_SERVES, policy=ROLLOUT)
    in_rollout(gw)
    reply = await gw.plane.infer(MODEL, "2.0.0", JSON, BODY.encode())
    assert (reply.status, header(reply, "x-model-version"), gw.log) == (500, "2.0.0", ["c"])


async def test_a_baseline_outside_the_requested_range_is_not_used(build: Build) -> None:
    gw = await build({"c": 500, "b": "ok"}, serves=CANARY_SERVES, policy=ROLLOUT)
    in_rollout(gw)
    reply = await gw.plane.infer(MODEL, "^2.0.0", JSON, BODY.encode())
    assert (reply.status, gw.log) == (500, ["c"])


async def test_the_baseline_retry_stays_within_the_retry_budget(build: Build) -> None:
    gw = await build(
        {"c": 500, "b": "ok"},
        serves=CANARY_SERVES,
        policy=ROLLOUT,
        retry_budget_ratio=0.0,
        retry_budget_min_concurrent=0,
    )
    in_rollout(gw)
    reply = await gw.infer()
    assert (reply.status, header(reply, "x-model-version"), gw.log) == (500, "2.0.0", ["c"])
    assert (
        gw.sample("modelgate_gateway_retries_total", model=MODEL, version="2.0.0", outcome="denied")
        == 1
    )


async def test_a_candidates_4xx_is_its_answer_and_no_error(build: Build) -> None:
    gw = await build({"c": 400, "b": "ok"}, serves=CANARY_SERVES, policy=ROLLOUT)
    in_rollout(gw)
    reply = await gw.infer()
    assert (reply.status, gw.log) == (400, ["c"])
    assert await window(gw, "2.0.0") == (1, 0)


async def test_a_failing_baseline_is_not_retried_on_itself_after_the_candidate(
    build: Build,
) -> None:
    gw = await build({"c": 500, "b": 500}, serves=CANARY_SERVES, policy=ROLLOUT)
    in_rollout(gw)
    reply = await gw.infer()
    assert (reply.status, header(reply, "x-model-version"), gw.log) == (500, "1.0.0", ["c", "b"])
    assert await window(gw, "1.0.0") == (1, 1)


# -- request ids, access lines and spans -----------------------------------------------

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"


@dataclass
class Spans:
    exporter: InMemorySpanExporter
    tracer: Any

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if s.name == name]


@pytest.fixture
def spans() -> Iterator[Spans]:
    """A tracer whose spans end up in memory (the test hands it to the data plane)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield Spans(exporter, provider.get_tracer("test"))
    provider.shutdown()


def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    ACCESS_LOG.flush()
    return [
        {k: getattr(r, k) for k in ACCESS_LOG.fields}
        for r in caplog.records
        if r.name == "modelgate.access"
    ]


async def test_a_retried_request_has_its_span_and_one_attempt_span_per_try(
    build: Build, spans: Spans
) -> None:
    gw = await build({"a": 503, "b": "ok"})
    gw.plane.tracer = spans.tracer
    traceparent = f"00-{TRACE_ID}-{CLIENT_SPAN}-01"
    reply = await gw.infer({"traceparent": traceparent, "x-request-id": "rid-1"})
    assert (reply.status, gw.log) == (200, ["a", "b"])
    [request] = spans.named(f"infer {MODEL}")
    attempts = spans.named("attempt")
    assert request.context is not None
    assert request.parent is not None
    assert (request.context.trace_id, request.parent.span_id) == (
        int(TRACE_ID, 16),
        int(CLIENT_SPAN, 16),
    )
    assert [a.attributes and a.attributes["modelgate.worker"] for a in attempts] == ["a", "b"]
    for attempt in attempts:
        assert attempt.parent is not None
        assert attempt.context is not None
        assert attempt.parent.span_id == request.context.span_id
        assert attempt.context.trace_id == int(TRACE_ID, 16)
    assert request.attributes is not None
    named = {k.removeprefix("modelgate."): v for k, v in request.attributes.items()}
    assert (named["model"], named["version"], named["worker"], named["retries"]) == (
        MODEL,
        "1.0.0",
        "b",
        1,
    )
    # each worker got its own attempt's traceparent, and the request id
    for fake, attempt in zip((gw.fakes["a"], gw.fakes["b"]), attempts, strict=True):
        assert attempt.context is not None
        _, headers = fake.requests[-1]
        assert headers["traceparent"] == f"00-{TRACE_ID}-{attempt.context.span_id:016x}-01"
        assert headers["x-request-id"] == "rid-1"


async def test_without_a_tracer_no_traceparent_is_sent_and_a_request_id_is_made(
    build: Build,
) -> None:
    gw = await build({"a": "ok"})
    assert gw.plane.tracer is None  # tracing is off unless the environment turns it on
    await gw.infer({"traceparent": f"00-{TRACE_ID}-{CLIENT_SPAN}-01", "x-request-id": "é" * 3})
    _, headers = gw.fakes["a"].requests[-1]
    assert "traceparent" not in headers
    assert len(headers["x-request-id"]) == 32
    assert int(headers["x-request-id"], 16) >= 0


async def test_every_request_answered_or_refused_writes_one_access_line(
    build: Build, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="modelgate.access")
    gw = await build({"a": 503, "b": "ok"})
    await gw.infer({"x-request-id": "ok-1"})
    with pytest.raises(ModelgateError):
        await gw.plane.infer(MODEL, "^^1", {"x-request-id": "bad-1"}, BODY.encode())
    with pytest.raises(ModelgateError):
        await gw.plane.infer("nope", None, {"x-request-id": "unknown-1"}, BODY.encode())
    gw.fakes["b"].mode = 503
    with pytest.raises(NoReadyWorker):
        await gw.infer({"x-request-id": "down-1"})
    lines = {line["request_id"]: line for line in access_lines(caplog)}
    assert list(lines) == ["ok-1", "bad-1", "unknown-1", "down-1"]
    assert lines["ok-1"] | {"duration_ms": 0} == {
        "request_id": "ok-1",
        "protocol": "http",
        "model": MODEL,
        "reference": None,
        "version": "1.0.0",
        "arm": "best",
        "worker": "b",
        "status": 200,
        "duration_ms": 0,
        "retries": 1,
        "error": None,
    }
    assert (lines["bad-1"]["status"], lines["bad-1"]["reference"]) == (400, "^^1")
    assert (lines["unknown-1"]["status"], lines["unknown-1"]["model"]) == (404, "nope")
    assert (lines["down-1"]["status"], lines["down-1"]["retries"]) == (503, 1)
    assert "already tried" in lines["down-1"]["error"]


async def test_a_shed_request_is_logged_once_with_429(
    build: Build, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="modelgate.access")
    gw = await build({"a": "hang"}, model_concurrency=1, model_queue=0)
    first = asyncio.create_task(gw.infer({"x-request-id": "first"}))
    await until(lambda: gw.fakes["a"].hits == 1, "the first request to reach the worker")
    with pytest.raises(Overloaded):
        await gw.infer({"x-request-id": "shed"})
    gw.fakes["a"].release()
    await first
    statuses = [(line["request_id"], line["status"]) for line in access_lines(caplog)]
    assert statuses == [("shed", 429), ("first", 200)]
