"""A multipart publish read as it streams: text fields into memory (each bounded), the
``file`` part straight into a `registry.artifacts.Staging`, so that a gigabyte upload costs
the gateway about one `registry.artifacts.CHUNK` of memory.

Litestar's own ``request.form()`` spools the file to a temporary file outside the store and
leaves the copy to the caller; this reads ``receive`` directly with the same push parser.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from litestar import Request
from multipart import (  # type: ignore[import-untyped]
    MultipartSegment,
    ParserError,
    ParserLimitReached,
    PushMultipartParser,
)

from modelgate.core.errors import BodyTooLarge, ClientDisconnected
from registry.artifacts import ArtifactStore, StagedArtifact, Staging
from registry.errors import BadRequest

__all__ = ["UploadForm", "upload_form"]

#: Bytes read ahead of the pace before the reader waits (a burst, so small uploads never wait).
PACE_BURST = 8 * 1024 * 1024
#: The pace's clock and wait (tests replace both).
_clock, _sleep = time.monotonic, asyncio.sleep

#: Bytes a text field may hold (a description, labels as JSON).
MAX_FIELD_BYTES = 64 * 1024
MAX_PARTS = 16


@dataclass
class UploadForm:
    """The text fields, and the staged file (``None`` when no ``file`` part came)."""

    fields: dict[str, str] = field(default_factory=dict)
    staged: StagedArtifact | None = None
    filename: str = "model.onnx"


async def _body(
    request: Request[Any, Any, Any], limit: int, rate: float
) -> AsyncGenerator[bytes, None]:
    """The body's chunks, at most ``limit`` bytes, read at ``rate`` bytes/s (0: unpaced)."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise BodyTooLarge(declared, limit)
    size = 0
    started = _clock()
    while True:
        if rate > 0:
            ahead = (size - PACE_BURST) / rate - (_clock() - started)
            if ahead > 0:
                await _sleep(ahead)
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected("the client disconnected before sending the whole upload")
        chunk: bytes = message.get("body", b"")  # type: ignore[assignment]
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(size, limit)
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


class _Reader:
    def __init__(
        self,
        store: ArtifactStore,
        file_limit: int,
        before_file: Callable[[dict[str, str]], Awaitable[None]],
    ) -> None:
        self.store = store
        self.file_limit = file_limit
        self.before_file = before_file
        self.form = UploadForm()
        self.staging: Staging | None = None
        self.segment: MultipartSegment | None = None
        self.text = bytearray()

    async def event(self, event: Any) -> None:
        if isinstance(event, MultipartSegment):
            await self._begin(event)
        elif event is None:
            await self._end()
        elif self.staging is not None:
            await self.staging.write(event)
        else:
            self.text += event
            if len(self.text) > MAX_FIELD_BYTES:
                name = self.segment.name if self.segment is not None else "?"
                raise BadRequest(
                    f'form field "{name}" is longer than {MAX_FIELD_BYTES} bytes; '
                    f'only "file" may be large'
                )

    async def _begin(self, segment: MultipartSegment) -> None:
        self.segment = segment
        self.text = bytearray()
        if segment.name != "file":
            return
        if self.form.staged is not None:
            raise BadRequest('multipart publish takes one "file" part, got more')
        await self.before_file(self.form.fields)
        self.form.filename = segment.filename or "model.onnx"
        self.staging = self.store.open_staging(limit=self.file_limit)

    async def _end(self) -> None:
        assert self.segment is not None
        if self.staging is not None:
            staging, self.staging = self.staging, None
            try:
                self.form.staged = await staging.finish()
            except BaseException:
                staging.abort()
                raise
            return
        try:
            self.form.fields[self.segment.name] = self.text.decode(self.segment.charset or "utf-8")
        except (UnicodeDecodeError, LookupError):
            raise BadRequest(f'form field "{self.segment.name}" is not valid text') from None

    def abort(self) -> None:
        if self.staging is not None:
            self.staging.abort()
        if self.form.staged is not None:
            self.store.discard(self.form.staged)


@asynccontextmanager
async def upload_form(
    request: Request[Any, Any, Any],
    store: ArtifactStore,
    *,
    file_limit: int,
    body_limit: int,
    rate: float = 0.0,
    before_file: Callable[[dict[str, str]], Awaitable[None]],
) -> AsyncIterator[UploadForm]:
    """Read the whole form; ``before_file(fields so far)`` runs when the file part begins (a
    place to fail fast); the body is read at ``rate`` bytes/s (0: unpaced). The staged file
    is the caller's inside the block and discarded when it leaves, unless placed in the store
    meanwhile."""
    boundary = request.content_type[1].get("boundary")
    if not boundary:
        raise BadRequest("multipart/form-data without a boundary in its Content-Type")
    reader = _Reader(store, file_limit, before_file)
    try:
        try:
            parser = PushMultipartParser(boundary, max_segment_count=MAX_PARTS)
            async with aclosing(_body(request, body_limit, rate)) as body:
                with parser:
                    async for chunk in body:
                        for event in parser.parse(chunk):
                            await reader.event(event)
                        if parser.closed:
                            break
        except (ParserError, ParserLimitReached) as exc:
            raise BadRequest(f"invalid multipart/form-data: {exc}") from None
        yield reader.form
    finally:
        reader.abort()
