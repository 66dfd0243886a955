"""The gateway's own counters reach ``/metrics``: refusals by model, code and error class
(unknown model names folded into one label value), and the balancer's panic and ejection
counters. Driven through the real app: the OIP path, the data plane and the endpoint."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import semver
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import create_gateway
from gateway.balancing.balancer import Balancer, Outcome, WorkerInfo
from gateway.metrics import UNKNOWN_MODEL
from gateway.settings import GatewaySettings
from registry.db import make_engine
from registry.resolution import ModelView, VersionInfo
from registry.settings import RegistrySettings
from registry.snapshot import RegistrySnapshot

MODEL = "known"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
Build = Callable[..., tuple[httpx.AsyncClient, Balancer]]


def snapshot() -> RegistrySnapshot:
    view = ModelView.build(MODEL, [VersionInfo("1.0.0", semver.Version.parse("1.0.0"))])
    return RegistrySnapshot(1, {MODEL: view})


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Build]:
    """Builds a gateway app (no lifespan: nothing here reaches the database or a worker)
    serving `snapshot`: an httpx client on it, and its balancer."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}"
    engine = make_engine(url)
    clients: list[httpx.AsyncClient] = []

    def build(**settings: Any) -> tuple[httpx.AsyncClient, Balancer]:
        rsettings = RegistrySettings(database_url=url, artifact_root=tmp_path / "artifacts")
        app = create_gateway(rsettings, GatewaySettings(**settings), engine=engine)
        app.litestar.state.plane.table.install(snapshot())
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")
        clients.append(client)
        return client, app.litestar.state.plane.table.balancer

    yield build
    for client in clients:
        await client.aclose()
    await engine.dispose()


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200
    params = [p.split("=")[0].strip() for p in response.headers["content-type"].split(";")[1:]]
    assert sorted(params) == ["charset", "version"], response.headers["content-type"]
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def errors(samples: Samples, model: str, code: int, reason: str) -> float | None:
    labels = frozenset({"model": model, "code": str(code), "reason": reason}.items())
    return samples.get(("modelgate_gateway_errors_total", labels))


async def test_refusals_are_counted_by_model_code_and_class(gateway: Build) -> None:
    client, _ = gateway()
    for name in ("nope-1", "nope-2", "nope-3"):
        assert (await client.post(f"/v2/models/{name}/infer", content=b"{}")).status_code == 404
    assert (await client.post(f"/v2/models/{MODEL}/infer", content=b"{}")).status_code == 503
    missing = await client.post(f"/v2/models/{MODEL}/versions/^9/infer", content=b"{}")
    assert missing.status_code == 404
    bad = await client.post(
        f"/v2/models/{MODEL}/infer", content=b"{}", headers={"X-Request-Timeout-Ms": "soon"}
    )
    assert bad.status_code == 400
    assert (await client.post("/v2/infer", content=b"{}")).status_code == 400

    samples = await scrape(client)
    assert errors(samples, UNKNOWN_MODEL, 404, "ModelNotFound") == 3
    assert errors(samples, MODEL, 503, "NoReadyVersion") == 1
    assert errors(samples, MODEL, 404, "NoVersionSatisfies") == 1
    assert errors(samples, MODEL, 400, "BadGatewayRequest") == 1
    assert errors(samples, UNKNOWN_MODEL, 400, "BadGatewayRequest") == 1
    models = {
        dict(labels)["model"]
        for name, labels in samples
        if name.startswith("modelgate_gateway_errors")
    }
    assert models == {UNKNOWN_MODEL, MODEL}


async def test_rate_limited_unknown_model_keeps_one_label(gateway: Build) -> None:
    client, _ = gateway(rate_limit_rps=0.001, rate_limit_burst=1)
    assert (await client.post("/v2/models/made-up-1/infer", content=b"{}")).status_code == 404
    assert (await client.post("/v2/models/made-up-2/infer", content=b"{}")).status_code == 429

    samples = await scrape(client)
    assert errors(samples, UNKNOWN_MODEL, 429, "RateLimited") == 1
    shed = frozenset({"model": UNKNOWN_MODEL, "reason": "rate"}.items())
    assert samples[("modelgate_gateway_shed_total", shed)] == 1
    assert not any("made-up" in value for _, labels in samples for _, value in labels)


async def test_balancer_counters_reach_metrics(gateway: Build) -> None:
    client, balancer = gateway(panic_threshold=1.0, consecutive_failures=1)
    ready = frozenset({(MODEL, "1.0.0")})
    balancer.update(
        {w: WorkerInfo(w, f"http://{w}.invalid", ready, started_at=0.0) for w in ("w1", "w2")}
    )
    for worker in ("w1", "w2"):  # the first is ejected; the second would pass the 1-of-2 cap
        balancer.started(worker)
        balancer.finished(worker, 0.01, Outcome.FAILURE)
    balancer.pick(MODEL, "1.0.0")  # one of two healthy < panic_threshold 1.0: panic

    samples = await scrape(client)
    none: frozenset[tuple[str, str]] = frozenset()
    assert samples[("modelgate_gateway_balancer_ejections_total", none)] == 1
    assert samples[("modelgate_gateway_balancer_ejections_suppressed_total", none)] == 1
    assert samples[("modelgate_gateway_balancer_panic_picks_total", none)] == 1
