"""Child processes a test can stop and start again on the same (reserved) port: a private
redis-server, the PostgreSQL TCP proxy."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime

import redis
from sqlalchemy.engine import make_url

from modelgate.core.announce import decode
from tests.support.isolation import KEYS
from tests.support.net import ROOT, free_port, listening, poll_until


class Service:
    """A server process on a port reserved for the run (`tests.support.net.free_port`).

    ``start`` returns once the port accepts connections (neither redis-server nor the
    proxy says so on its output reliably); ``stop`` kills it, as a crash or a partition
    would look from its clients.
    """

    def __init__(self, args: list[str], port: int) -> None:
        self.args, self.port = args, port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout_s: float = 20.0) -> None:
        process = self.process = subprocess.Popen(self.args, cwd=ROOT)
        poll_until(
            lambda: listening(self.port, process), f"{self.args[0]} on {self.port}", timeout_s
        )

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


def redis_server(port: int | None = None) -> Service:
    """A throwaway redis-server: no persistence, so a restart starts empty."""
    port = port or free_port()
    args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--loglevel", "warning", "--logfile", ""]  # fmt: skip
    return Service(args, port)


class Proxy(Service):
    """`tests.support.tcpproxy`: `stop` refuses, `blackhole` swallows, `heal` undoes that."""

    def blackhole(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGUSR1)

    def heal(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGUSR2)


def tcp_proxy(host: str, port: int) -> Proxy:
    """A TCP proxy to ``host:port`` (`tests.support.tcpproxy`) on a reserved port."""
    listen = free_port()
    args = [sys.executable, "-m", "tests.support.tcpproxy", str(listen), host, str(port)]
    return Proxy(args, listen)


@contextmanager
def redis_and_proxied_postgres(database_url: str) -> Iterator[tuple[Service, Proxy, str]]:
    """A private Redis, a proxy to the PostgreSQL of ``database_url``, and that URL through
    the proxy; both stopped on exit."""
    database = make_url(database_url)
    redis_service = redis_server()
    proxy = tcp_proxy(database.host or "127.0.0.1", database.port or 5432)
    redis_service.start()
    proxy.start()
    try:
        proxied = database.set(host="127.0.0.1", port=proxy.port)
        yield redis_service, proxy, proxied.render_as_string(hide_password=False)
    finally:
        redis_service.stop()
        proxy.stop()


def redis_heartbeats(port: int, workers: Iterable[str]) -> dict[str, datetime]:
    """Each of ``workers``' last heartbeat in the Redis on ``port`` (none when it is down)."""
    client = redis.Redis(port=port, socket_timeout=2)
    try:
        found = {}
        for worker in workers:
            data = client.get(KEYS.worker(worker))
            if data is not None:
                found[worker] = decode(data).last_seen
        return found
    except redis.ConnectionError:
        return {}
    finally:
        client.close()
