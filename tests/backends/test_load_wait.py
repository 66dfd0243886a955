"""A worker told to load a version that is not published yet waits for it (``--load-wait``),
retrying with capped exponential backoff, instead of exiting; see `backends.startup`."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from backends.errors import LoadFailed
from backends.startup import LoadWait, VersionYanked, load_waiting, waitable
from registry.artifacts import ArtifactStore
from registry.db import make_engine, upgrade_to_head
from registry.errors import DatabaseUnavailable, ModelNotFound, VersionNotFound
from tests.support.net import ROOT, free_port, poll_until
from tests.support.registry import publish


class _Plane:
    """``load`` fails with each of ``failures`` in turn, then returns ``"loaded"``."""

    def __init__(self, *failures: Exception) -> None:
        self.failures = list(failures)
        self.tries = 0

    async def load(self, model: str, version: str) -> str:
        self.tries += 1
        if self.failures:
            raise self.failures.pop(0)
        return "loaded"


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.pauses: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds


async def _load(plane: _Plane, wait: LoadWait, clock: _Clock) -> Any:
    return await load_waiting(cast(Any, plane), "m", "1.0.0", wait, clock=clock, sleep=clock.sleep)


def test_backoff_doubles_up_to_its_cap() -> None:
    delays = LoadWait(timeout_s=60, initial_s=0.5, max_delay_s=3).delays()
    assert [next(delays) for _ in range(6)] == [0.5, 1, 2, 3, 3, 3]


def test_only_not_yet_published_and_unreachable_registries_are_waited_for() -> None:
    assert waitable(ModelNotFound("m"))
    assert waitable(VersionNotFound("m", "1.0.0"))
    assert waitable(DatabaseUnavailable("sqlite://", "the registry schema is missing"))
    assert not waitable(VersionYanked("m", "1.0.0"))
    assert not waitable(LoadFailed("bad model"))


async def test_a_missing_version_is_retried_until_it_loads(
    caplog: pytest.LogCaptureFixture,
) -> None:
    plane = _Plane(ModelNotFound("m"), VersionNotFound("m", "1.0.0"), VersionNotFound("m", "1.0.0"))
    clock = _Clock()
    caplog.set_level("WARNING", logger="modelgate.worker")
    assert (
        await _load(plane, LoadWait(timeout_s=60, initial_s=1, max_delay_s=30), clock) == "loaded"
    )
    assert (plane.tries, clock.pauses) == (4, [1, 2, 4])
    tries = [r.getMessage() for r in caplog.records]
    assert len(tries) == 3
    assert tries[0].startswith('waiting for m@1.0.0 (try 1 failed: model "m" not found)')


async def test_the_wait_ends_with_the_last_failure() -> None:
    plane = _Plane(*[VersionNotFound("m", "1.0.0")] * 10)
    clock = _Clock()
    with pytest.raises(VersionNotFound):
        await _load(plane, LoadWait(timeout_s=5, initial_s=1, max_delay_s=30), clock)
    assert clock.pauses == [1, 2, 2]  # the last pause is cut to the time left
    assert plane.tries == 4


async def test_without_a_wait_or_for_a_yanked_version_the_first_failure_is_final() -> None:
    clock = _Clock()
    plane = _Plane(VersionNotFound("m", "1.0.0"))
    with pytest.raises(VersionNotFound):
        await _load(plane, LoadWait(), clock)
    yanked = _Plane(VersionYanked("m", "1.0.0"))
    with pytest.raises(VersionYanked):
        await _load(yanked, LoadWait(timeout_s=60), clock)
    assert (plane.tries, yanked.tries, clock.pauses) == (1, 1, [])


async def test_a_worker_process_waits_for_the_migration_and_the_publish(
    tmp_path: Path, model_dir: Path
) -> None:
    """Started against a registry that is neither migrated nor holds the version, the
    worker stays up, not ready, logging its tries (its announcements failing meanwhile, as
    in a Kubernetes pod started before the migration Job); migrated and published, it
    becomes ready without a restart."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}"
    store = ArtifactStore(tmp_path / "artifacts")
    log = tmp_path / "worker.log"
    env = {**os.environ, "MODELGATE_DATABASE_URL": url, "MODELGATE_ARTIFACT_ROOT": str(store.root),
           "MODELGATE_WORKER_LOAD_RETRY_MAX_S": "0.2", "MODELGATE_WORKER_INTRA_OP_THREADS": "1",
           "MODELGATE_WORKER_HEARTBEAT_INTERVAL_S": "0.2"}  # fmt: skip
    env.pop("MODELGATE_REDIS_URL", None)
    port = free_port()
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "modelgate", "worker", "--port", str(port),
             "--load", "late@1.0.0", "--load-wait", "120"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    ready = f"http://127.0.0.1:{port}/v2/health/ready"

    def logged(text: str) -> bool:
        assert process.poll() is None, (
            f"worker exited with {process.returncode}:\n{log.read_text()}"
        )
        return text in log.read_text()

    try:
        await asyncio.to_thread(poll_until, lambda: logged("registry schema is missing"),
                                "a try against the unmigrated registry", 60)  # fmt: skip
        assert httpx.get(ready).status_code == 503
        await asyncio.to_thread(upgrade_to_head, url)
        await asyncio.to_thread(poll_until, lambda: logged('model "late" not found'),
                                "a try against the migrated registry", 60)  # fmt: skip
        engine = make_engine(url)
        scale = (model_dir / "scale-1.onnx").read_bytes()
        await publish(engine, store, "late", {"1.0.0": (scale, "active", {})})
        await engine.dispose()

        def serving() -> bool:
            return logged("loaded late@1.0.0") and httpx.get(ready).status_code == 200

        await asyncio.to_thread(poll_until, serving, "the worker to be ready", 60)
        assert "waiting for late@1.0.0 (try 1 failed" in log.read_text()
    finally:
        process.terminate()
        process.wait(timeout=30)
