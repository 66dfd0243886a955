"""A database that is not ready, as a new user meets it (issue 8, finding 12): a gateway on
an un-migrated database answers inference 503 and says once to run ``modelgate db upgrade``;
CLI commands against a stopped or un-migrated database print one line with the fix and
exit 2; ``postgres://`` and ``postgresql://`` URLs work."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.support.live import CLI
from tests.support.net import free_port, poll_until, wait_http

HINT = "run `modelgate db upgrade`"


def _env(tmp_path: Path, database_url: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("MODELGATE_REDIS_URL", None)
    env.update(
        MODELGATE_DATABASE_URL=database_url,
        MODELGATE_ARTIFACT_ROOT=str(tmp_path / "artifacts"),
        **extra,
    )
    return env


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=60)


def _one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_gateway_on_an_unmigrated_database_says_how_to_fix_it_once(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}"
    env = _env(tmp_path, url, MODELGATE_GATEWAY_REGISTRY_POLL_S="0.05")
    port = free_port()
    log_path = tmp_path / "gateway.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [*CLI, "serve", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/v2/health/live", server)
        infer = {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}
        refused = httpx.post(f"{base}/v2/models/m/infer", json=infer)
        assert refused.status_code == 503, refused.text
        assert "registry" in refused.json()["error"]
        assert httpx.get(f"{base}/v2/health/ready").status_code == 503
        poll_until(lambda: HINT in log_path.read_text(), "the log to say how to fix it")
        # The fix, while the gateway polls every 50 ms: it recovers on its own.
        upgraded = _cli(env, "db", "upgrade")
        assert upgraded.returncode == 0, upgraded.stderr
        poll_until(
            lambda: httpx.get(f"{base}/v2/health/ready").status_code == 200,
            "the gateway to load the registry",
        )
        unknown = httpx.post(f"{base}/v2/models/m/infer", json=infer)
        assert unknown.status_code == 404, unknown.text
    finally:
        server.terminate()
        server.wait(timeout=20)
    text = log_path.read_text()
    assert "Traceback" not in text, text[-3000:]
    # Once per change of state, although it failed on every one of many polls (every 50 ms):
    # each loop that reads the database (registry, rollouts) says it when it starts failing,
    # and again only when the failure changes (SQLite runs each migration's DDL as it goes,
    # so the upgrade shows a half-made schema for a moment).
    assert 1 <= text.count(HINT) <= 4, text[-3000:]
    assert "database recovered" in text


def test_cli_against_a_stopped_database_is_one_line_exit_2(tmp_path: Path) -> None:
    stopped = f"postgresql://postgres@127.0.0.1:{free_port()}/modelgate"
    env = _env(tmp_path, stopped)
    _one_line_error(_cli(env, "db", "upgrade"), "database unavailable", "127.0.0.1", "running")
    created = _cli(env, "tokens", "create", "--name", "a", "--scope", "admin")
    _one_line_error(created, "database unavailable", "running")


def test_cli_on_an_unmigrated_database_names_the_fix(tmp_path: Path) -> None:
    env = _env(tmp_path, f"sqlite:///{tmp_path / 'empty.db'}")
    _one_line_error(_cli(env, "tokens", "create", "--name", "a", "--scope", "admin"), HINT)


def test_cli_refuses_an_unusable_url_in_one_line(tmp_path: Path) -> None:
    _one_line_error(_cli(_env(tmp_path, "mysql://h/db"), "db", "upgrade"), "mysql", "postgres://")


@pytest.mark.parametrize("scheme", ["postgres", "postgresql"])
def test_libpq_style_urls_work(tmp_path: Path, pg_database_factory: Any, scheme: str) -> None:
    url = make_url(pg_database_factory()).set(drivername=scheme)
    env = _env(tmp_path, url.render_as_string(hide_password=False))
    upgraded = _cli(env, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    token = _cli(env, "tokens", "create", "--name", "a", "--scope", "admin")
    assert token.returncode == 0, token.stderr
    port = free_port()
    server = subprocess.Popen([*CLI, "serve", "--port", str(port)], env=env)
    try:
        wait_http(f"http://127.0.0.1:{port}/v2/health/ready", server)
        headers = {"Authorization": f"Bearer {token.stdout.strip()}"}
        made = httpx.post(
            f"http://127.0.0.1:{port}/admin/v1/models", json={"name": "m"}, headers=headers
        )
        assert made.status_code == 201, made.text
    finally:
        server.terminate()
        server.wait(timeout=20)
