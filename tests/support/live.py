"""A real ``modelgate serve`` process on a database of the caller's choosing, migrated and
with an admin token made by the CLI, as a user would start one."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.net import free_port, wait_http

CLI = [sys.executable, "-m", "modelgate"]


@contextmanager
def live_server(root: Path, database_url: str) -> Iterator[tuple[str, str]]:
    """``(base URL, admin token)`` of a server on ``database_url``, stopped on exit."""
    env = dict(os.environ)
    env.update(
        MODELGATE_DATABASE_URL=database_url,
        MODELGATE_ARTIFACT_ROOT=str(root / "artifacts"),
        MODELGATE_REGISTRY_MAX_ARTIFACT_BYTES=str(256 * 1024),
    )
    subprocess.run([*CLI, "db", "upgrade"], env=env, check=True, capture_output=True)
    token = subprocess.run(
        [*CLI, "tokens", "create", "--name", "live-admin", "--scope", "admin"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    port = free_port()
    server = subprocess.Popen([*CLI, "serve", "--port", str(port)], env=env)
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
