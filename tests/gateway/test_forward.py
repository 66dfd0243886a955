"""The forwarding client against tiny HTTP servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from gateway.errors import AttemptAborted, BackendUnavailable, DeadlineExceeded
from gateway.forward import Abort, Forwarder
from tests.support.blackhole import HungConnect
from tests.support.net import free_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        ),
        0,
    )
    return await reader.readexactly(length)


@pytest.fixture
async def server() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    servers: list[asyncio.Server] = []

    async def start(handler: Handler) -> str:
        async def closing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await handler(reader, writer)
            finally:
                writer.close()
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()

        srv = await asyncio.start_server(closing, "127.0.0.1", 0)
        servers.append(srv)
        return f"http://127.0.0.1:{srv.sockets[0].getsockname()[1]}"

    yield start
    for srv in servers:
        srv.close()
        await srv.wait_closed()


async def test_content_length_and_chunked_replies_on_one_kept_connection(
    server: Callable[[Handler], Awaitable[str]],
) -> None:
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        body = await read_request(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-other: no\r\n"
            b"inference-header-content-length: 2\r\ncontent-length: %d\r\n\r\n%s"
            % (len(body), body)
        )
        await read_request(reader)
        writer.write(
            b"HTTP/1.1 503 Service Unavailable\r\ntransfer-encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
        )
        await writer.drain()
        await reader.read()

    url = await server(handler)
    forwarder = Forwarder()
    await forwarder.start()
    first = await forwarder.send("POST", f"{url}/v2/x", body=b"{}xy", headers={}, timeout_s=5)
    assert (first.status, first.body) == (200, b"{}xy")
    assert first.headers == [
        (b"content-type", b"application/json"),
        (b"inference-header-content-length", b"2"),
    ]
    second = await forwarder.send("POST", f"{url}/v2/x", body=b"", headers={}, timeout_s=5)
    assert (second.status, second.body) == (503, b"abcde")
    assert connections == 1
    await forwarder.stop()


async def test_a_stale_idle_connection_is_replaced_transparently(
    server: Callable[[Handler], Awaitable[str]],
) -> None:
    async def answer_once_then_close(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        await asyncio.sleep(0)
        writer.close()  # the keep-alive connection dies while idle in the pool

    url = await server(answer_once_then_close)
    forwarder = Forwarder()
    await forwarder.start()
    for _ in range(3):
        reply = await forwarder.send("POST", f"{url}/v2/x", body=b"a", headers={}, timeout_s=5)
        assert reply.body == b"ok"
    await forwarder.stop()


async def test_refused_dropped_and_late_answers_are_translated(
    server: Callable[[Handler], Awaitable[str]],
) -> None:
    forwarder = Forwarder()
    await forwarder.start()
    with pytest.raises(BackendUnavailable, match="failed"):  # reserved: nothing listens there
        await forwarder.send(
            "POST", f"http://127.0.0.1:{free_port()}/v2/x", body=b"", headers={}, timeout_s=5
        )

    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\npart")
        await writer.drain()
        writer.close()

    with pytest.raises(BackendUnavailable, match="closed the connection mid-answer"):
        await forwarder.send(
            "POST", f"{await server(drop)}/v2/x", body=b"", headers={}, timeout_s=5
        )

    release = asyncio.Event()

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await release.wait()
        writer.close()

    with pytest.raises(DeadlineExceeded):
        await forwarder.send(
            "POST", f"{await server(slow)}/v2/x", body=b"", headers={}, timeout_s=0.05
        )
    release.set()
    await forwarder.stop()


async def test_a_connect_that_hangs_is_the_workers_failure_not_the_deadline() -> None:
    hung = HungConnect()
    forwarder = Forwarder(connect_timeout_s=0.1)
    try:
        with pytest.raises(BackendUnavailable, match="connect did not complete") as caught:
            await forwarder.send("POST", f"{hung.url}/v2/x", body=b"", headers={}, timeout_s=5)
        assert caught.value.condition == "connect-failure"
        # Cut short by the request's own remaining time, it is the client's deadline.
        with pytest.raises(DeadlineExceeded):
            await forwarder.send("POST", f"{hung.url}/v2/x", body=b"", headers={}, timeout_s=0.05)
    finally:
        hung.close()
        await forwarder.stop()


async def test_refused_is_a_connect_failure_and_a_drop_is_a_reset(
    server: Callable[[Handler], Awaitable[str]],
) -> None:
    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)

    forwarder = Forwarder()
    refused_at = f"http://127.0.0.1:{free_port()}/v2/x"
    dropped_at = f"{await server(drop)}/v2/x"
    with pytest.raises(BackendUnavailable) as refused:
        await forwarder.send("POST", refused_at, body=b"", headers={}, timeout_s=5)
    with pytest.raises(BackendUnavailable) as dropped:
        await forwarder.send("POST", dropped_at, body=b"", headers={}, timeout_s=5)
    assert (refused.value.condition, dropped.value.condition) == ("connect-failure", "reset")
    await forwarder.stop()


async def test_an_abort_ends_the_send_at_once_and_closes_its_connection(
    server: Callable[[Handler], Awaitable[str]],
) -> None:
    received = asyncio.Event()
    closed = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        received.set()
        await reader.read()  # until the gateway closes its end
        closed.set()

    forwarder = Forwarder()
    abort = Abort()
    url = f"{await server(silent)}/v2/x"
    send = asyncio.create_task(
        forwarder.send("POST", url, body=b"", headers={}, timeout_s=30, abort=abort)
    )
    await asyncio.wait_for(received.wait(), 5)
    abort.fire("probes found it unready")
    with pytest.raises(AttemptAborted, match="probes found it unready") as caught:
        await asyncio.wait_for(send, 1)
    assert caught.value.condition == "unready"
    await asyncio.wait_for(closed.wait(), 5)
    abort.fire("again")  # after the send: nothing happens
    await forwarder.stop()


async def test_a_cancelled_send_closes_its_connection_instead_of_pooling_it(
    server: Callable[[Handler], Awaitable[str]],
) -> None:
    received = asyncio.Event()
    closed = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        received.set()
        await reader.read()
        closed.set()

    forwarder = Forwarder()
    send = asyncio.create_task(
        forwarder.send("POST", f"{await server(silent)}/v2/x", body=b"", headers={}, timeout_s=30)
    )
    await asyncio.wait_for(received.wait(), 5)
    send.cancel()
    with pytest.raises(asyncio.CancelledError):
        await send
    await asyncio.wait_for(closed.wait(), 5)
    await forwarder.stop()
