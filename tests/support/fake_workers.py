"""Fake workers at the network edge: tiny asyncio HTTP/1.1 servers on 127.0.0.1 whose
answer a test sets (an OIP reply, any status, a hang, a dropped connection), recording
which of them got each request. Also a bounded condition wait for async tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.support.net import free_port

#: ``FakeWorker.mode``: "ok" (200, an OIP body), "hang" (answer 200 only once `release`
#: is called), "close" (drop the connection unanswered) or an int status to answer.
Mode = str | int

_REASONS = {200: b"OK", 500: b"Internal Server Error", 503: b"Service Unavailable"}


async def until(check: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    """Yield to the loop until ``check()`` holds; raise `TimeoutError` naming ``what``.

    NOTE: a bound, not a synchronisation: it returns the moment the condition holds.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not check():
        if loop.time() >= deadline:
            raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.005)


def refused_url() -> str:
    """A base URL on a reserved port nothing listens on: connecting to it is refused."""
    return f"http://127.0.0.1:{free_port()}"


@dataclass
class FakeWorker:
    """One fake worker; ``log`` is shared between fakes to record the order of attempts."""

    name: str
    mode: Mode = "ok"
    log: list[str] = field(default_factory=list)
    #: Paths and lower-cased headers of every request this fake received, in order.
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    #: Path → (status, JSON document) this fake answers there, whatever ``mode`` says.
    answers: dict[str, tuple[int, object]] = field(default_factory=dict)
    url: str = ""
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    _released: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> FakeWorker:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    def release(self) -> None:
        """Let every hanging request (now and later) be answered."""
        self._released.set()

    async def stop(self) -> None:
        self.release()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for writer in list(self._writers):
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    @property
    def hits(self) -> int:
        return len(self.requests)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while await self._one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False
        first, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        await reader.readexactly(int(headers.get("content-length", "0")))
        path = first.split(" ")[1]
        self.requests.append((path, headers))
        self.log.append(self.name)
        if path in self.answers:
            writer.write(_response(*self.answers[path]))
            await writer.drain()
            return True
        mode = self.mode
        if mode == "close":
            return False
        if mode == "hang":
            await self._released.wait()
            mode = "ok"
        status = 200 if mode == "ok" else int(mode)
        writer.write(self._answer(path, status))
        await writer.drain()
        return True

    def _answer(self, path: str, status: int) -> bytes:
        # /v2/models/{model}/versions/{version}/infer
        parts = path.split("/")
        if status == 200:
            doc: dict[str, object] = {
                "model_name": parts[3],
                "model_version": parts[5],
                "id": self.name,
                "outputs": [{"name": "y", "datatype": "FP32", "shape": [1], "data": [1.0]}],
            }
        else:
            doc = {"error": f"{self.name} answers {status}"}
        return _response(status, doc)


def _response(status: int, doc: object) -> bytes:
    body = json.dumps(doc).encode()
    reason = _REASONS.get(status, b"Status")
    return b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
        status,
        reason,
        len(body),
        body,
    )
