"""Faults and a hot swap under load, zero failed requests, in any order.

Redis is a throwaway server on its own port and PostgreSQL is reached through a TCP proxy,
so the test can stop either without touching what the rest of the suite uses. Outages
last past the worker staleness window (shortened here to ``STALE_S``), so the gateway must
really live on the source that is left; every test starts from, and leaves, the same
fleet: both workers serving ``resnet@1.0.0`` only, no traffic policy, both services up.
"""

from __future__ import annotations

import asyncio
import collections
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import redis

from modelgate.core.announce import decode
from tests.support.fleet import Fleet, infer_json, wait_until
from tests.support.isolation import KEYS
from tests.support.models import onnx_bytes
from tests.support.net import free_port, poll_until
from tests.support.postgres import POSTGRES_SERVER

STALE_S = 3.0
SCALES = {"1.0.0": 1.0, "1.1.0": 2.0}
INPUT = 1.5
BASELINE = ["resnet@1.0.0"]


class Service:
    """A child process the test can stop and start again on the same port."""

    def __init__(self, args: list[str], port: int) -> None:
        self.args, self.port = args, port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.process is not None

    def start(self) -> None:
        self.process = subprocess.Popen(self.args)
        process = self.process

        def listening() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"{self.args[0]} exited with {process.returncode}")
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", self.port)) == 0

        poll_until(listening, f"{self.args[0]} to listen on {self.port}", 20)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture(scope="module")
def services(pg_database_factory: Any) -> Iterator[tuple[Service, Service, str]]:
    redis_port, pg_port = free_port(), free_port()
    redis_service = Service(
        [
            "redis-server",
            "--port",
            str(redis_port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--loglevel",
            "warning",
            "--logfile",
            "",
        ],
        redis_port,
    )
    database = pg_database_factory().rsplit("/", 1)[1]
    proxy = Service(
        [sys.executable, "-m", "tests.support.tcpproxy", str(pg_port), "127.0.0.1", "5432"], pg_port
    )
    redis_service.start()
    proxy.start()
    server = POSTGRES_SERVER.replace("127.0.0.1:5432", f"127.0.0.1:{pg_port}")
    try:
        yield redis_service, proxy, f"{server}/{database}"
    finally:
        redis_service.stop()
        proxy.stop()


@pytest.fixture(scope="module")
def fleet(
    services: tuple[Service, Service, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    redis_service, _, database_url = services
    deployment = Fleet(
        tmp_path_factory.mktemp("faults"),
        database_url,
        f"redis://127.0.0.1:{redis_service.port}/0",
    )
    try:
        # Probes every 3 s, so a killed worker is ejected by passive failures first.
        deployment.env["MODELGATE_GATEWAY_WORKER_STALE_S"] = str(STALE_S)
        deployment.env["MODELGATE_WORKER_HEARTBEAT_TTL_S"] = str(STALE_S)
        deployment.start_gateway(MODELGATE_GATEWAY_PROBE_INTERVAL_S="3")
        deployment.publish("resnet", SCALES)
        deployment.start_worker("w1", BASELINE)
        deployment.start_worker("w2", BASELINE)
        deployment.wait_serving("resnet", "1.0.0", workers=2)
        yield deployment
    finally:
        deployment.stop()


@pytest.fixture(autouse=True)
def baseline_fleet(fleet: Fleet, services: tuple[Service, Service, str]) -> Iterator[None]:
    """Before and after each test: both services up, no traffic policy, both workers
    running with only the baseline version and seen serving it by the gateway."""
    _restore(fleet, services)
    yield
    _restore(fleet, services)


def _restore(fleet: Fleet, services: tuple[Service, Service, str]) -> None:
    for service in services[:2]:
        if not service.running:
            service.start()
    with fleet.admin() as admin:
        wait_until(
            lambda: admin.delete("/admin/v1/models/resnet/traffic").status_code in (204, 404),
            "the traffic policy to be cleared",
        )
        rows = {r["id"]: r for r in admin.get("/admin/v1/workers").json()}
    for worker_id in ("w1", "w2"):
        loaded = {f"{i['model']}@{i['version']}" for i in rows.get(worker_id, {}).get("loaded", [])}
        alive = worker_id in fleet.workers and fleet.workers[worker_id][0].poll() is None
        if alive and loaded == set(BASELINE):
            continue
        port = fleet.kill_worker(worker_id) if worker_id in fleet.workers else None
        fleet.start_worker(worker_id, BASELINE, port=port)
    fleet.wait_serving("resnet", "1.0.0", workers=2)
    # A restarted worker ramps up over slow start; tests assume both take full shares.
    wait_until(
        lambda: all(settled(balancer_view(fleet, w)) for w in ("w1", "w2")),
        "both workers in, past slow start",
        60,
    )
    # NOTE: concurrent, so the in-flight term spreads requests: one at a time, P2C keeps
    # choosing the lower-latency worker, which is right, but proves nothing about the other.
    wait_until(lambda: concurrent_backends(fleet, 80) == {"w1", "w2"}, "both workers to serve", 60)


def settled(view: dict[str, Any] | None) -> bool:
    return view is not None and view["ejected_until"] is None and view["weight"] == 1.0


def concurrent_backends(fleet: Fleet, count: int, concurrency: int = 8) -> set[str]:
    def post(_: int) -> httpx.Response:
        return httpx.post(
            f"{fleet.gateway_url}/v2/models/resnet/infer", json=infer_json(INPUT), timeout=30
        )

    with ThreadPoolExecutor(concurrency) as pool:
        responses = list(pool.map(post, range(count)))
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses][:3]
    return {r.headers["x-backend"] for r in responses}


def served_correctly(responses: list[httpx.Response], version: str = "1.0.0") -> None:
    """Every answer is a 200 from a known worker, by ``version``, with its model's output."""
    scale = SCALES.get(version, 3.0)
    failures = [(r.status_code, r.text) for r in responses if r.status_code != 200]
    assert failures == []
    assert {r.headers["x-backend"] for r in responses} <= {"w1", "w2"}
    assert {r.headers["x-model-version"] for r in responses} == {version}
    for response in responses:
        body = response.json()
        assert body["model_version"] == version
        assert body["outputs"][0]["data"] == [INPUT * scale] * 4


async def load_for(
    fleet: Fleet, outlasted: Callable[[], bool], what: str, timeout_s: float = 60.0
) -> list[httpx.Response]:
    """Load in rounds of 100 until ``outlasted()`` holds (checked between rounds, bounded)."""
    responses: list[httpx.Response] = []
    deadline = time.monotonic() + timeout_s
    while True:
        responses += await load(fleet, 100)
        if await asyncio.to_thread(outlasted):
            return responses
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout_s}s")


async def load(
    fleet: Fleet,
    count: int,
    path: str = "/v2/models/resnet/infer",
    concurrency: int = 8,
    during: Any = None,
) -> list[httpx.Response]:
    """``count`` requests, ``concurrency`` at a time; ``during(i)`` runs after the i-th answer."""
    semaphore = asyncio.Semaphore(concurrency)
    done = 0

    async with httpx.AsyncClient(base_url=fleet.gateway_url, timeout=30) as client:

        async def one() -> httpx.Response:
            nonlocal done
            async with semaphore:
                response = await client.post(path, json=infer_json(INPUT))
            done += 1
            if during is not None:
                await during(done)
            return response

        return await asyncio.gather(*(one() for _ in range(count)))


def backends_serving(fleet: Fleet, count: int) -> set[str]:
    with httpx.Client(base_url=fleet.gateway_url, timeout=30) as client:
        responses = [
            client.post("/v2/models/resnet/infer", json=infer_json(INPUT)) for _ in range(count)
        ]
    assert all(r.status_code == 200 for r in responses)
    return {r.headers["x-backend"] for r in responses}


def balancer_view(fleet: Fleet, worker: str) -> dict[str, Any] | None:
    with fleet.admin() as admin:
        rows = {r["id"]: r for r in admin.get("/admin/v1/workers").json()}
    row = rows.get(worker)
    return None if row is None else row["balancer"]


def ejections(fleet: Fleet, worker: str) -> float:
    metrics = httpx.get(f"{fleet.gateway_url}/metrics").text
    match = re.search(rf'modelgate_gateway_ejections_total{{worker="{worker}"}} ([0-9.]+)', metrics)
    return float(match.group(1)) if match else 0.0


def heartbeats_after(rows: dict[str, datetime], moment: datetime) -> bool:
    return set(rows) >= {"w1", "w2"} and all(rows[w] > moment for w in ("w1", "w2"))


def sql_heartbeats(fleet: Fleet) -> dict[str, datetime]:
    with fleet.admin() as admin:
        return {
            r["id"]: datetime.fromisoformat(r["last_seen"])
            for r in admin.get("/admin/v1/workers").json()
        }


def redis_heartbeats(port: int) -> dict[str, datetime]:
    client = redis.Redis(port=port, socket_timeout=2)
    try:
        found = {}
        for worker in ("w1", "w2"):
            data = client.get(KEYS.worker(worker))
            if data is not None:
                found[worker] = decode(data).last_seen
        return found
    finally:
        client.close()


async def test_sigkill_a_worker_under_load_fails_nothing_then_it_returns(fleet: Fleet) -> None:
    killed: dict[str, int] = {}
    before = ejections(fleet, "w1")

    async def kill_once(done: int) -> None:
        if done == 300 and not killed:
            killed["port"] = await asyncio.to_thread(fleet.kill_worker, "w1")

    responses = await load(fleet, 1500, during=kill_once)
    served_correctly(responses)
    late = collections.Counter(r.headers["x-backend"] for r in responses[-500:])
    assert late == {"w2": 500}
    assert ejections(fleet, "w1") == before + 1
    assert (balancer_view(fleet, "w1") or {}).get("ejected_until") is not None

    fleet.start_worker("w1", BASELINE, port=killed["port"])
    wait_until(
        lambda: (balancer_view(fleet, "w1") or {}).get("ejected_until", 1) is None,
        "w1 to be readmitted",
        60,
    )
    wait_until(lambda: "w1" in backends_serving(fleet, 50), "w1 to take traffic again", 60)


async def test_redis_stopped_keeps_serving_and_reports_degraded(
    fleet: Fleet, services: tuple[Service, Service, str]
) -> None:
    redis_service, _, _ = services
    redis_service.stop()
    since = datetime.now(UTC) + timedelta(seconds=STALE_S)
    wait_until(
        lambda: "redis" in httpx.get(f"{fleet.gateway_url}/v2/health/ready").json()["degraded"],
        "the gateway to report redis degraded",
    )
    # Until every Redis announcement would have expired: workers live on SQL heartbeats.
    responses = await load_for(
        fleet, lambda: heartbeats_after(sql_heartbeats(fleet), since), "SQL heartbeats"
    )
    served_correctly(responses)
    assert {r.headers["x-backend"] for r in responses[-200:]} == {"w1", "w2"}
    assert (
        'modelgate_gateway_degraded{source="redis"} 1.0'
        in httpx.get(f"{fleet.gateway_url}/metrics").text
    )
    redis_service.start()
    wait_until(
        lambda: httpx.get(f"{fleet.gateway_url}/v2/health/ready").json()["degraded"] == [],
        "the gateway to recover from the redis outage",
    )


async def test_postgres_stopped_keeps_serving(
    fleet: Fleet, services: tuple[Service, Service, str]
) -> None:
    redis_service, proxy, _ = services
    proxy.stop()
    since = datetime.now(UTC) + timedelta(seconds=STALE_S)
    wait_until(
        lambda: "database" in httpx.get(f"{fleet.gateway_url}/v2/health/ready").json()["degraded"],
        "the gateway to report the database degraded",
    )
    # Until every SQL heartbeat is stale: workers live on their Redis announcements.
    responses = await load_for(
        fleet,
        lambda: heartbeats_after(redis_heartbeats(redis_service.port), since),
        "Redis heartbeats",
    )
    served_correctly(responses)
    assert {r.headers["x-backend"] for r in responses[-200:]} == {"w1", "w2"}
    proxy.start()
    wait_until(
        lambda: httpx.get(f"{fleet.gateway_url}/v2/health/ready").json()["degraded"] == [],
        "the gateway to recover from the database outage",
    )


async def test_hot_swap_under_load_fails_nothing(fleet: Fleet) -> None:
    with fleet.admin() as admin:
        admin.put(
            "/admin/v1/models/resnet/aliases/prod", json={"version": "1.0.0"}
        ).raise_for_status()
        published = admin.post(
            "/admin/v1/models/resnet/versions",
            data={"version": "1.2.0"},
            files={"file": ("m.onnx", onnx_bytes(3.0), "application/octet-stream")},
        )
        assert published.status_code in (201, 409), published.text  # 409: an earlier run
    wait_until(
        lambda: (
            httpx.post(
                f"{fleet.gateway_url}/v2/models/resnet/versions/prod/infer", json=infer_json()
            ).status_code
            == 200
        ),
        "alias prod to route",
    )
    steps: list[str] = []

    async def worker_call(action: str, version: str) -> None:
        async with httpx.AsyncClient(timeout=60) as client:
            for worker_id in ("w1", "w2"):
                port = fleet.workers[worker_id][1]
                url = f"http://127.0.0.1:{port}/v2/repository/models/resnet/versions/{version}"
                response = await client.post(f"{url}/{action}")
                assert response.status_code == 200, response.text

    async def swap(done: int) -> None:
        if done == 100:
            steps.append("load")
            await worker_call("load", "1.2.0")
            await asyncio.to_thread(fleet.wait_serving, "resnet", "1.2.0", 2)
            with fleet.admin() as admin:
                admin.put(
                    "/admin/v1/models/resnet/aliases/prod", json={"version": "1.2.0"}
                ).raise_for_status()
                admin.put(
                    "/admin/v1/models/resnet/traffic",
                    json={"arms": [{"version": "1.2.0", "weight": 100}]},
                ).raise_for_status()
            steps.append("moved")
        elif done == 400 and steps == ["load", "moved"]:
            await worker_call("unload", "1.0.0")  # the old version goes while load runs
            steps.append("unloaded")

    responses = await load(fleet, 1200, path="/v2/models/resnet/versions/prod/infer", during=swap)
    assert steps == ["load", "moved", "unloaded"]
    assert [(r.status_code, r.text) for r in responses if r.status_code != 200] == []
    assert {r.headers["x-model-version"] for r in responses} == {"1.0.0", "1.2.0"}
    assert {r.headers["x-model-version"] for r in responses[-600:]} == {"1.2.0"}
    assert responses[-1].json()["outputs"][0]["data"] == [INPUT * 3.0] * 4
    unpinned = await load(fleet, 50)
    assert {r.headers["x-model-version"] for r in unpinned} == {"1.2.0"}
    with fleet.admin() as admin:
        rows = {r["id"]: r for r in admin.get("/admin/v1/workers").json()}
    for worker_id in ("w1", "w2"):
        assert {i["version"] for i in rows[worker_id]["loaded"]} == {"1.2.0"}
