"""ASGI helpers shared by the gateway's and the worker's bare data-plane apps."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from modelgate.core.errors import BodyTooLarge, ClientDisconnected

__all__ = ["read_body"]

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]


async def read_body(receive: Receive, limit: int, declared_length: str | None) -> bytes:
    """The whole request body; 413 before reading when ``Content-Length`` already exceeds
    ``limit``, or as soon as the bytes do; 400 when the client leaves half-way."""
    # NOTE: only ASCII digits, and few enough for int() ("²".isdigit() is true, and int()
    # refuses 4,300 digits); anything else is left to the bytes themselves to bound.
    declared = (declared_length or "").strip(" \t")
    sane = declared.isascii() and declared.isdigit() and len(declared) <= 19
    if sane and int(declared) > limit:
        raise BodyTooLarge(int(declared), limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected("the client disconnected before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(size, limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
