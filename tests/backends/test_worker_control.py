"""The worker's repository control (load/unload): the control token, or refused; the index
stays readable. A stranger's unload never unloads anything."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from litestar.testing import AsyncTestClient

from backends.app import WorkerApp, create_worker_app
from backends.control import ControlAccess
from backends.dataplane import DataPlane, WorkerOptions
from backends.errors import ControlDisabled, ControlForbidden, ControlUnauthorized
from backends.settings import WorkerSettings
from backends.source import FileSource
from tests.support.workers import WorkerProcess

TOKEN = "s3cret-control-token"
UNLOAD = "/v2/repository/models/scale/versions/1.0.0/unload"
LOAD = "/v2/repository/models/scale/versions/2.0.0/load"
INFER_BODY = json.dumps(
    {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 1, 1, 1]}]}
)


@pytest.mark.parametrize(
    ("access", "header", "error"),
    [
        (ControlAccess(token=TOKEN), None, ControlUnauthorized),
        (ControlAccess(token=TOKEN), "", ControlUnauthorized),
        (ControlAccess(token=TOKEN), f"Basic {TOKEN}", ControlUnauthorized),
        (ControlAccess(token=TOKEN), "Bearer ", ControlUnauthorized),
        (ControlAccess(token=TOKEN), "Bearer wrong", ControlForbidden),
        (ControlAccess(token=TOKEN), f"Bearer {TOKEN}x", ControlForbidden),
        (ControlAccess(token=TOKEN), f"Bearer {TOKEN[:-1]}", ControlForbidden),
        (ControlAccess(token=TOKEN), "Bearer \u00e9t\u00e9", ControlForbidden),
        (ControlAccess(token=TOKEN, open=True), None, ControlUnauthorized),  # a token wins
        (ControlAccess(), f"Bearer {TOKEN}", ControlDisabled),
        (ControlAccess(), None, ControlDisabled),
    ],
)
def test_control_refusals(
    access: ControlAccess, header: str | None, error: type[Exception]
) -> None:
    with pytest.raises(error):
        access.check(header)


@pytest.mark.parametrize("header", [f"Bearer {TOKEN}", f"bearer   {TOKEN}  "])
def test_the_token_is_accepted(header: str) -> None:
    ControlAccess(token=TOKEN).check(header)


def test_open_control_checks_nothing() -> None:
    ControlAccess(open=True).check(None)


def test_settings_read_the_token_and_the_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELGATE_WORKER_CONTROL_TOKEN", TOKEN)
    settings = WorkerSettings()
    assert settings.control_access() == ControlAccess(token=TOKEN)
    assert TOKEN not in repr(settings)
    monkeypatch.delenv("MODELGATE_WORKER_CONTROL_TOKEN")
    assert WorkerSettings().control_access() == ControlAccess()
    monkeypatch.setenv("MODELGATE_WORKER_CONTROL", "open")
    assert WorkerSettings().control_access() == ControlAccess(open=True)


async def control_client(
    model_dir: Path, control: ControlAccess | None
) -> AsyncIterator[AsyncTestClient[WorkerApp]]:
    files = {("scale", "1.0.0"): model_dir / "scale-1.onnx",
             ("scale", "2.0.0"): model_dir / "scale-2.onnx"}  # fmt: skip
    plane = DataPlane(WorkerOptions(), source=FileSource(files))
    app = create_worker_app(plane, startup_loads=[("scale", "1.0.0")], control=control)
    async with AsyncTestClient(app=app) as client:
        for _ in range(1000):
            if (await client.get("/v2/health/ready")).status_code == 200:
                break
        yield client


@pytest.fixture
async def guarded(model_dir: Path) -> AsyncIterator[AsyncTestClient[WorkerApp]]:
    async for client in control_client(model_dir, ControlAccess(token=TOKEN)):
        yield client


async def still_serving(client: AsyncTestClient[WorkerApp]) -> None:
    ready = await client.get("/v2/models/scale/versions/1.0.0/ready")
    assert ready.status_code == 200, ready.text
    infer = await client.post("/v2/models/scale/versions/1.0.0/infer", content=INFER_BODY)
    assert infer.status_code == 200, infer.text


async def test_unload_without_the_token_is_refused_and_the_model_stays(
    guarded: AsyncTestClient[WorkerApp],
) -> None:
    bare = await guarded.post(UNLOAD)
    assert bare.status_code == 401
    assert bare.headers["www-authenticate"].startswith("Bearer")
    assert "MODELGATE_WORKER_CONTROL_TOKEN" in bare.json()["error"]
    wrong = await guarded.post(UNLOAD, headers={"Authorization": "Bearer guess"})
    assert wrong.status_code == 403
    assert wrong.json() == {"error": "the bearer token is not this worker's control token"}
    for path in ("/v2/repository/models/scale/unload", LOAD):
        assert (await guarded.post(path)).status_code == 401
    await still_serving(guarded)
    index = await guarded.post("/v2/repository/index")  # read-only: open
    assert index.json() == [{"name": "scale", "version": "1.0.0", "state": "READY"}]


async def test_the_token_loads_and_unloads(guarded: AsyncTestClient[WorkerApp]) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    loaded = await guarded.post(LOAD, headers=auth)
    assert loaded.json() == {"name": "scale", "version": "2.0.0", "state": "READY"}
    unloaded = await guarded.post("/v2/repository/models/scale/versions/2.0.0/unload", headers=auth)
    assert unloaded.json() == {"name": "scale", "unloaded": ["2.0.0"]}


async def test_without_a_token_control_is_refused(model_dir: Path) -> None:
    async for client in control_client(model_dir, None):
        refused = await client.post(UNLOAD, headers={"Authorization": f"Bearer {TOKEN}"})
        assert refused.status_code == 403
        error = refused.json()["error"]
        assert error.startswith("repository control (load/unload) is disabled on this worker")
        assert "MODELGATE_WORKER_CONTROL_TOKEN" in error
        await still_serving(client)


async def test_open_control_needs_no_token(model_dir: Path) -> None:
    async for client in control_client(model_dir, ControlAccess(open=True)):
        assert (await client.post(LOAD)).status_code == 200


def test_a_real_worker_refuses_a_strangers_unload(worker: WorkerProcess) -> None:
    """Acceptance 3 (the worker half): an unauthenticated unload is refused, the model stays."""
    with httpx.Client(base_url=worker.url, timeout=10) as client:
        before = client.post("/v2/repository/index").json()
        assert before, "the session worker serves the test models"
        name, version = before[0]["name"], before[0]["version"]
        for path in (f"/v2/repository/models/{name}/unload",
                     f"/v2/repository/models/{name}/versions/{version}/unload"):  # fmt: skip
            response = client.post(path)
            assert response.status_code == 403, response.text
        assert client.post("/v2/repository/index").json() == before
        assert client.get(f"/v2/models/{name}/versions/{version}/ready").status_code == 200
        assert "repository control (load/unload) is disabled" in worker.output()
