"""Acceptance 7 of issue 8: publishing a version, then starting a worker for it, under load
on ``stable``, ``latest`` and ``^1.0``, fails no request, and traffic moves to the new
version once a worker has it ready.

A real gateway and worker processes on PostgreSQL and Redis. Before the fix, ``stable``
and ``latest`` answered 503 from the publish until the new version's worker was ready.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Iterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest

from tests.support.fleet import Fleet, infer_json
from tests.support.isolation import REDIS_URL, delete_prefix_sync, scoped
from tests.support.models import onnx_bytes
from tests.support.traffic import Loop

SCALES = {"1.0.0": 1.0, "1.1.0": 2.0, "1.2.0": 3.0}
INPUT = 1.5
REFERENCES = ("stable", "latest", "^1.0")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, pg_database_factory: Any) -> Iterator[Fleet]:
    keys = scoped("rollover")
    deployment = Fleet(
        tmp_path_factory.mktemp("rollover"), pg_database_factory(), REDIS_URL, keys.prefix
    )
    try:
        deployment.start_gateway()
        deployment.publish("resnet", {v: SCALES[v] for v in ("1.0.0", "1.1.0")})
        deployment.start_worker("w1", ["resnet@1.0.0", "resnet@1.1.0"])
        deployment.wait_serving("resnet", "1.1.0", workers=1)
        yield deployment
    finally:
        deployment.stop()
        delete_prefix_sync(prefix=keys.prefix)


def versions(loop: Loop, start: int = 0, stop: int | None = None) -> collections.Counter[str]:
    """The versions that served the requests sent under indexes [start, stop), each checked
    against its output for `INPUT`."""
    served: collections.Counter[str] = collections.Counter()
    for index, answer in loop.answers:
        if index < start or (stop is not None and index >= stop):
            continue
        assert isinstance(answer, httpx.Response), answer
        assert answer.status_code == 200, answer.text
        version = answer.headers["x-model-version"]
        assert answer.json()["outputs"][0]["data"] == [INPUT * SCALES[version]] * 4
        served[version] += 1
    return served


def explain(fleet: Fleet, reference: str) -> dict[str, Any]:
    with fleet.admin() as admin:
        response = admin.get("/admin/v1/models/resnet/resolve", params={"version": reference})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_publish_then_load_under_load_fails_nothing_and_moves_traffic(fleet: Fleet) -> None:
    async with AsyncExitStack() as stack:
        loops = {
            ref: await stack.enter_async_context(
                Loop(
                    fleet.gateway_url,
                    "/v2/infer",
                    lambda: infer_json(INPUT),
                    headers={"X-Model": "resnet", "X-Model-Version": ref},
                )
            )
            for ref in REFERENCES
        }
        for loop in loops.values():
            await loop.until(50)

        with fleet.admin() as admin:
            files = {"file": ("m.onnx", onnx_bytes(SCALES["1.2.0"]), "application/octet-stream")}
            response = admin.post(
                "/admin/v1/models/resnet/versions", data={"version": "1.2.0"}, files=files
            )
            assert response.status_code == 201, response.text
        await asyncio.to_thread(fleet.wait_registry_synced)
        published = {ref: loop.mark() for ref, loop in loops.items()}
        for loop in loops.values():
            await loop.more(50)  # the gateway knows 1.2.0; no worker has it
        loading_told = {ref: await asyncio.to_thread(explain, fleet, ref) for ref in REFERENCES}
        pinned_told = await asyncio.to_thread(explain, fleet, "1.2.0")
        loading = {ref: loop.mark() for ref, loop in loops.items()}

        fleet.start_worker("w2", ["resnet@1.2.0"])
        await asyncio.to_thread(fleet.wait_serving, "resnet", "1.2.0", 1)
        ready = {ref: loop.mark() for ref, loop in loops.items()}
        for loop in loops.values():
            await loop.more(100)

    for ref, loop in loops.items():
        assert loop.failures()[:5] == [], f"{ref}: {len(loop.failures())} failed"
        assert versions(loop, 0, published[ref]) == {"1.1.0": published[ref]}, ref
        # Sent before the new version had any worker: the highest ready one serves.
        assert set(versions(loop, published[ref], loading[ref])) == {"1.1.0"}, ref
        assert set(versions(loop, loading[ref], ready[ref])) <= {"1.1.0", "1.2.0"}, ref
        after = versions(loop, ready[ref])
        assert set(after) == {"1.2.0"}, (ref, after)
        assert after.total() >= 100, (ref, after)
    for ref, told in loading_told.items():  # explain, while 1.2.0 had no worker
        assert (told["registry_version"], told["version"]) == ("1.2.0", "1.1.0"), told
        assert told["skipped"] == ["1.2.0: no ready worker"], told
        assert told["arm"] == ("best-ready" if ref == "^1.0" else f"{ref}-ready"), told
    # A pin has no substitute: the explanation says requests for it get 503 for now.
    assert (pinned_told["version"], pinned_told["skipped"]) == ("1.2.0", ["1.2.0: no ready worker"])
    assert any("requests get 503 now" in line for line in pinned_told["trace"]), pinned_told
    told = await asyncio.to_thread(explain, fleet, "stable")
    assert (told["registry_version"], told["version"], told["skipped"]) == ("1.2.0", "1.2.0", [])
