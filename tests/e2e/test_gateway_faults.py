"""Acceptance 2 and 3 of the gateway: faults and a hot swap under load, zero failed requests.

Redis is a throwaway server on its own port and PostgreSQL is reached through a TCP proxy,
so the test can stop either without touching what the rest of the suite uses.
"""

from __future__ import annotations

import asyncio
import collections
import shlex
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.fleet import Fleet, infer_json, wait_until
from tests.support.models import onnx_bytes
from tests.support.net import free_port
from tests.support.postgres import POSTGRES_SERVER


class Service:
    """A child process the test can stop and start again on the same port."""

    def __init__(self, args: list[str], port: int) -> None:
        self.args, self.port = args, port
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(self.args, stdout=subprocess.PIPE)
        assert self.process.stdout is not None
        self.process.stdout.readline()  # both print a line once listening

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            if self.process.stdout is not None:
                self.process.stdout.close()
            self.process = None


@pytest.fixture(scope="module")
def services(pg_database_factory: Any) -> Iterator[tuple[Service, Service, str]]:
    redis_port, pg_port = free_port(), free_port()
    redis = Service(
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
    redis.args = ["sh", "-c", f"echo up; exec {shlex.join(redis.args)}"]
    database = pg_database_factory().rsplit("/", 1)[1]
    proxy = Service(
        [sys.executable, "-m", "tests.support.tcpproxy", str(pg_port), "127.0.0.1", "5432"], pg_port
    )
    redis.start()
    proxy.start()
    server = POSTGRES_SERVER.replace("127.0.0.1:5432", f"127.0.0.1:{pg_port}")
    try:
        yield redis, proxy, f"{server}/{database}"
    finally:
        redis.stop()
        proxy.stop()


@pytest.fixture(scope="module")
def fleet(
    services: tuple[Service, Service, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    redis, _, database_url = services
    deployment = Fleet(
        tmp_path_factory.mktemp("faults"), database_url, f"redis://127.0.0.1:{redis.port}/0"
    )
    try:
        # Probes every 3 s, so a killed worker is ejected by passive failures first.
        deployment.start_gateway(MODELGATE_GATEWAY_PROBE_INTERVAL_S="3")
        deployment.publish("resnet", {"1.0.0": 1.0, "1.1.0": 2.0})
        deployment.start_worker("w1", ["resnet@1.0.0"])
        deployment.start_worker("w2", ["resnet@1.0.0"])
        deployment.wait_serving("resnet", "1.0.0", workers=2)
        yield deployment
    finally:
        deployment.stop()


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
                response = await client.post(path, json=infer_json())
            done += 1
            if during is not None:
                await during(done)
            return response

        return await asyncio.gather(*(one() for _ in range(count)))


def backends_serving(fleet: Fleet, count: int) -> set[str]:
    with httpx.Client(base_url=fleet.gateway_url, timeout=30) as client:
        responses = [
            client.post("/v2/models/resnet/infer", json=infer_json()) for _ in range(count)
        ]
    assert all(r.status_code == 200 for r in responses)
    return {r.headers["x-backend"] for r in responses}


def balancer_view(fleet: Fleet, worker: str) -> dict[str, Any] | None:
    with fleet.admin() as admin:
        rows = {r["id"]: r for r in admin.get("/admin/v1/workers").json()}
    row = rows.get(worker)
    return None if row is None else row["balancer"]


async def test_sigkill_a_worker_under_load_fails_nothing_then_it_returns(fleet: Fleet) -> None:
    killed: dict[str, int] = {}

    async def kill_once(done: int) -> None:
        if done == 300 and not killed:
            killed["port"] = await asyncio.to_thread(fleet.kill_worker, "w1")

    responses = await load(fleet, 1500, during=kill_once)
    failures = [(r.status_code, r.text) for r in responses if r.status_code != 200]
    assert failures == []
    late = collections.Counter(r.headers["x-backend"] for r in responses[-500:])
    assert late == {"w2": 500}
    metrics = httpx.get(f"{fleet.gateway_url}/metrics").text
    assert 'modelgate_gateway_ejections_total{worker="w1"} 1.0' in metrics
    assert (balancer_view(fleet, "w1") or {}).get("ejected_until") is not None

    fleet.start_worker("w1", ["resnet@1.0.0"], port=killed["port"])
    wait_until(
        lambda: (balancer_view(fleet, "w1") or {}).get("ejected_until", 1) is None,
        "w1 to be readmitted",
        60,
    )
    wait_until(lambda: "w1" in backends_serving(fleet, 50), "w1 to take traffic again", 60)


async def test_redis_stopped_keeps_serving_and_reports_degraded(
    fleet: Fleet, services: tuple[Service, Service, str]
) -> None:
    redis, _, _ = services
    redis.stop()
    try:
        wait_until(
            lambda: "redis" in httpx.get(f"{fleet.gateway_url}/v2/health/ready").json()["degraded"],
            "the gateway to report redis degraded",
        )
        responses = await load(fleet, 300)
        assert [r.status_code for r in responses] == [200] * 300
        assert (
            'modelgate_gateway_degraded{source="redis"} 1.0'
            in httpx.get(f"{fleet.gateway_url}/metrics").text
        )
    finally:
        redis.start()
    wait_until(
        lambda: httpx.get(f"{fleet.gateway_url}/v2/health/ready").json()["degraded"] == [],
        "the gateway to recover from the redis outage",
    )


async def test_postgres_stopped_keeps_serving(
    fleet: Fleet, services: tuple[Service, Service, str]
) -> None:
    _, proxy, _ = services
    proxy.stop()
    try:
        wait_until(
            lambda: (
                "database" in httpx.get(f"{fleet.gateway_url}/v2/health/ready").json()["degraded"]
            ),
            "the gateway to report the database degraded",
        )
        responses = await load(fleet, 300)
        assert [r.status_code for r in responses] == [200] * 300
    finally:
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
        admin.post(
            "/admin/v1/models/resnet/versions",
            data={"version": "1.2.0"},
            files={
                "file": (
                    "m.onnx",
                    onnx_bytes(3.0),
                    "application/octet-stream",
                )
            },
        ).raise_for_status()
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

    async def swap(done: int) -> None:
        if done == 100:
            steps.append("load")
            async with httpx.AsyncClient(timeout=60) as client:
                for worker_id in ("w1", "w2"):
                    port = fleet.workers[worker_id][1]
                    response = await client.post(
                        f"http://127.0.0.1:{port}/v2/repository/models/resnet/versions/1.2.0/load"
                    )
                    assert response.status_code == 200, response.text
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

    responses = await load(fleet, 1200, path="/v2/models/resnet/versions/prod/infer", during=swap)
    assert steps == ["load", "moved"]
    assert [r.status_code for r in responses if r.status_code != 200] == []
    assert responses[-1].headers["x-model-version"] == "1.2.0"
    assert {r.headers["x-model-version"] for r in responses} == {"1.0.0", "1.2.0"}
    unpinned = await load(fleet, 50)
    assert {r.headers["x-model-version"] for r in unpinned} == {"1.2.0"}
