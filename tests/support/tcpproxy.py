"""A TCP proxy a test can kill to cut a service off (``python -m tests.support.tcpproxy L H P``).

Killing it drops every connection through it at once, as a network partition or a stopped
server would look from the gateway's side (connections refused from then on). SIGUSR1
blackholes it instead: every connection stays open and nothing more passes either way,
new connections are accepted and never answered, as a silent partition (packets dropped)
looks. SIGUSR2 heals it: the blackholed connections are closed, new ones pass again.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys


class Proxy:
    """Forwards ``127.0.0.1:listen`` to ``host:port``, or blackholes (see the module)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.blackholed = False
        #: Every open client-side writer, with whether it was cut by a blackhole.
        self.open: dict[asyncio.StreamWriter, bool] = {}

    def blackhole(self) -> None:
        self.blackholed = True
        for writer in self.open:
            self.open[writer] = True

    def heal(self) -> None:
        self.blackholed = False
        for writer, cut in list(self.open.items()):
            if cut:
                writer.transport.abort()

    async def pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        client: asyncio.StreamWriter,
    ) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while chunk := await reader.read(65536):
                if self.open.get(client, True):
                    continue  # blackholed: swallowed
                writer.write(chunk)
                await writer.drain()
        writer.close()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open[writer] = self.blackholed
        try:
            if self.blackholed:
                with contextlib.suppress(ConnectionError, OSError):
                    while await reader.read(65536):
                        pass
                return
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection(
                    self.host, self.port
                )
            except OSError:
                return
            await asyncio.gather(
                self.pipe(reader, upstream_writer, writer),
                self.pipe(upstream_reader, writer, writer),
            )
        finally:
            self.open.pop(writer, None)
            writer.close()


async def main(listen: int, host: str, port: int) -> None:
    proxy = Proxy(host, port)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, proxy.blackhole)
    loop.add_signal_handler(signal.SIGUSR2, proxy.heal)
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", listen)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3])))
