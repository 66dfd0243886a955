"""Acceptance 1 of issue 8: hostile input through a real gateway to two real workers costs
no 5xx, no ejection, and no worker's readiness.

Requests come from the Hypothesis strategies in `tests.support.hostile` (bodies nested past
the limit, shapes numpy refuses, lying binary headers, zip bombs, bad values, junk paths
and routing headers), drawn deterministically, sent 16 at a time. Afterwards the gateway
has ejected nothing, no worker has answered a single 5xx, and both still serve a normal
request correctly. The same bodies sent straight to a worker are each answered 4xx.
"""

from __future__ import annotations

import asyncio
import collections
import re
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.support.fleet import Fleet, wait_until
from tests.support.hostile import (
    BODY_KINDS,
    GATEWAY_KINDS,
    MODEL,
    VERSION,
    WORKER_BODY_LIMIT,
    WORKER_PATH,
    Hostile,
    requests,
)

WORKERS = ("h1", "h2")
SCALE = 2.0
CONCURRENCY = 16
NORMAL = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """A gateway and two workers on SQLite, embedded (no Redis): the cheapest real fleet."""
    root = tmp_path_factory.mktemp("hostile")
    deployment = Fleet(root, f"sqlite+aiosqlite:///{root / 'registry.db'}", None)
    deployment.env["MODELGATE_WORKER_MAX_BODY_BYTES"] = str(WORKER_BODY_LIMIT)
    # NOTE: above the workers' limit, so that some bodies pass the gateway and meet theirs.
    deployment.env["MODELGATE_GATEWAY_MAX_BODY_BYTES"] = str(2 * WORKER_BODY_LIMIT)
    try:
        deployment.start_gateway()
        deployment.publish(MODEL, {VERSION: SCALE})
        for worker_id in WORKERS:
            deployment.start_worker(worker_id, [f"{MODEL}@{VERSION}"])
        deployment.wait_serving(MODEL, VERSION, workers=len(WORKERS))
        yield deployment
    finally:
        deployment.stop()


async def send_all(
    base_url: str, items: list[Hostile], concurrency: int = CONCURRENCY
) -> list[tuple[Hostile, int, str]]:
    """Send every request, ``concurrency`` at a time: (request, status, body) each."""
    queue: asyncio.Queue[Hostile] = asyncio.Queue()
    for item in items:
        queue.put_nowait(item)
    answers: list[tuple[Hostile, int, str]] = []
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as client:

        async def run() -> None:
            while not queue.empty():
                item = queue.get_nowait()
                response = await client.request(
                    item.method, item.path, content=item.body or None, headers=list(item.headers)
                )
                answers.append((item, response.status_code, response.text[:300]))

        await asyncio.gather(*(run() for _ in range(concurrency)))
    return answers


def worker_url(fleet: Fleet, worker_id: str) -> str:
    return f"http://127.0.0.1:{fleet.workers[worker_id][1]}"


def worker_failures(fleet: Fleet, worker_id: str) -> collections.Counter[str]:
    """The worker's own count of failed inference requests, by status class ("4xx", "5xx")."""
    text = httpx.get(f"{worker_url(fleet, worker_id)}/metrics", timeout=10).text
    pattern = r'^modelgate_worker_failures_total\{code="(\d)\d\d"[^}]*\} ([0-9.e+]+)$'
    counts: collections.Counter[str] = collections.Counter()
    for digit, value in re.findall(pattern, text, re.M):
        counts[f"{digit}xx"] += int(float(value))
    return counts


def ejections(fleet: Fleet) -> dict[str, float]:
    text = httpx.get(f"{fleet.gateway_url}/metrics", timeout=10).text
    found = dict(re.findall(r'^modelgate_gateway_ejections_total\{worker="([^"]+)"\} (\S+)$',
                            text, re.M))  # fmt: skip
    return {w: float(found.get(w, 0)) for w in WORKERS}


def serves_normally(fleet: Fleet) -> set[str]:
    """Send normal requests until both workers have served one correctly; who served."""
    served: set[str] = set()

    def both() -> bool:
        response = httpx.post(f"{fleet.gateway_url}{WORKER_PATH}", json=NORMAL, timeout=10)
        assert response.status_code == 200, response.text
        assert response.json()["outputs"][0]["data"] == [SCALE * v for v in (1, 2, 3, 4)]
        served.add(response.headers["x-backend"])
        return served == set(WORKERS)

    wait_until(both, "both workers to serve a normal request")
    return served


def first_failures(
    answers: list[tuple[Hostile, int, str]], bad: Callable[[Hostile, int], bool]
) -> str:
    """How many answers are ``bad``, of which kinds, and the first of each kind in full."""
    first: dict[str, str] = {}
    kinds: collections.Counter[str] = collections.Counter()
    for item, status, text in answers:
        if bad(item, status):
            kind = item.kind.split(" (")[0]
            kinds[kind] += 1
            first.setdefault(kind, f"{status} {text!r}\n    for {item.describe()}")
    return f"{kinds.total()} of {len(answers)}: {dict(kinds)}\n" + "\n".join(first.values())


async def test_hostile_requests_through_the_gateway_cost_no_5xx_and_no_ejection(
    fleet: Fleet,
) -> None:
    items = requests(80, BODY_KINDS + GATEWAY_KINDS)
    assert len(items) >= 2000
    before = ejections(fleet)
    rows_before = fleet.balancer_rows()
    started = time.monotonic()
    answers = await send_all(fleet.gateway_url, items)
    took = time.monotonic() - started

    assert len(answers) == len(items)
    failed = first_failures(answers, lambda item, status: status >= 500)
    assert not any(status >= 500 for _, status, _ in answers), failed
    refused = first_failures(answers, lambda item, status: item.refused and status < 400)
    assert not any(item.refused and status < 400 for item, status, _ in answers), refused
    assert ejections(fleet) == before == {w: 0.0 for w in WORKERS}
    rows = fleet.balancer_rows()
    for worker_id in WORKERS:
        assert rows[worker_id]["ejected_until"] is None
        assert rows[worker_id]["ejection_count"] == rows_before[worker_id]["ejection_count"]
        failures = worker_failures(fleet, worker_id)
        assert failures["5xx"] == 0, failures
        assert failures["4xx"] > 0, failures  # the counters are read right
        assert "Traceback" not in (fleet.root / f"{worker_id}.log").read_text()
        ready = httpx.get(f"{worker_url(fleet, worker_id)}/v2/health/ready", timeout=10)
        assert ready.status_code == 200
    assert serves_normally(fleet) == set(WORKERS)
    statuses = sorted({status for _, status, _ in answers})
    print(f"{len(answers)} hostile requests through the gateway in {took:.1f} s: {statuses}")


async def test_hostile_requests_straight_to_a_worker_are_4xx(fleet: Fleet) -> None:
    items = [item for item in requests(50, BODY_KINDS) if item.for_worker]
    assert len(items) >= 1000
    half = len(items) // 2
    answers = [
        *await send_all(worker_url(fleet, WORKERS[0]), items[:half]),
        *await send_all(worker_url(fleet, WORKERS[1]), items[half:]),
    ]
    not_4xx = first_failures(answers, lambda item, status: not 400 <= status < 500)
    assert all(400 <= status < 500 for _, status, _ in answers), not_4xx
    # Paths, methods and headers meant for the gateway: a worker must not fail on them either.
    probes = await send_all(worker_url(fleet, WORKERS[0]), requests(40, GATEWAY_KINDS))
    failed = first_failures(probes, lambda item, status: status >= 500)
    assert all(status < 500 for _, status, _ in probes), failed
    for worker_id in WORKERS:
        assert worker_failures(fleet, worker_id)["5xx"] == 0
    assert serves_normally(fleet) == set(WORKERS)


async def test_strangers_cannot_unload_a_fleet_worker(fleet: Fleet) -> None:
    """Acceptance 3, the worker half: an unauthenticated unload is refused (the fleet's
    workers have a control token), and the model stays loaded and routed."""
    url = f"{worker_url(fleet, WORKERS[0])}/v2/repository/models/{MODEL}"
    attempts = [
        ({}, 401),
        ({"Authorization": "Bearer guessed"}, 403),
        ({"Authorization": f"Basic {fleet.control_token}"}, 401),
        ({"Authorization": f"Bearer {fleet.control_token[:-1]}"}, 403),
    ]
    async with httpx.AsyncClient(timeout=10) as client:
        for headers, status in attempts:
            for path in ("/unload", f"/versions/{VERSION}/unload", f"/versions/{VERSION}/load"):
                response = await client.post(url + path, headers=headers)
                assert response.status_code == status, (path, headers, response.text)
    assert fleet.worker_loaded(WORKERS[0]) == {f"{MODEL}@{VERSION}"}
    assert serves_normally(fleet) == set(WORKERS)
