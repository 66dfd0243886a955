"""The worker really batches concurrent requests, and a delay fault really delays."""

from __future__ import annotations

import re
import types
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from litestar.testing import AsyncTestClient

from backends.app import WorkerApp, create_worker_app
from backends.dataplane import DataPlane, WorkerOptions
from backends.faults import FaultPolicy
from backends.metrics import PrometheusMetrics
from backends.source import FileSource
from tests.support.net import poll_until_async
from tests.support.workers import WorkerProcess

INFER = "/v2/models/scale/versions/1.0.0/infer"
BODY = b'{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}'
LABELS = 'model="scale",version="1.0.0"'


async def _client(model_dir: Path, **options: object) -> AsyncIterator[AsyncTestClient[WorkerApp]]:
    source = FileSource({("scale", "1.0.0"): model_dir / "scale-1.onnx"})
    plane = DataPlane(WorkerOptions(**options), source=source, metrics=PrometheusMetrics())  # type: ignore[arg-type]
    app = create_worker_app(plane, startup_loads=[("scale", "1.0.0")])
    async with AsyncTestClient(app=app) as client:

        async def ready() -> bool:
            return (await client.get("/v2/health/ready")).status_code == 200

        await poll_until_async(ready, "the worker to be ready")
        yield client


def _metric(text: str, name: str) -> float:
    found = re.search(rf"^{name}{{{LABELS}}} ([0-9.e+]+)$", text, re.M)
    assert found is not None, f"{name} not exported"
    return float(found.group(1))


def _batch_totals(worker: WorkerProcess) -> tuple[float, float]:
    text = httpx.get(f"{worker.url}/metrics").text
    return (
        _metric(text, "modelgate_worker_batch_size_sum"),
        _metric(text, "modelgate_worker_batch_size_count"),
    )


def test_concurrent_requests_run_in_batches_of_several_rows(worker: WorkerProcess) -> None:
    """The session's worker process batches up to 8 rows, waiting up to 2 ms to fill."""
    rows_before, batches_before = _batch_totals(worker)

    def post(_: int) -> httpx.Response:
        return httpx.post(f"{worker.url}{INFER}", content=BODY, timeout=30)

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(post, range(64)))
    assert [a.status_code for a in answers] == [200] * 64
    assert all(a.json()["outputs"][0]["data"] == [2.0, 4.0, 6.0, 8.0] for a in answers)
    rows_after, batches_after = _batch_totals(worker)
    rows, batches = rows_after - rows_before, batches_after - batches_before
    assert rows == 64
    assert batches < rows, f"{batches:.0f} batches for {rows:.0f} rows: nothing was batched"


async def test_a_delay_fault_waits_its_delay_before_answering(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    waited: list[float] = []

    async def sleep(seconds: float) -> None:
        waited.append(seconds)

    # NOTE: only the fault module's sleep is replaced, so the delay is observed exactly
    # without making the test wait for it or measure time.
    monkeypatch.setattr("backends.faults.asyncio", types.SimpleNamespace(sleep=sleep))
    faults = FaultPolicy(delay_rate=1.0, delay_ms=250.0)
    async for client in _client(model_dir, faults=faults):
        for _ in range(3):
            assert (await client.post(INFER, content=BODY)).status_code == 200
    assert waited == [0.25, 0.25, 0.25]
