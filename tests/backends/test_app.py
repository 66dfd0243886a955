"""The worker app in-process (Litestar test clients): routes, errors, repository, metrics,
drain, fault injection, and a hypothesis fuzz over request bodies that must find no 5xx."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.testing import AsyncTestClient, TestClient

from backends.app import WorkerApp, create_worker_app
from backends.batcher import BatchPolicy
from backends.control import ControlAccess
from backends.dataplane import DataPlane, WorkerOptions
from backends.metrics import PrometheusMetrics
from backends.source import Artifact, FileSource
from tests.support.fake_workers import until

INFER = "/v2/models/scale/versions/1.0.0/infer"
CONTROL_TOKEN = "test-control-token"
CONTROL = {"Authorization": f"Bearer {CONTROL_TOKEN}"}


def scale_body(rows: list[list[float]], **extra: Any) -> bytes:
    tensor = {"name": "input", "shape": [len(rows), 4], "datatype": "FP32", "data": rows}
    return json.dumps({"inputs": [tensor], **extra}).encode()


class LabelledSource(FileSource):
    """Model files, with registry-style labels attached to each version."""

    def __init__(self, files: dict[tuple[str, str], Path],
                 labels: dict[tuple[str, str], dict[str, str]]) -> None:  # fmt: skip
        super().__init__(files)
        self.labels = labels

    async def fetch(self, model: str, version: str) -> Artifact:
        found = await super().fetch(model, version)
        labels = self.labels.get((model, version), {})
        return Artifact(found.model, found.version, found.path, labels=labels)


def make_app(model_dir: Path, **options: Any) -> tuple[WorkerApp, DataPlane]:
    files = {("scale", "1.0.0"): model_dir / "scale-1.onnx",
             ("scale", "2.0.0"): model_dir / "scale-2.onnx",
             ("faulty", "1.0.0"): model_dir / "scale-1.onnx",
             ("kinds", "1.0.0"): model_dir / "kinds.onnx"}  # fmt: skip
    labels = {("faulty", "1.0.0"): {"modelgate.fault.error_rate": "1"}}
    defaults: dict[str, Any] = {"batch": BatchPolicy(max_batch_size=4),
                                "max_body_bytes": 64 * 1024}  # fmt: skip
    source = LabelledSource(files, labels)
    plane = DataPlane(WorkerOptions(**{**defaults, **options}), source=source,
                      metrics=PrometheusMetrics())  # fmt: skip
    app = create_worker_app(plane, startup_loads=[("scale", "1.0.0"), ("faulty", "1.0.0")],
                            control=ControlAccess(token=CONTROL_TOKEN))  # fmt: skip
    return app, plane


async def until_ready(client: AsyncTestClient[WorkerApp]) -> None:
    for _ in range(1000):
        if (await client.get("/v2/health/ready")).status_code == 200:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("worker app never became ready")


@pytest.fixture
async def client(model_dir: Path) -> AsyncIterator[AsyncTestClient[WorkerApp]]:
    app, _ = make_app(model_dir)
    async with AsyncTestClient(app=app) as test_client:
        await until_ready(test_client)
        yield test_client


async def test_infer_reads_the_raw_body_and_answers_200(
    client: AsyncTestClient[WorkerApp],
) -> None:
    response = await client.post(INFER, content=scale_body([[1, 2, 3, 4]], id="abc"))
    assert response.status_code == 200
    assert response.headers["x-model-version"] == "1.0.0"
    assert response.json() == {
        "model_name": "scale", "model_version": "1.0.0", "id": "abc",
        "outputs": [{"name": "output", "shape": [1, 4], "datatype": "FP32",
                     "data": [2.0, 4.0, 6.0, 8.0]}],
    }  # fmt: skip


async def test_binary_output_sets_the_header_length(client: AsyncTestClient[WorkerApp]) -> None:
    body = scale_body([[1, 2, 3, 4]], parameters={"binary_data_output": True})
    response = await client.post(INFER, content=body)
    length = int(response.headers["inference-header-content-length"])
    assert np.frombuffer(response.content[length:], np.float32).tolist() == [2, 4, 6, 8]


async def test_gzip_request_bodies_are_accepted(client: AsyncTestClient[WorkerApp]) -> None:
    body = gzip.compress(scale_body([[1, 1, 1, 1]]))
    response = await client.post(INFER, content=body, headers={"Content-Encoding": "gzip"})
    assert response.json()["outputs"][0]["data"] == [2.0] * 4


@pytest.mark.parametrize(
    ("method", "path", "status", "message"),
    [
        ("GET", "/nope", 404, "no route"),
        ("DELETE", "/v2", 405, "not allowed"),
        ("GET", "/v2/models/nope", 404, 'model "nope" is not loaded on this worker (loaded: '),
        ("GET", "/v2/models/scale/versions/9.0.0/ready", 400, 'version "9.0.0" of "scale"'),
        ("POST", "/v2/models/nope/infer", 404, "faulty@1.0.0, scale@1.0.0"),
        ("POST", "/v2/repository/models/scale/load", 400, "load needs a version"),
        ("POST", "/v2/repository/models/scale/versions/7.0.0/load", 404, "scale@1.0.0"),
        ("POST", "/v2/repository/models/nope/unload", 404, 'model "nope" is not loaded'),
    ],
)
async def test_errors_are_json_with_the_right_status(client: AsyncTestClient[WorkerApp],
                                                     method: str, path: str, status: int,
                                                     message: str) -> None:  # fmt: skip
    response = await client.request(method, path, headers=CONTROL)
    assert response.status_code == status
    assert message in response.json()["error"]


async def test_oversize_body_is_413(client: AsyncTestClient[WorkerApp]) -> None:
    response = await client.post(INFER, content=b" " * (64 * 1024 + 1))
    assert response.status_code == 413
    assert response.json() == {
        "error": "request body of 65537 bytes is larger than the limit of 65536 bytes"
    }


async def test_repository_load_index_unload(client: AsyncTestClient[WorkerApp]) -> None:
    load = await client.post("/v2/repository/models/scale/load", headers=CONTROL,
                             json={"parameters": {"version": "2.0.0"}})  # fmt: skip
    assert load.status_code == 200
    assert load.json() == {"name": "scale", "version": "2.0.0", "state": "READY"}
    index = (await client.post("/v2/repository/index")).json()
    assert {"name": "scale", "version": "2.0.0", "state": "READY"} in index
    meta = (await client.get("/v2/models/scale")).json()
    assert meta["versions"] == ["2.0.0", "1.0.0"]
    v2 = await client.post("/v2/models/scale/infer", content=scale_body([[1, 1, 1, 1]]))
    assert v2.json()["model_version"] == "2.0.0"
    unload = await client.post("/v2/repository/models/scale/versions/2.0.0/unload",
                               headers=CONTROL)  # fmt: skip
    assert unload.json() == {"name": "scale", "unloaded": ["2.0.0"]}
    gone = await client.post("/v2/models/scale/versions/2.0.0/infer", content=scale_body([[1] * 4]))
    assert gone.status_code == 400
    assert 'version "2.0.0" of "scale" is not loaded' in gone.json()["error"]


async def test_metrics_are_labelled_by_model_and_version(
    client: AsyncTestClient[WorkerApp],
) -> None:
    await client.post(INFER, content=scale_body([[1, 2, 3, 4]]))
    await client.post(INFER, content=b"{bad")
    scraped = await client.get("/metrics")
    # One charset, one version: Prometheus 3 rejects a Content-Type with a duplicate parameter.
    params = [p.split("=")[0].strip() for p in scraped.headers["content-type"].split(";")[1:]]
    assert sorted(params) == ["charset", "version"], scraped.headers["content-type"]
    text = scraped.text
    labels = 'model="scale",version="1.0.0"'
    assert f"modelgate_worker_requests_total{{{labels}}} 2.0" in text
    assert f'modelgate_worker_failures_total{{code="400",{labels}}} 1.0' in text
    assert f'modelgate_worker_batch_size_bucket{{le="1.0",{labels}}} 1.0' in text
    for family in ("queue_seconds", "compute_seconds", "request_seconds"):
        assert f"modelgate_worker_{family}_count{{{labels}}}" in text


async def test_fault_label_fails_every_request_of_that_version(
    client: AsyncTestClient[WorkerApp],
) -> None:
    response = await client.post("/v2/models/faulty/infer", content=scale_body([[1, 2, 3, 4]]))
    assert response.status_code == 500
    assert response.json() == {"error": 'injected fault for "faulty" 1.0.0'}
    assert (await client.post(INFER, content=scale_body([[1] * 4]))).status_code == 200


async def test_worker_wide_delay_injection(model_dir: Path) -> None:
    from backends.faults import FaultPolicy

    app, _ = make_app(model_dir, faults=FaultPolicy(delay_rate=1.0, delay_ms=1.0))
    async with AsyncTestClient(app=app) as client:
        await until_ready(client)
        assert (await client.post(INFER, content=scale_body([[1] * 4]))).status_code == 200


async def test_a_cancelled_request_is_a_triton_failure_with_reason_canceled(
    model_dir: Path,
) -> None:
    from backends.faults import FaultPolicy

    app, plane = make_app(model_dir, faults=FaultPolicy(delay_rate=1.0, delay_ms=60_000))
    async with AsyncTestClient(app=app) as client:
        await until_ready(client)
        call = asyncio.create_task(plane.infer("scale", "1.0.0", scale_body([[1] * 4]), None))
        await until(lambda: plane.in_flight == 1, "the call in flight")
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        text = (await client.get("/metrics")).text
        stats = (await client.get("/v2/models/scale/versions/1.0.0/stats")).json()
    labels = 'model="scale",version="1.0.0"'
    assert f'nv_inference_request_failure{{{labels},reason="CANCELED"}} 1' in text
    assert stats["model_stats"][0]["inference_stats"]["fail"]["count"] == 1
    assert plane.in_flight == 0


async def test_draining_refuses_new_requests_with_503(model_dir: Path) -> None:
    app, plane = make_app(model_dir)
    async with AsyncTestClient(app=app) as client:
        await until_ready(client)
        assert await plane.drain(timeout_s=5)
        refused = await client.post(INFER, content=scale_body([[1] * 4]))
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert "draining" in refused.json()["error"]
        assert (await client.get("/v2/health/ready")).status_code == 503
        assert (await client.get("/v2/models/scale/ready")).status_code == 503
        assert (await client.get("/v2/health/live")).status_code == 200


# -- fuzz ----------------------------------------------------------------------------------

NAMES = st.sampled_from(["input", "x", "", "input\u00e9"])
DATATYPES = st.sampled_from(["FP32", "FP16", "BF16", "INT64", "BOOL", "BYTES", "FLOAT", ""])
FLOATS = st.floats(allow_nan=False, allow_infinity=False)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), FLOATS,
                    st.text(max_size=4))  # fmt: skip
DATA = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=5), max_leaves=12)
SHAPES = st.lists(st.integers(-2, 5), max_size=3)
PARAM_NAMES = st.sampled_from(["binary_data_size", "binary_data", "classification",
                               "binary_data_output", "x"])  # fmt: skip
PARAMS = st.dictionaries(PARAM_NAMES, SCALARS, max_size=2)


@st.composite
def request_bodies(draw: st.DrawFn) -> tuple[bytes, dict[str, str]]:
    """Mostly well-formed OIP requests with wrong bits, plus raw junk and binary tails."""
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.binary(max_size=64)), {}
    tensors = [
        {k: v for k, v in {"name": draw(NAMES), "datatype": draw(DATATYPES),
                           "shape": draw(SHAPES), "data": draw(DATA),
                           "parameters": draw(PARAMS)}.items()
         if draw(st.integers(0, 6))}  # drop a field now and then
        for _ in range(draw(st.integers(0, 2)))
    ]  # fmt: skip
    request: dict[str, Any] = {"inputs": tensors}
    if draw(st.booleans()):
        request["outputs"] = [{"name": draw(NAMES), "parameters": draw(PARAMS)}]
    if draw(st.booleans()):
        request["parameters"] = draw(PARAMS)
    head = json.dumps(request).encode()
    tail = draw(st.binary(max_size=32))
    headers = {}
    if tail or draw(st.booleans()):
        headers["Inference-Header-Content-Length"] = str(
            draw(st.sampled_from([len(head), len(head) + len(tail) + 1, 0, -1]))
        )
    return head + tail, headers


@pytest.fixture(scope="module")
def sync_client(model_dir: Path) -> Iterator[TestClient[WorkerApp]]:
    app, _ = make_app(model_dir)
    with TestClient(app=app) as test_client:
        for _ in range(1000):
            if test_client.get("/v2/health/ready").status_code == 200:
                break
            test_client.get("/v2/health/live")
        yield test_client


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])  # fmt: skip
@given(request_bodies(), st.sampled_from(["scale", "kinds", "nope"]))
def test_fuzzed_bodies_never_get_a_5xx(
    sync_client: TestClient[WorkerApp], case: tuple[bytes, dict[str, str]], model: str
) -> None:
    body, headers = case
    response = sync_client.post(f"/v2/models/{model}/infer", content=body, headers=headers)
    assert response.status_code < 500, response.text
    if response.status_code != 200:
        assert set(response.json()) == {"error"}


async def test_unexpected_errors_on_the_infer_path_are_json_500s(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    app, plane = make_app(model_dir)

    async def explode(*_: object) -> None:
        raise RuntimeError("boom")

    async with AsyncTestClient(app=app) as client:
        await until_ready(client)
        assert (await client.get(INFER)).json()["error"].startswith("no route for GET")
        monkeypatch.setattr(plane, "infer", explode)
        response = await client.post(INFER, content=scale_body([[1] * 4]))
    assert response.status_code == 500
    assert response.json() == {"error": "internal error; see the server log"}
    assert "unhandled error on POST" in caplog.text
