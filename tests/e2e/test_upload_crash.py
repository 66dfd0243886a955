"""A real ``modelgate serve`` SIGKILLed in the middle of an upload leaves a partial temp file;
the next gateway removes it once it is older than the grace (issue 8, finding 5), and the
store holds nothing, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.net import free_port, poll_until, wait_http

CLI = [sys.executable, "-m", "modelgate"]
BOUNDARY = "modelgate-crash-test"


def files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def serve(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    server = subprocess.Popen([*CLI, "serve", "--port", str(port)], env=env)
    wait_http(f"http://127.0.0.1:{port}/v2/health/live", server)
    return server


def stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture
def env(database_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "MODELGATE_DATABASE_URL": database_url,
        "MODELGATE_ARTIFACT_ROOT": str(tmp_path / "artifacts"),
        "MODELGATE_REGISTRY_MAX_ARTIFACT_BYTES": str(64 * 1024 * 1024),
        "MODELGATE_REGISTRY_ARTIFACT_GRACE_S": "1",
        "MODELGATE_REGISTRY_ARTIFACT_GC_INTERVAL_S": "0.2",
    }


def endless_upload(release: threading.Event) -> Iterator[bytes]:
    """A multipart body that sends 4 MiB of its file part, then waits for ``release``."""
    yield (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="version"\r\n\r\n1.0.0\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="m.onnx"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    for _ in range(64):
        yield b"\x01" * (64 * 1024)
    release.wait(60)


def test_sigkill_mid_upload_leaves_nothing_after_the_grace(
    env: dict[str, str], tokens: dict[str, str], model_name: str
) -> None:
    root = Path(env["MODELGATE_ARTIFACT_ROOT"])
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {tokens['admin']}"}
    server = serve(env, port)
    release = threading.Event()
    outcome: list[BaseException | int] = []
    try:
        created = httpx.post(f"{base}/admin/v1/models", json={"name": model_name}, headers=headers)
        assert created.status_code == 201, created.text

        def send() -> None:
            try:
                response = httpx.post(
                    f"{base}/admin/v1/models/{model_name}/versions",
                    content=endless_upload(release),
                    headers={
                        **headers,
                        "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
                    },
                    timeout=60,
                )
                outcome.append(response.status_code)
            except httpx.HTTPError as exc:
                outcome.append(exc)

        sender = threading.Thread(target=send)
        sender.start()
        poll_until(
            lambda: any(p.stat().st_size >= 1 << 20 for p in files(root / "tmp")),
            "the upload's temp file to hold 1 MiB",
        )
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=15)
        release.set()
        sender.join(timeout=60)
        assert outcome, "the upload never ended"
        assert isinstance(outcome[0], httpx.HTTPError), outcome
        partial = files(root)
        assert partial, "the killed upload left nothing to collect"
        assert all(p.parent == root / "tmp" for p in partial), partial

        # The next gateway (start-up sweep, then the timer) removes it after the grace.
        server = serve(env, port)
        poll_until(lambda: files(root) == [], "the killed upload's temp file to be removed")
        listed = httpx.get(f"{base}/admin/v1/models/{model_name}/versions", headers=headers)
        assert listed.json()["total"] == 0
    finally:
        release.set()
        stop(server)
