"""Acceptance 8 of issue 8 (a and c): the gateway neither starves a readmitted worker nor
forgets its fleet when its sources fail.

Real gateway and worker processes. Redis is a throwaway redis-server of this module (so a
restart starts it empty), PostgreSQL is reached through a TCP proxy (so the database can
be cut), and each worker is announced behind a TCP proxy of its own (so a test can cut
one off and clear the fault; both sit behind one, so they look alike to the balancer).
Workers heartbeat every `HEARTBEAT_S`, so after Redis restarts empty there is a real gap
before they re-announce; the staleness window is `STALE_S`.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.support.fleet import Fleet, infer_json, wait_until
from tests.support.net import free_port
from tests.support.services import Service, redis_heartbeats, redis_server, tcp_proxy
from tests.support.traffic import Loop

STALE_S = 6.0
HEARTBEAT_S = 2.0
WORKERS = ("w1", "w2")
INFER = "/v2/models/resnet/infer"
#: Acceptance 8a: the readmitted worker's share of sequential traffic within 10 s.
READMITTED_SHARE = 0.2
WINDOW_S = 10.0


class Deployment:
    """The fleet and what a test here may stop: Redis, the database proxy, worker proxies."""

    def __init__(self, fleet: Fleet, redis_service: Service, database: Service) -> None:
        self.fleet, self.redis, self.database = fleet, redis_service, database
        self.worker_proxies: dict[str, Service] = {}


@pytest.fixture(scope="module")
def deployment(
    pg_database_factory: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    database = make_url(pg_database_factory())
    redis_service = redis_server()
    proxy = tcp_proxy(database.host or "127.0.0.1", database.port or 5432)
    redis_service.start()
    proxy.start()
    proxied = database.set(host="127.0.0.1", port=proxy.port)
    fleet = Fleet(
        tmp_path_factory.mktemp("memory"),
        proxied.render_as_string(hide_password=False),
        f"redis://127.0.0.1:{redis_service.port}/0",
    )
    made = Deployment(fleet, redis_service, proxy)
    fleet.env["MODELGATE_GATEWAY_WORKER_STALE_S"] = str(STALE_S)
    fleet.env["MODELGATE_WORKER_HEARTBEAT_TTL_S"] = str(STALE_S)
    fleet.env["MODELGATE_WORKER_HEARTBEAT_INTERVAL_S"] = str(HEARTBEAT_S)
    fleet.services = [redis_service, proxy]
    try:
        fleet.start_gateway()
        fleet.publish("resnet", {"1.0.0": 1.0})
        for worker_id in WORKERS:
            port = free_port()
            front = tcp_proxy("127.0.0.1", port)
            front.start()
            made.worker_proxies[worker_id] = front
            fleet.services.append(front)
            url = f"http://127.0.0.1:{front.port}"
            fleet.start_worker(worker_id, ["resnet@1.0.0"], port, "--url", url)
        fleet.wait_serving("resnet", "1.0.0", workers=2)
        yield made
    finally:
        fleet.stop()
        for service in [redis_service, proxy, *made.worker_proxies.values()]:
            service.stop()


@pytest.fixture
def fleet(deployment: Deployment) -> Fleet:
    """The module's fleet (the e2e conftest restores it around each test)."""
    return deployment.fleet


def served_by(answers: list[httpx.Response | str]) -> collections.Counter[str]:
    return collections.Counter(
        a.headers.get("x-backend", "") for a in answers if isinstance(a, httpx.Response)
    )


def failures(answers: list[httpx.Response | str]) -> list[str]:
    return [
        a if isinstance(a, str) else f"{a.status_code} {a.text[:200]}"
        for a in answers
        if isinstance(a, str) or a.status_code != 200
    ]


def balancer_row(fleet: Fleet, worker_id: str) -> dict[str, Any]:
    return fleet.balancer_rows().get(worker_id) or {}


async def test_a_readmitted_worker_takes_sequential_traffic_within_10_s(
    fleet: Fleet, deployment: Deployment
) -> None:
    front = deployment.worker_proxies["w2"]
    await asyncio.to_thread(
        wait_until,
        lambda: balancer_row(fleet, "w1").get("weight") == 1.0,
        "w1, the healthy peer, to be past its own slow start",
    )
    async with Loop(fleet.gateway_url, INFER, infer_json, concurrency=8) as loop:
        await loop.until(50)
        front.stop()  # the fault: w2 refuses connections, as a crashed host would
        # NOTE: whichever comes first takes w2 out of rotation: the ejection by its failed
        # attempts, or its probes finding it unready (then too few attempts reach it to eject).
        await asyncio.to_thread(
            wait_until,
            lambda: (
                balancer_row(fleet, "w2").get("ejected_until") is not None
                or "resnet@1.0.0" not in balancer_row(fleet, "w2")["ready"]
            ),
            "w2 to be ejected by its failures or found unready by its probes",
        )
        await loop.more(50)
    assert loop.failures() == []
    assert served_by(loop.ordered()[-50:]) == {"w1": 50}

    front.start()  # the fault cleared: the probe readmits w2, in slow start
    await asyncio.to_thread(
        wait_until,
        lambda: (
            balancer_row(fleet, "w2").get("ejected_until", 0) is None
            and "resnet@1.0.0" in balancer_row(fleet, "w2")["ready"]
        ),
        "the gateway to readmit w2",
    )
    answers: list[httpx.Response | str] = []
    deadline = time.monotonic() + WINDOW_S
    async with httpx.AsyncClient(base_url=fleet.gateway_url, timeout=30) as client:
        while time.monotonic() < deadline:  # one request at a time (concurrency 1)
            answers.append(await client.post(INFER, json=infer_json()))
    assert failures(answers) == []
    counts = served_by(answers)
    share = counts["w2"] / len(answers)
    assert share >= READMITTED_SHARE, f"w2 served {counts['w2']} of {len(answers)}: {counts}"


async def test_redis_restarted_empty_with_the_database_cut_keeps_the_fleet(
    fleet: Fleet, deployment: Deployment
) -> None:
    async with Loop(fleet.gateway_url, INFER, infer_json, concurrency=4) as loop:
        await loop.until(50)
        deployment.database.stop()  # the database cut: SQL heartbeats stop arriving
        await asyncio.to_thread(
            wait_until, lambda: "database" in fleet.degraded(), "the database to be degraded"
        )
        cut = datetime.now(UTC)
        deployment.redis.stop()
        deployment.redis.start()  # empty: no announcement until each worker's next beat
        restarted = datetime.now(UTC)

        def outlasted() -> bool:
            """Past the staleness window of every heartbeat from before the cut, with both
            workers re-announced in the new Redis."""
            beats = redis_heartbeats(deployment.redis.port, WORKERS)
            now = datetime.now(UTC)
            return (
                now > cut + timedelta(seconds=STALE_S * 1.5)
                and len(beats) == len(WORKERS)
                and all(beat > restarted for beat in beats.values())
            )

        await asyncio.to_thread(wait_until, outlasted, "the outage to outlast worker_stale_s")
        await loop.more(50)
    answers = loop.ordered()
    assert failures(answers)[:5] == [], f"{len(failures(answers))} of {len(answers)} failed"
    assert set(served_by(answers)) == set(WORKERS)
    assert len(answers) >= 300, len(answers)
