"""Fixtures shared by every folder: the run's isolation (its own Redis and key prefix),
real SQLite and PostgreSQL databases migrated to head, the admin app and client, tokens,
the tiny model files and one real worker process, and a live ``modelgate serve`` process.
Helpers live in `tests.support`.

PostgreSQL is the machine's (`tests.support.postgres`); each run makes its own database and
drops it afterwards. ``make test`` starts the server when it is down; if it still cannot be
reached, the PostgreSQL tests fail rather than skip. Redis is the run's own
(`tests.support.isolation`).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import NullPool

from gateway.app import create_app
from gateway.settings import GatewaySettings
from modelgate.core.keys import RedisKeys
from registry.db import make_engine, upgrade_to_head
from registry.settings import RegistrySettings
from tests.support.isolation import (
    REDIS_PORT,
    REDIS_PREFIX,
    REDIS_URL,
    delete_prefix_sync,
    scoped,
)
from tests.support.models import model_files, write_models
from tests.support.net import free_port, wait_http
from tests.support.postgres import POSTGRES_SERVER, create_database, drop_database
from tests.support.registry import make_token
from tests.support.services import redis_server
from tests.support.workers import WorkerProcess, start_worker


@pytest.fixture(scope="session", autouse=True)
def run_isolation() -> Iterator[None]:
    """For the whole run: every process and settings object uses the run's Redis prefix,
    and the run's Redis server is up. At the end the run's keys are deleted (on a shared
    server, nothing else is touched) and the private server stops."""
    server = redis_server(REDIS_PORT) if REDIS_PORT is not None else None
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MODELGATE_REDIS_PREFIX", REDIS_PREFIX)
        # NOTE: a developer's own Redis must not leak in; tests that want Redis pass its URL.
        patch.delenv("MODELGATE_REDIS_URL", raising=False)
        if server is not None:
            server.start()
        try:
            yield
        finally:
            delete_prefix_sync()
            if server is not None:
                server.stop()


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The run's Redis server (``redis://…``)."""
    return REDIS_URL


@pytest.fixture
def redis_keys(request: pytest.FixtureRequest) -> Iterator[RedisKeys]:
    """Redis names for one test, under the run's prefix; its keys are deleted afterwards."""
    keys = scoped(f"{request.node.name[:40]}-{uuid.uuid4().hex[:6]}")
    yield keys
    delete_prefix_sync(prefix=keys.prefix)


@pytest.fixture(scope="session")
def pg_database_factory() -> Iterator[object]:
    """Makes fresh PostgreSQL databases (URLs) and drops them all at the end of the run."""
    made: list[str] = []

    def make() -> str:
        name = f"modelgate_test_{uuid.uuid4().hex[:12]}"
        asyncio.run(create_database(name))
        made.append(name)
        return f"{POSTGRES_SERVER}/{name}"

    yield make
    for name in made:
        asyncio.run(drop_database(name))


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def database_url(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    pg_database_factory: object,
) -> str:
    """A database migrated to head, once per backend per run."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'registry.db'}"
    else:
        url = pg_database_factory()  # type: ignore[operator]
    upgrade_to_head(url)
    return url


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(database_url)
    yield eng
    await eng.dispose()


@pytest.fixture(scope="session")
def artifact_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("artifacts")


@pytest.fixture(scope="session")
def registry_settings(
    database_url: str, artifact_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> RegistrySettings:
    imports = tmp_path_factory.mktemp("imports")
    return RegistrySettings(
        database_url=database_url,
        artifact_root=artifact_root,
        max_artifact_bytes=256 * 1024,
        import_roots=[imports],
    )


@pytest.fixture(scope="session")
def import_root(registry_settings: RegistrySettings) -> Path:
    return registry_settings.import_roots[0]


@pytest.fixture
async def app(registry_settings: RegistrySettings) -> AsyncIterator[Litestar]:
    # NOTE: the test client runs the app (and its lifespan's background tasks) on its own
    # event loop in a thread, so each test gets a fresh app with an engine without a pool:
    # pooled asyncpg connections must not cross event loops.
    app_engine = make_engine(registry_settings.database_url, poolclass=NullPool)
    # NOTE: no rollout controller: the registry's rollout tests drive rollouts themselves,
    # under a clock of their own (tests/gateway/test_rollout_controller.py tests it).
    settings = GatewaySettings(rollout_controller=False)
    yield create_app(registry_settings, settings, engine=app_engine)
    await app_engine.dispose()


@pytest.fixture(scope="session")
async def tokens(engine: AsyncEngine) -> dict[str, str]:
    return {scope: await make_token(engine, scope) for scope in ("read", "publish", "admin")}


@pytest.fixture
async def client(app: Litestar, tokens: dict[str, str]) -> AsyncIterator[AsyncTestClient[Litestar]]:
    """An in-process client with the admin token set."""
    async with AsyncTestClient(app=app) as test_client:
        test_client.headers["Authorization"] = f"Bearer {tokens['admin']}"
        yield test_client


@pytest.fixture
def model_name() -> str:
    return f"m-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every test model as a file: scale (two versions), kinds, bf16, fixed, reduce, mlp."""
    return write_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def worker(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    """One real worker process serving every test model, batching on (up to 8 rows)."""
    args = [a for f in model_files(model_dir) for a in ("--model-file", f)]
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    env = {"MODELGATE_WORKER_MAX_BODY_BYTES": str(1024 * 1024)}
    proc = start_worker([*args, "--max-batch-size", "8", "--max-queue-delay-us", "2000"], log, env)
    yield proc
    code = proc.stop()
    assert code == 0, proc.output()


@pytest.fixture(scope="module")
def live_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A real ``modelgate serve`` process on a fresh SQLite database: (base URL, admin token)."""
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("live")
    env = dict(os.environ)
    env.update(
        MODELGATE_DATABASE_URL=f"sqlite+aiosqlite:///{root / 'registry.db'}",
        MODELGATE_ARTIFACT_ROOT=str(root / "artifacts"),
        MODELGATE_REGISTRY_MAX_ARTIFACT_BYTES=str(256 * 1024),
    )
    cli = [sys.executable, "-m", "modelgate"]
    subprocess.run([*cli, "db", "upgrade"], env=env, check=True, capture_output=True)
    token = subprocess.run(
        [*cli, "tokens", "create", "--name", "live-admin", "--scope", "admin"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    port = free_port()
    server = subprocess.Popen([*cli, "serve", "--port", str(port)], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/v2/health/live", server)
        yield base, token
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
            raise
