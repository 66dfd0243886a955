"""The forwarding client: bytes in, bytes out, over keep-alive HTTP/1.1 connections.

NOTE: a small client on asyncio protocols with httptools' C response parser, not aiohttp
or httpx: the gateway benchmark (now `bench.gateway_overhead`) profiled aiohttp at 36-49%
of the gateway's CPU per request, and replacing it cut that CPU from 359 to 146 µs
(gateway/direct throughput 0.25 → 0.63); a default ``httpx.AsyncClient`` measured 0.15x
aiohttp (encode/httpx#3215).
httpx stays the client of the CLI, probes and tests. Responses are framed by httptools
(content-length, chunked or close-delimited); one idle pool per worker origin. A request
that fails on a reused idle connection before any byte came back is sent once more on a
fresh connection (the worker had closed it). Transport failures are translated here, once,
to `BackendUnavailable` (retryable elsewhere; its ``condition`` says ``connect-failure`` or
``reset``) or `DeadlineExceeded`. A connect that does not complete within
``connect_timeout_s`` is a connect failure of this worker, not the client's deadline: only
a connect cut short by the request's own remaining time is `DeadlineExceeded`. An `Abort`
handle lets another task end a send early (`AttemptAborted`); a send that ends early for any
reason (abort, timeout, cancellation) closes its connection rather than pooling it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httptools

from gateway.errors import AttemptAborted, BackendUnavailable, DeadlineExceeded

__all__ = ["Abort", "Forwarder", "Reply"]

#: Response headers passed back to the client (everything else is the gateway's own).
PASSED_BACK = frozenset({b"content-type", b"inference-header-content-length", b"content-encoding"})


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


class _StaleConnection(Exception):
    """A reused connection closed before answering: safe to send again on a new one."""


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection, one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._waiter: asyncio.Future[tuple[int, list[tuple[bytes, bytes]], bytes, bool]] | None = (
            None
        )
        self._parser: httptools.HttpResponseParser | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._answered = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def start(
        self, payload: bytes
    ) -> asyncio.Future[tuple[int, list[tuple[bytes, bytes]], bytes, bool]]:
        assert self.transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        self._parser = httptools.HttpResponseParser(self)
        self._headers, self._body, self._answered = [], [], False
        self.transport.write(payload)
        return self._waiter

    def data_received(self, data: bytes) -> None:
        self._answered = True
        if self._parser is None:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionError(f"malformed response: {exc}"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        lowered = name.lower()
        if lowered in PASSED_BACK:
            self._headers.append((lowered, value))

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        assert self._parser is not None
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
            waiter.set_result(
                (
                    self._parser.get_status_code(),
                    self._headers,
                    body,
                    self._parser.should_keep_alive(),
                )
            )

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._parser is not None and self._waiter is not None and self._answered:
            with contextlib.suppress(httptools.HttpParserError):
                self._parser.feed_data(b"")  # completes a close-delimited body
        if self._answered:
            self._fail(ConnectionError("the worker closed the connection mid-answer"))
        else:
            self._fail(_StaleConnection())

    def _fail(self, exc: Exception) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        if self.transport is not None:
            self.transport.close()


class _Aborted(Exception):
    """`Abort.fire` ended the send."""


def _expire(waiter: asyncio.Future[Any], connection: _Connection, exc: Exception) -> None:
    if not waiter.done():
        waiter.set_exception(exc)
    _discard(connection)


def _discard(connection: _Connection) -> None:
    connection.closed = True
    if connection.transport is not None:
        connection.transport.close()


class Abort:
    """Ends one `Forwarder.send` early from another task or callback: ``fire(reason)``
    makes the send raise `AttemptAborted` with ``reason`` (at once if it is waiting for
    the answer, after the connect otherwise). Firing twice, or after the send ended, is a
    no-op. One handle per send. Another transport ends its own sends through ``on_fire``
    (set while one is in flight; called once, with the reason)."""

    __slots__ = ("_connection", "_waiter", "on_fire", "reason")

    def __init__(self) -> None:
        self.reason: str | None = None
        self._waiter: asyncio.Future[Any] | None = None
        self._connection: _Connection | None = None
        self.on_fire: Callable[[str], object] | None = None

    def fire(self, reason: str) -> None:
        if self.reason is not None:
            return
        self.reason = reason
        if self._waiter is not None and self._connection is not None:
            _expire(self._waiter, self._connection, _Aborted())
        elif self.on_fire is not None:
            self.on_fire(reason)


class Forwarder:
    """Keep-alive pools per worker origin; ``start``/``stop`` bracket its use in the loop."""

    def __init__(self, *, connect_timeout_s: float = 1.0, max_idle_per_origin: int = 256) -> None:
        self.connect_timeout_s = connect_timeout_s
        self.max_idle = max_idle_per_origin
        self._idle: dict[tuple[str, int], list[_Connection]] = {}

    async def start(self) -> None:
        self._idle = {}

    async def stop(self) -> None:
        for pool in self._idle.values():
            for connection in pool:
                if connection.transport is not None:
                    connection.transport.close()
        self._idle = {}

    async def send(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None,
        headers: Mapping[str, str],
        timeout_s: float,
        abort: Abort | None = None,
    ) -> Reply:
        """One request; raises `BackendUnavailable` (`AttemptAborted` when ``abort`` fired)
        or `DeadlineExceeded`, nothing else. ``timeout_s`` bounds the whole exchange."""
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        lines = [f"{method} {target} HTTP/1.1\r\nHost: {host}:{port}\r\n".encode()]
        lines += [f"{name}: {value}\r\n".encode("latin-1") for name, value in headers.items()]
        lines.append(f"content-length: {len(body or b'')}\r\n\r\n".encode())
        payload = b"".join(lines) + (body or b"")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        connected = False
        try:
            for _ in range(2):
                connection, reused = await self._connection(host, port, deadline)
                connected = True
                if abort is not None and abort.reason is not None:
                    self._release(host, port, connection)
                    raise _Aborted()
                waiter = connection.start(payload)
                timer = loop.call_later(
                    max(0.0, deadline - loop.time()), _expire, waiter, connection, TimeoutError()
                )
                if abort is not None:
                    abort._waiter, abort._connection = waiter, connection
                try:
                    status, passed, reply, keep = await waiter
                except _StaleConnection:
                    if reused:
                        continue
                    raise ConnectionError(
                        "the worker closed the connection before answering"
                    ) from None
                except BaseException:
                    # NOTE: timed out, aborted or cancelled (the client left): the answer
                    # may still come, so the connection can never be reused.
                    _discard(connection)
                    raise
                finally:
                    timer.cancel()
                    if abort is not None:
                        abort._waiter = abort._connection = None
                if keep and not connection.closed:
                    self._release(host, port, connection)
                else:
                    _discard(connection)
                return Reply(status, passed, reply)
            raise ConnectionError("the worker closed two connections in a row before answering")
        except _Aborted:
            assert abort is not None
            raise AttemptAborted(f"gave up on worker at {host}:{port}: {abort.reason}") from None
        except TimeoutError:
            raise DeadlineExceeded(
                f"the worker did not answer within {timeout_s * 1000:.0f} ms"
            ) from None
        except OSError as exc:  # ConnectionError is an OSError
            raise BackendUnavailable(
                f"worker at {host}:{port} failed: {exc.__class__.__name__}: {exc}",
                "reset" if connected else "connect-failure",
            ) from None

    async def _connection(self, host: str, port: int, deadline: float) -> tuple[_Connection, bool]:
        pool = self._idle.get((host, port))
        while pool:
            connection = pool.pop()
            if not connection.closed:
                return connection, True
        loop = asyncio.get_running_loop()
        remaining = max(0.0, deadline - loop.time())
        budget = min(self.connect_timeout_s, remaining)
        try:
            _, connection = await asyncio.wait_for(
                loop.create_connection(_Connection, host, port), budget
            )
        except TimeoutError:
            if budget < self.connect_timeout_s:
                raise  # the request's own deadline ran out first
            raise ConnectionError(
                f"connect did not complete within {self.connect_timeout_s * 1000:.0f} ms"
            ) from None
        return connection, False

    def _release(self, host: str, port: int, connection: _Connection) -> None:
        pool = self._idle.setdefault((host, port), [])
        if len(pool) < self.max_idle:
            pool.append(connection)
        elif connection.transport is not None:
            connection.transport.close()
