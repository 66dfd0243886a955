"""The worker really batches concurrent requests, and a delay fault really delays."""

from __future__ import annotations

import asyncio
import logging
import re
import types
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from litestar.testing import AsyncTestClient
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from backends.app import WorkerApp, create_worker_app
from backends.batcher import BatchPolicy
from backends.dataplane import DataPlane, WorkerOptions
from backends.faults import FaultPolicy
from backends.metrics import PrometheusMetrics
from backends.observe import WORKER_ACCESS
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


async def test_request_spans_continue_the_gateways_trace_and_a_batch_span_links_them(
    model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="modelgate.worker.access")
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    source = FileSource({("scale", "1.0.0"): model_dir / "scale-1.onnx"})
    # NOTE: the test client may serve the requests one after the other, so how they are
    # batched is not asserted: only that each batch span links the requests it ran.
    policy = BatchPolicy(max_batch_size=3, max_queue_delay_us=2000)
    plane = DataPlane(WorkerOptions(batch=policy), source=source, metrics=PrometheusMetrics())
    plane.tracer = provider.get_tracer("test")
    app = create_worker_app(plane, startup_loads=[("scale", "1.0.0")])
    traces = [f"{n:032x}" for n in (0xA1, 0xB2, 0xC3)]
    async with AsyncTestClient(app=app) as client:
        await poll_until_async(lambda: _ready(client), "the worker to be ready")
        replies = await asyncio.gather(
            *(
                client.post(
                    INFER,
                    content=BODY,
                    headers={"traceparent": f"00-{t}-{n + 1:016x}-01", "x-request-id": f"r{n}"},
                )
                for n, t in enumerate(traces)
            )
        )
    provider.shutdown()
    assert [(r.status_code, r.headers["x-request-id"]) for r in replies] == [
        (200, f"r{n}") for n in range(3)
    ]
    finished = exporter.get_finished_spans()
    requests = {s.context.trace_id: s for s in finished if s.name == "worker infer scale"}
    assert sorted(requests) == sorted(int(t, 16) for t in traces)
    for n, trace in enumerate(traces):
        span = requests[int(trace, 16)]
        assert span.parent is not None
        assert span.parent.span_id == n + 1
    batches = [s for s in finished if s.name == "batch"]
    linked: set[int] = set()
    for batch in batches:
        links = {link.context.span_id for link in batch.links}
        assert batch.parent is not None
        assert batch.parent.span_id in links  # a child of its first request's span
        linked |= links
    assert linked == {s.context.span_id for s in requests.values()}
    sizes = [b.attributes["modelgate.batch_size"] for b in batches if b.attributes is not None]
    assert sum(sizes) == 3
    WORKER_ACCESS.flush()
    lines = [r for r in caplog.records if r.name == "modelgate.worker.access"]
    assert sorted((r.request_id, r.status) for r in lines) == [(f"r{n}", 200) for n in range(3)]  # type: ignore[attr-defined]
    assert sorted(r.batch_size for r in lines) == sorted(  # type: ignore[attr-defined]
        size for size in sizes for _ in range(size)
    )


async def _ready(client: AsyncTestClient[WorkerApp]) -> bool:
    return (await client.get("/v2/health/ready")).status_code == 200
