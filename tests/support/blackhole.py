"""Blackholed workers on 127.0.0.1: addresses where a connect hangs, or where the
connection is accepted and nothing ever answers (a hung process, a blackholing proxy).

NOTE: no firewall rules or unroutable addresses: a connect hangs on Linux when the
listener's accept queue is full, so `HungConnect` listens with a backlog of 0 and fills it
with one connection of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket


class HungConnect:
    """A port whose connects neither complete nor fail (until `close`)."""

    def __init__(self) -> None:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(0)
        self.port: int = self._listener.getsockname()[1]
        self._filler = socket.create_connection(("127.0.0.1", self.port))
        self.url = f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._filler.close()
        self._listener.close()


class Silent:
    """An asyncio server that accepts every connection, reads what comes and never answers;
    ``paths`` records the path of the first request on each connection. Start and stop it
    on the test's loop."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.url = ""
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> Silent:
        self._server = await asyncio.start_server(self._swallow, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        if self._server is not None:
            await self._server.wait_closed()

    async def _swallow(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
                first = await reader.readuntil(b"\r\n")
                self.paths.append(first.decode("latin-1").split(" ")[1])
                while await reader.read(65536):
                    pass
        finally:
            self._writers.discard(writer)
            writer.close()
