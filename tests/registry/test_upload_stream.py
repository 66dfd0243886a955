"""A multipart publish is read as it streams (issue 8, finding 6): a 64 MiB file part costs
the reader a few MiB of Python memory, and the hashing and writing run outside the event
loop's thread. Throughput and RSS during a real 300 MiB publish are measured by
`bench.publish_under_load`."""

from __future__ import annotations

import hashlib
import threading
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from registry import artifacts
from registry.api._upload import upload_form
from registry.artifacts import ArtifactStore

BOUNDARY = "stream-test"
PIECE = b"\x07" * (64 * 1024)
PIECES = 1024  # 64 MiB


class StreamingRequest:
    """What `upload_form` reads of a Litestar request: the ASGI ``receive`` and two headers."""

    def __init__(self, parts: Iterator[bytes]) -> None:
        self.parts = parts
        self.content_length = None
        self.content_type = ("multipart/form-data", {"boundary": BOUNDARY})

    async def receive(self) -> dict[str, Any]:
        part = next(self.parts, None)
        if part is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.request", "body": part, "more_body": True}


def body() -> Iterator[bytes]:
    yield (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="version"\r\n\r\n1.0.0\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="m.onnx"\r\n\r\n'
    ).encode()
    for _ in range(PIECES):
        yield PIECE
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


async def test_a_64_mib_upload_is_read_in_bounded_memory_off_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ArtifactStore(tmp_path / "artifacts")
    loop_thread = threading.current_thread()
    writers: set[threading.Thread] = set()
    write_block = artifacts._TempFile.write_block

    def recording(self: Any, block: bytes) -> None:
        writers.add(threading.current_thread())
        write_block(self, block)

    monkeypatch.setattr(artifacts._TempFile, "write_block", recording)
    seen: list[dict[str, str]] = []

    async def before_file(fields: dict[str, str]) -> None:
        seen.append(dict(fields))

    tracemalloc.start()
    try:
        async with upload_form(
            StreamingRequest(body()),  # type: ignore[arg-type]
            store,
            file_limit=PIECES * len(PIECE),
            body_limit=PIECES * len(PIECE) + 4096,
            before_file=before_file,
        ) as form:
            peak = tracemalloc.get_traced_memory()[1]
            assert form.staged is not None
            staged = form.staged
            assert staged.tmp.stat().st_size == PIECES * len(PIECE)
    finally:
        tracemalloc.stop()

    expected = hashlib.sha256()
    for _ in range(PIECES):
        expected.update(PIECE)
    assert staged.artifact.sha256 == expected.hexdigest()
    assert staged.artifact.size_bytes == PIECES * len(PIECE)
    assert form.fields == {"version": "1.0.0"}
    assert seen == [{"version": "1.0.0"}]  # the fail-fast hook ran before the file part
    assert peak < 8 * 1024 * 1024, f"reading 64 MiB took {peak / 2**20:.1f} MiB of memory"
    assert writers, "nothing was written"
    assert loop_thread not in writers, "the event loop's thread hashed or wrote the file"
    assert not staged.tmp.exists()  # not placed, so discarded when the block ended


@pytest.mark.parametrize("rate_mib_s", [0.0, 16.0])
async def test_an_upload_is_read_at_the_configured_pace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rate_mib_s: float
) -> None:
    """Beyond the burst, the reader waits as long as ``rate`` says the bytes should take:
    64 MiB at 16 MiB/s with an 8 MiB burst is 3.5 s of waiting on the clock; unpaced, none."""
    from registry.api import _upload

    waits: list[float] = []
    now = [0.0]

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    monkeypatch.setattr(_upload, "_clock", lambda: now[0])
    monkeypatch.setattr(_upload, "_sleep", sleep)

    async def before_file(fields: dict[str, str]) -> None:
        return None

    async with upload_form(
        StreamingRequest(body()),  # type: ignore[arg-type]
        ArtifactStore(tmp_path / "artifacts"),
        file_limit=PIECES * len(PIECE),
        body_limit=PIECES * len(PIECE) + 4096,
        rate=rate_mib_s * 1024 * 1024,
        before_file=before_file,
    ) as form:
        assert form.staged is not None
    if rate_mib_s == 0:
        assert waits == []
    else:
        expected = (PIECES * len(PIECE) - _upload.PACE_BURST) / (rate_mib_s * 1024 * 1024)
        # Within a chunk's time either way: the form's own headers, the last chunk.
        assert abs(sum(waits) - expected) < 0.01
