"""A raw keep-alive HTTP/1.1 client on asyncio protocols (`RawPool`): the floor for a
Python hop, and the bare proxy's forwarding client (the gateway's forwarder works alike).

It frames replies by ``content-length`` only, which is all the workers send.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

__all__ = ["RawPool", "ReplyReader"]

_CONTENT_LENGTH = re.compile(rb"content-length:\s*(\d+)", re.I)
_CONTENT_TYPE = re.compile(rb"content-type:\s*([^\r\n]+)", re.I)


class ReplyReader(asyncio.Protocol):
    """A client connection with one request in flight: each complete reply goes to
    `replied`, framed by ``content-length`` alone."""

    def __init__(self) -> None:
        self.buf = bytearray()
        #: (status, body start, body end, head) of the reply being read, once its head is in.
        self._reply: tuple[int, int, int, bytes] | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self._reply is None:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end])
            length = _CONTENT_LENGTH.search(head)
            size = int(length.group(1)) if length else 0
            self._reply = (int(head[9:12]), end + 4, end + 4 + size, head)
        status, start, stop, head = self._reply
        if len(self.buf) >= stop:
            body = bytes(self.buf[start:stop])
            del self.buf[:stop]
            self._reply = None
            self.replied(status, head, body)

    def replied(self, status: int, head: bytes, body: bytes) -> None:
        raise NotImplementedError


class _RawConn(ReplyReader):
    def __init__(self) -> None:
        super().__init__()
        self.waiter: asyncio.Future[tuple[int, bytes, bytes]] | None = None
        self.alive = True

    def replied(self, status: int, head: bytes, body: bytes) -> None:
        kind = _CONTENT_TYPE.search(head)
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result((status, body, kind.group(1) if kind else b"application/json"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.alive = False
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("upstream closed"))


class RawPool:
    """A keep-alive pool of HTTP/1.1 connections to one URL, one request at a time on each."""

    def __init__(self, url: str) -> None:
        rest = url.split("://", 1)[1]
        hostport, _, path = rest.partition("/")
        self.host, _, port = hostport.partition(":")
        self.port = int(port or 80)
        self.prefix = f"POST /{path} HTTP/1.1\r\nHost: {hostport}\r\n".encode()
        self.idle: list[_RawConn] = []

    async def post(
        self, body: bytes, content_type: bytes, timeout_s: float | None = None
    ) -> tuple[int, bytes, bytes]:
        """One request: (status, body, content type). Raises ``ConnectionError``/``OSError``,
        or ``TimeoutError`` after ``timeout_s`` (the connection is then dropped: its answer
        is still on the way)."""
        loop = asyncio.get_running_loop()
        conn = None
        while self.idle:
            candidate = self.idle.pop()
            if candidate.alive:
                conn = candidate
                break
        if conn is None:
            _, conn = await loop.create_connection(_RawConn, self.host, self.port)
        waiter: asyncio.Future[tuple[int, bytes, bytes]] = loop.create_future()
        conn.waiter = waiter
        assert conn.transport is not None
        conn.transport.write(
            b"".join(
                (
                    self.prefix,
                    b"content-type: ",
                    content_type,
                    b"\r\ncontent-length: ",
                    str(len(body)).encode(),
                    b"\r\n\r\n",
                    body,
                )
            )
        )
        timer = None
        if timeout_s is not None:
            timer = loop.call_later(timeout_s, _expire, waiter)
        try:
            result = await waiter
        except TimeoutError:
            conn.alive = False
            conn.transport.close()
            raise
        finally:
            if timer is not None:
                timer.cancel()
        self.idle.append(conn)
        return result


def _expire(waiter: asyncio.Future[Any]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())
