"""Acceptance 5c, 5d and 8b of issue 8: workers that hang, fail often or never answer,
beside healthy ones, under concurrent load, cost clients nothing.

A real gateway and two real workers (``w1``, ``w2``) on SQLite, embedded (no Redis). The
gateway retries 5xx answers (``MODELGATE_GATEWAY_RETRY_ON`` with ``5xx``) and runs without
slow start. NOTE: slow start would keep a worker that just joined out of most traffic,
and these tests need the faulty worker to get its full share at once: the hung, failing and
blackholed workers here are the ones that join. Extra workers a test starts are stopped,
and gone from routing, before it ends; `Fleet.restore` handles ``w1`` and ``w2``.

The only timing assertions are the acceptance bounds themselves (6 s for a request during
a 12 s hang, 2 s to eject a worker failing 30% at 100 req/s), each measured on the
gateway's own view (``/admin/v1/workers``) polled every 50 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from tests.support.blackhole import HungConnect, Silent
from tests.support.fleet import Fleet, infer_json, wait_until
from tests.support.workers import WorkerProcess, start_worker

MODEL, VERSION = "resnet", "1.0.0"
REF = f"{MODEL}@{VERSION}"
SCALE = 2.0
INPUT = 1.5
INFER = f"/v2/models/{MODEL}/infer"
RETRY_ON = "connect-failure,reset,unavailable,timeout,unready,5xx"
BASE_EJECTION_S = 30.0  # the gateway's default MODELGATE_GATEWAY_BASE_EJECTION_S


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("worker-faults")
    deployment = Fleet(root, f"sqlite+aiosqlite:///{root / 'registry.db'}", None)
    try:
        deployment.start_gateway(
            MODELGATE_GATEWAY_RETRY_ON=RETRY_ON, MODELGATE_GATEWAY_SLOW_START_S="0"
        )
        deployment.publish(MODEL, {VERSION: SCALE})
        deployment.start_worker("w1", [REF])
        deployment.start_worker("w2", [REF])
        deployment.wait_serving(MODEL, VERSION, workers=2)
        yield deployment
    finally:
        deployment.stop()


# -- traffic ---------------------------------------------------------------------------


@dataclass
class Answers:
    """Every answer of a load run: (status, seconds, backend or error text)."""

    items: list[tuple[int, float, str]] = field(default_factory=list)

    def failures(self) -> list[tuple[int, float, str]]:
        return [a for a in self.items if a[0] != 200]

    @property
    def slowest_s(self) -> float:
        return max((a[1] for a in self.items), default=0.0)

    def served_by(self) -> set[str]:
        return {a[2] for a in self.items if a[0] == 200}


async def post(client: httpx.AsyncClient, answers: Answers) -> None:
    started = time.monotonic()
    try:
        response = await client.post(INFER, json=infer_json(INPUT))
    except httpx.HTTPError as exc:
        answers.items.append((0, time.monotonic() - started, repr(exc)))
        return
    elapsed = time.monotonic() - started
    ok = response.status_code == 200
    if ok and response.json()["outputs"][0]["data"] != [INPUT * SCALE] * 4:
        answers.items.append((-1, elapsed, response.text))  # a wrong answer is a failure
        return
    backend = response.headers.get("x-backend", "") if ok else response.text[:200]
    answers.items.append((response.status_code, elapsed, backend))


@contextlib.asynccontextmanager
async def concurrent_load(fleet: Fleet, concurrency: int = 8) -> AsyncIterator[Answers]:
    """``concurrency`` clients sending back to back while the block runs."""
    answers = Answers()
    stop = asyncio.Event()
    async with httpx.AsyncClient(base_url=fleet.gateway_url, timeout=30) as client:

        async def client_loop() -> None:
            while not stop.is_set():
                await post(client, answers)

        tasks = [asyncio.create_task(client_loop()) for _ in range(concurrency)]
        try:
            yield answers
        finally:
            stop.set()
            await asyncio.gather(*tasks)


@contextlib.asynccontextmanager
async def paced_load(fleet: Fleet, rps: float = 100.0) -> AsyncIterator[Answers]:
    """Requests started at ``rps`` a second (open loop, at most 64 outstanding) while the
    block runs."""
    answers = Answers()
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(base_url=fleet.gateway_url, timeout=30, limits=limits) as client:
        outstanding: set[asyncio.Task[None]] = set()

        async def pace() -> None:
            loop = asyncio.get_running_loop()
            due = loop.time()
            while not stop.is_set():
                if len(outstanding) < 64:
                    task = asyncio.create_task(post(client, answers))
                    outstanding.add(task)
                    task.add_done_callback(outstanding.discard)
                # NOTE: never faster than ``rps``: a late turn of the loop is not caught up
                # with a burst.
                due = max(due + 1 / rps, loop.time())
                await asyncio.sleep(due - loop.time())

        pacer = asyncio.create_task(pace())
        try:
            yield answers
        finally:
            stop.set()
            await pacer
            await asyncio.gather(*outstanding)


# -- the gateway's view ----------------------------------------------------------------


class Watch:
    """Polls ``/admin/v1/workers`` every 50 ms in a thread: ``routed_at`` is a moment
    before the gateway first routed ``REF`` to ``worker`` (when the last poll that saw it
    unrouted was sent), ``ejected_at`` when the gateway ejected it after that, read from
    the gateway's own record (``ejected_until`` less the first ejection's 30 s; both
    processes read the one system-wide monotonic clock). So ``ejected_at - routed_at``
    can only overstate the time to eject.
    """

    def __init__(self, fleet: Fleet, worker: str) -> None:
        self.fleet, self.worker = fleet, worker
        self.routed_at: float | None = None
        self.ejected_at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Watch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        unrouted_at = time.monotonic()
        with self.fleet.admin() as admin:
            while not self._stop.is_set() and self.ejected_at is None:
                sent = time.monotonic()
                rows = {r["id"]: r["balancer"] for r in admin.get("/admin/v1/workers").json()}
                row = rows.get(self.worker)
                if row is None or REF not in row["ready"]:
                    if self.routed_at is None:
                        unrouted_at = sent
                elif self.routed_at is None:
                    self.routed_at = unrouted_at
                if self.routed_at is not None and row is not None and row["ejected_until"]:
                    assert row["ejection_count"] == 1, row
                    self.ejected_at = row["ejected_until"] - BASE_EJECTION_S
                self._stop.wait(0.05)


def metric(fleet: Fleet, name: str, **labels: str) -> float:
    text = httpx.get(f"{fleet.gateway_url}/metrics", timeout=10).text
    total = 0.0
    for found, value in re.findall(rf"^{name}\{{([^}}]*)\}} (\S+)$", text, re.M):
        pairs = dict(re.findall(r'(\w+)="([^"]*)"', found))
        if all(pairs.get(k) == v for k, v in labels.items()):
            total += float(value)
    return total


def retries(fleet: Fleet) -> float:
    return metric(fleet, "modelgate_gateway_retries_total", outcome="allowed")


def extra_worker(fleet: Fleet, worker_id: str, *args: str, **env: str) -> WorkerProcess:
    """A worker beside the fleet's, announced to its gateway, serving ``REF``."""
    return start_worker(
        ["--id", worker_id, "--load", REF, "--max-queue-delay-us", "500", *args],
        fleet.root / f"{worker_id}.log",
        env={**fleet.env, **env},
    )


def stop_extra(fleet: Fleet, worker: WorkerProcess, worker_id: str) -> None:
    """Stop it and wait until the gateway routes nothing to it (it announces its stop)."""
    worker.stop()
    wait_until(
        lambda: REF not in fleet.balancer_rows().get(worker_id, {"ready": []})["ready"],
        f"the gateway to stop routing to {worker_id}",
    )


def worker_5xx(worker: WorkerProcess) -> float:
    text = httpx.get(f"{worker.url}/metrics", timeout=10).text
    pattern = r'^modelgate_worker_failures_total\{code="5\d\d"[^}]*\} (\S+)$'
    return sum(float(v) for v in re.findall(pattern, text, re.M))


# -- the tests -------------------------------------------------------------------------


async def test_a_worker_stopped_for_12_s_costs_no_request_and_none_waits_6_s(
    fleet: Fleet,
) -> None:
    """5c: SIGSTOP ``w1`` for 12 s beside ``w2`` under concurrent load, then SIGCONT."""
    process = fleet.workers["w1"][0]
    before = retries(fleet)
    async with concurrent_load(fleet) as answers:
        await until_answers(answers, 200)
        process.send_signal(signal.SIGSTOP)
        try:
            stopped = len(answers.items)
            await asyncio.sleep(12)  # the outage the criterion names, not a synchronisation
        finally:
            process.send_signal(signal.SIGCONT)
        assert len(answers.items) > stopped + 200, "w2 served on meanwhile"
        await asyncio.to_thread(fleet.wait_worker_serving, "w1", (REF,))
    failures = answers.failures()
    assert failures[:5] == [], f"{len(failures)} of {len(answers.items)} failed"
    # NOTE: the bound is the criterion's: probes find w1 hung within 1.5 s here.
    assert answers.slowest_s < 6.0, f"slowest {answers.slowest_s:.2f} s"
    assert retries(fleet) > before  # requests in flight on w1 were moved, not waited out
    assert answers.served_by() == {"w1", "w2"}
    print(f"5c: {len(answers.items)} requests, slowest {answers.slowest_s:.2f} s")


async def until_answers(answers: Answers, count: int, timeout_s: float = 60.0) -> None:
    """Until ``count`` answers are in (bounded)."""
    deadline = time.monotonic() + timeout_s
    while len(answers.items) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{count} answers within {timeout_s}s")
        await asyncio.sleep(0.05)


async def test_a_worker_failing_30_percent_costs_no_request_and_is_ejected_within_2_s(
    fleet: Fleet,
) -> None:
    """5d: a worker that fails 30% of its requests (fault injection) joins under 100 req/s;
    the fault starts when the gateway first routes to it."""
    before = metric(fleet, "modelgate_gateway_ejections_total", worker="faulty")
    async with paced_load(fleet, 100.0) as answers:
        await until_answers(answers, 100)
        with Watch(fleet, "faulty") as watch:
            faulty = await asyncio.to_thread(
                extra_worker, fleet, "faulty", MODELGATE_WORKER_FAULT_ERROR_RATE="0.3"
            )
            try:
                await asyncio.to_thread(
                    wait_until, lambda: watch.ejected_at is not None, "faulty to be ejected"
                )
                counted = len(answers.items)
                await until_answers(answers, counted + 100)  # and a second of load after
                failed_there = await asyncio.to_thread(worker_5xx, faulty)
            finally:
                await asyncio.to_thread(stop_extra, fleet, faulty, "faulty")
    failures = answers.failures()
    assert failures[:5] == [], f"{len(failures)} of {len(answers.items)} failed"
    assert failed_there > 0, "the fault was injected"
    assert watch.routed_at is not None
    assert watch.ejected_at is not None
    took = watch.ejected_at - watch.routed_at
    # NOTE: the criterion's bound; the way it is measured can only overstate the time.
    assert took <= 2.0, f"ejected {took:.2f} s after the gateway first routed to it"
    assert metric(fleet, "modelgate_gateway_ejections_total", worker="faulty") == before + 1
    served = sum(1 for a in answers.items if a[2] == "faulty")
    print(f"5d: {len(answers.items)} requests, {served} served by faulty, {failed_there:.0f} 500s")
    print(f"5d: ejected at most {took:.2f} s after the gateway began routing to it")


@pytest.mark.parametrize("kind", ["accepts-and-never-answers", "connect-hangs"])
async def test_a_blackholed_worker_costs_no_request(fleet: Fleet, kind: str) -> None:
    """8b: a worker whose announced address blackholes (a listener that accepts and never
    answers, or one whose connects hang) beside the healthy two."""
    silent = await Silent().start() if kind == "accepts-and-never-answers" else None
    hung = HungConnect() if silent is None else None
    url = silent.url if silent is not None else hung.url  # type: ignore[union-attr]
    before = retries(fleet)
    try:
        async with concurrent_load(fleet) as answers:
            await until_answers(answers, 100)
            with Watch(fleet, "blackholed") as watch:
                worker = await asyncio.to_thread(extra_worker, fleet, "blackholed", "--url", url)
                try:
                    await asyncio.to_thread(
                        wait_until, lambda: watch.routed_at is not None, "blackholed routed"
                    )
                    # Until probes have taken it out of rotation, and load after that.
                    await asyncio.to_thread(
                        wait_until,
                        lambda: REF not in fleet.balancer_rows()["blackholed"]["ready"],
                        "probes to find it unready",
                    )
                    await until_answers(answers, len(answers.items) + 200)
                finally:
                    await asyncio.to_thread(stop_extra, fleet, worker, "blackholed")
    finally:
        if silent is not None:
            await silent.stop()
        if hung is not None:
            hung.close()
    failures = answers.failures()
    assert failures[:5] == [], f"{len(failures)} of {len(answers.items)} failed"
    assert retries(fleet) > before  # requests did meet the blackhole, and went elsewhere
    if silent is not None:
        assert any(path.endswith("/infer") for path in silent.paths), silent.paths
    print(f"8b {kind}: {len(answers.items)} requests, slowest {answers.slowest_s:.2f} s")
