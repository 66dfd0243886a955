"""Acceptance 1 of the gateway: a real gateway, two worker processes, PostgreSQL and Redis.

tritonclient drives the gateway unmodified; splits, stickiness and shadows are counted
over real requests.
"""

from __future__ import annotations

import asyncio
import collections
import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton

from tests.support.fleet import Fleet, infer_json, wait_until
from tests.support.isolation import REDIS_URL, delete_prefix, scoped

SCALES = {"1.0.0": 1.0, "1.1.0": 2.0, "1.2.0-rc.1": 3.0, "2.0.0": 4.0, "2.1.0-beta.1": 5.0}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, pg_database_factory: Any) -> Iterator[Fleet]:
    keys = scoped("routing")
    deployment = Fleet(
        tmp_path_factory.mktemp("fleet"), pg_database_factory(), REDIS_URL, keys.prefix
    )
    try:
        deployment.start_gateway()
        deployment.publish("resnet", SCALES)
        loads = [f"resnet@{v}" for v in ("1.0.0", "1.1.0", "2.0.0", "2.1.0-beta.1")]
        deployment.start_worker("w1", loads)
        deployment.start_worker("w2", loads)
        for version in ("1.0.0", "1.1.0", "2.0.0"):
            deployment.wait_serving("resnet", version, workers=2)
        yield deployment
    finally:
        deployment.stop()
        asyncio.run(_forget(keys.prefix))


async def _forget(prefix: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.from_url(REDIS_URL)
    try:
        await delete_prefix(client, prefix)
    finally:
        await client.aclose()


def triton_client(fleet: Fleet) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(fleet.gateway_url.removeprefix("http://"))


def run_triton(
    client: triton.InferenceServerClient,
    version: str = "",
    headers: dict[str, str] | None = None,
    binary: bool = True,
) -> tuple[float, str]:
    data = np.full((1, 4), 1.0, dtype=np.float32)
    tensor = triton.InferInput("input", [1, 4], "FP32")
    tensor.set_data_from_numpy(data, binary_data=binary)
    output = triton.InferRequestedOutput("output", binary_data=binary)
    result = client.infer(
        "resnet", [tensor], model_version=version, outputs=[output], headers=headers
    )
    scale = float(result.as_numpy("output")[0, 0])
    served: str = result.get_response()["model_version"]
    return scale, served


def test_tritonclient_through_the_gateway(fleet: Fleet) -> None:
    client = triton_client(fleet)
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("resnet", "^1.0")
    assert not client.is_model_ready("resnet", "1.2.0-rc.1")  # published, but no worker has it
    metadata = client.get_model_metadata("resnet", "1.1.0")
    assert metadata["inputs"][0]["name"] == "input"
    cases = {
        "1.1.0": "1.1.0",
        "^1.0": "1.1.0",
        "~1.0.0": "1.0.0",
        "1.x": "1.1.0",
        "stable": "2.0.0",
        "latest": "2.1.0-beta.1",
    }
    for reference, expected in cases.items():
        for binary in (True, False):
            scale, served = run_triton(client, reference, binary=binary)
            assert (served, scale) == (expected, SCALES[expected]), reference
    scale, served = run_triton(client, headers={"X-Model-Version": ">=1.0.0 <2.0.0 || 3.x"})
    assert served == "1.1.0"
    with fleet.admin() as admin:
        admin.put(
            "/admin/v1/models/resnet/aliases/prod", json={"version": "1.0.0"}
        ).raise_for_status()
    wait_until(lambda: run_triton(client, "prod")[1] == "1.0.0", "alias prod to reach the gateway")
    with pytest.raises(triton.InferenceServerException, match=r"\[400\]"):
        run_triton(client, "^1.x.3")
    with pytest.raises(triton.InferenceServerException, match=r'\[404\].*satisfies "\^7"'):
        run_triton(client, "^7")


async def _send(
    client: httpx.AsyncClient, fleet: Fleet, count: int, key: Any = None
) -> list[httpx.Response]:
    semaphore = asyncio.Semaphore(16)

    async def one(i: int) -> httpx.Response:
        headers = {"X-Route-Key": key(i)} if key else {}
        async with semaphore:
            return await client.post(
                f"{fleet.gateway_url}/v2/models/resnet/infer", json=infer_json(), headers=headers
            )

    return await asyncio.gather(*(one(i) for i in range(count)))


def set_policy(fleet: Fleet, policy: dict[str, Any]) -> None:
    with fleet.admin() as admin:
        revision_before = admin.get("/admin/v1/audit", params={"limit": 1}).json()["items"][0][
            "revision"
        ]
        admin.put("/admin/v1/models/resnet/traffic", json=policy).raise_for_status()
    wait_until(lambda: _gateway_revision(fleet) > revision_before, "the gateway to load the policy")


def _gateway_revision(fleet: Fleet) -> int:
    text = httpx.get(f"{fleet.gateway_url}/metrics").text
    match = re.search(r"^modelgate_gateway_registry_revision (\S+)", text, re.M)
    return int(float(match.group(1))) if match else -1


def _shadow_ok(fleet: Fleet) -> float:
    text = httpx.get(f"{fleet.gateway_url}/metrics").text
    return sum(
        float(m)
        for m in re.findall(
            r'^modelgate_gateway_shadow_total\{[^}]*outcome="ok"[^}]*\} (\S+)', text, re.M
        )
    )


async def test_weighted_split_sticky_keys_shadow_and_ready_awareness(fleet: Fleet) -> None:
    set_policy(
        fleet, {"arms": [{"version": "1.0.0", "weight": 90}, {"version": "1.1.0", "weight": 10}]}
    )
    async with httpx.AsyncClient(timeout=30) as client:
        responses = await _send(client, fleet, 2000)
        assert all(r.status_code == 200 for r in responses)
        share = collections.Counter(r.headers["x-model-version"] for r in responses)
        assert abs(share["1.0.0"] / 2000 - 0.90) <= 0.03, share
        backends = collections.Counter(r.headers["x-backend"] for r in responses)
        assert set(backends) == {"w1", "w2"}

        keys = [uuid.uuid4().hex for _ in range(100)]
        first = await _send(client, fleet, 100, key=lambda i: keys[i])
        for _ in range(3):
            again = await _send(client, fleet, 100, key=lambda i: keys[i])
            assert [r.headers["x-model-version"] for r in again] == [
                r.headers["x-model-version"] for r in first
            ]

        policy = {
            "arms": [{"version": "1.0.0", "weight": 50}, {"version": "1.1.0", "weight": 50}],
            "shadow": {"version": "2.0.0", "fraction": 0.25},
        }
        set_policy(fleet, policy)
        before = _shadow_ok(fleet)
        responses = await _send(client, fleet, 2000)
        assert {r.headers["x-model-version"] for r in responses} == {"1.0.0", "1.1.0"}
        assert all(r.json()["model_version"] in ("1.0.0", "1.1.0") for r in responses)
        wait_until(lambda: _shadow_ok(fleet) - before >= 2000 * 0.22, "shadow copies to finish", 30)
        assert abs((_shadow_ok(fleet) - before) / 2000 - 0.25) <= 0.03

        set_policy(
            fleet,
            {"arms": [{"version": "1.1.0", "weight": 50}, {"version": "1.2.0-rc.1", "weight": 50}]},
        )
        responses = await _send(client, fleet, 200)
        assert {r.headers["x-model-version"] for r in responses} == {"1.1.0"}
        assert all(r.headers["x-route"].endswith(":reweighted") for r in responses)
    with fleet.admin() as admin:
        admin.delete("/admin/v1/models/resnet/traffic").raise_for_status()


def _worker_requests(fleet: Fleet) -> float:
    total = 0.0
    for _, port in fleet.workers.values():
        text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        total += sum(
            float(v)
            for v in re.findall(r"^modelgate_worker_requests_total\{[^}]*\} (\S+)", text, re.M)
        )
    return total


def test_bad_input_never_reaches_a_worker_or_a_500(fleet: Fleet) -> None:
    before = _worker_requests(fleet)
    url = f"{fleet.gateway_url}/v2/models"
    with httpx.Client(timeout=30) as client:
        bad = client.post(
            f"{url}/resnet/infer", json=infer_json(), headers={"X-Model-Version": ">=1.x.3"}
        )
        assert bad.status_code == 400
        assert ">=1.x.3" in bad.json()["error"]
        unknown = client.post(f"{url}/resnett/infer", json=infer_json())
        assert unknown.status_code == 404
        assert unknown.json()["error"] == "model \"resnett\" not found (did you mean 'resnet'?)"
        nothing = client.post(f"{url}/resnet/versions/%5E9/infer", json=infer_json())
        assert nothing.status_code == 404
        assert "(have 2.1.0-beta.1, 2.0.0, 1.2.0-rc.1, 1.1.0, 1.0.0)" in nothing.json()["error"]
        big = client.post(f"{url}/resnet/infer", content=b"x" * (64 * 1024 * 1024 + 1))
        assert big.status_code == 413
        late = client.post(
            f"{url}/resnet/infer", json=infer_json(), headers={"X-Request-Timeout-Ms": "0"}
        )
        assert late.status_code == 504
        twice = client.post(
            f"{url}/resnet/versions/1.0.0/infer",
            json=infer_json(),
            headers={"X-Model-Version": "1.1.0"},
        )
        assert twice.status_code == 400
        no_model = client.post(f"{fleet.gateway_url}/v2/infer", json=infer_json())
        assert no_model.status_code == 400
        header_only = client.post(
            f"{fleet.gateway_url}/v2/infer",
            json=infer_json(),
            headers={"X-Model": "resnet", "X-Model-Version": "~1.0"},
        )
        assert header_only.headers["x-model-version"] == "1.0.0"
    assert _worker_requests(fleet) == before + 1  # only the valid header-only request
