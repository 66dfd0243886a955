"""PostgreSQL refused or blackholed under load (issue 8, acceptance 5a): admin writes answer
503 naming the database within 10 s, readiness lists the database as degraded, inference
through the same gateway keeps serving (0 failures), and once the network heals admin
writes succeed again.

PostgreSQL is reached through `tests.support.tcpproxy`: stopping it refuses connections,
blackholing it swallows every byte (connections hang, new ones are never answered), as a
silent partition does. Discovery carries on from the workers' Redis heartbeats.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.fleet import Fleet, infer_json, wait_until
from tests.support.services import Proxy, Service, redis_and_proxied_postgres

#: The acceptance bound on an admin write during an outage. The gateway's own bound is
#: below it: a pooled connection's check (statement timeout 5 s) plus a reconnect (3 s).
WRITE_BOUND_S = 10.0
INFER = "/v2/models/resnet/infer"


@pytest.fixture(scope="module")
def services(pg_database_factory: Any) -> Iterator[tuple[Service, Proxy, str]]:
    """A private Redis, a proxy to PostgreSQL and a database URL through that proxy."""
    with redis_and_proxied_postgres(pg_database_factory()) as services:
        yield services


@pytest.fixture(scope="module")
def fleet(
    services: tuple[Service, Proxy, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    redis_service, proxy, database_url = services
    deployment = Fleet(
        tmp_path_factory.mktemp("outage"),
        database_url,
        f"redis://127.0.0.1:{redis_service.port}/0",
    )
    deployment.services = [redis_service, proxy]
    try:
        deployment.start_gateway()
        deployment.publish("resnet", {"1.0.0": 1.0})
        deployment.start_worker("w1", ["resnet@1.0.0"])
        deployment.wait_serving("resnet", "1.0.0", workers=1)
        yield deployment
    finally:
        deployment.stop()


async def _infer_until(client: httpx.AsyncClient, stop: asyncio.Event) -> list[tuple[int, str]]:
    answers = []
    while not stop.is_set():
        response = await client.post(INFER, json=infer_json(1.5))
        answers.append((response.status_code, response.text if response.status_code != 200 else ""))
    return answers


async def _write(client: httpx.AsyncClient) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    name = f"m-{uuid.uuid4().hex[:8]}"
    response = await client.post("/admin/v1/models", json={"name": name}, timeout=60)
    return response, time.monotonic() - started


def _degraded(fleet: Fleet) -> list[str]:
    try:
        return fleet.degraded()
    except httpx.HTTPError:
        return []


@pytest.mark.parametrize("outage", ["refused", "blackholed"])
async def test_admin_writes_503_while_inference_serves(
    fleet: Fleet, services: tuple[Service, Proxy, str], outage: str
) -> None:
    _, proxy, _ = services
    stop = asyncio.Event()
    headers = {"Authorization": f"Bearer {fleet.token}"}
    async with (
        httpx.AsyncClient(base_url=fleet.gateway_url, timeout=30) as plane,
        httpx.AsyncClient(base_url=fleet.gateway_url, headers=headers) as admin,
    ):
        inference = [asyncio.create_task(_infer_until(plane, stop)) for _ in range(4)]
        try:
            before, _ = await _write(admin)
            assert before.status_code == 201, before.text
            if outage == "refused":
                proxy.stop()
            else:
                proxy.blackhole()
            # Eight writers at once, twice over: every one a prompt 503 naming the database.
            slowest = 0.0
            for _ in range(2):
                writes = await asyncio.gather(*(_write(admin) for _ in range(8)))
                slowest = max([slowest, *(took for _, took in writes)])
                for response, took in writes:
                    assert response.status_code == 503, response.text
                    assert response.headers.get("retry-after"), response.headers
                    error = response.json()["error"]
                    assert error.startswith("database unavailable: postgresql"), error
                    assert took < WRITE_BOUND_S, (took, error)
            await asyncio.to_thread(
                wait_until,
                lambda: "database" in _degraded(fleet),
                "readiness to list the database as degraded",
            )
        finally:
            if outage == "refused":
                proxy.start()
            else:
                proxy.heal()
        await asyncio.to_thread(
            wait_until, lambda: _degraded(fleet) == [], "the database to recover", 60
        )
        after, _ = await _write(admin)
        assert after.status_code == 201, after.text
        stop.set()
        statuses = [s for task in inference for s in await task]
    failures = [(s, text) for s, text in statuses if s != 200]
    print(
        f"\n{outage}: 16 admin writes 503, slowest {slowest:.1f} s; "
        f"{len(statuses)} inference requests, {len(failures)} failed"
    )
    assert len(statuses) > 50
    assert failures == [], sorted(set(failures))
