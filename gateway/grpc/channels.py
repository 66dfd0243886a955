"""The gateway's gRPC client side: one ``grpc.aio`` channel per worker target, pooled.

A channel multiplexes every call to its worker over one HTTP/2 connection and reconnects
by itself; each call's multicallable is made once per channel (bytes in, bytes out: no
serializers). Channels of targets that left the worker set are closed when a new target
comes (`calls`), and all of them by `close`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from typing import Any

import grpc

from modelgate.core.proto.service import path

__all__ = ["Calls", "WorkerChannels"]

#: NOTE: no message size limits towards workers (the gateway bounds what clients send);
#: a short reconnect backoff, so that a worker restarted on its port is reached again
#: within about a second rather than after gRPC's default backoff of up to two minutes.
#: ``grpc.enable_retries`` off: retries are the data plane's, within its budget.
OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.max_receive_message_length", -1),
    ("grpc.max_send_message_length", -1),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.enable_retries", 0),
)


class Calls:
    """The unary calls of one worker's channel that the gateway makes."""

    __slots__ = ("channel", "infer", "metadata")

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.channel = channel
        self.infer: grpc.aio.UnaryUnaryMultiCallable = channel.unary_unary(path("ModelInfer"))
        self.metadata: grpc.aio.UnaryUnaryMultiCallable = channel.unary_unary(path("ModelMetadata"))


class WorkerChannels:
    """Channels by target (``host:port``); single event loop only."""

    def __init__(self, live: Callable[[], Collection[str]]) -> None:
        #: The targets of the current worker set, for pruning.
        self.live = live
        self._calls: dict[str, Calls] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def calls(self, target: str) -> Calls:
        calls = self._calls.get(target)
        if calls is None:
            calls = self._calls[target] = Calls(grpc.aio.insecure_channel(target, OPTIONS))
            self._prune(target)
        return calls

    def _prune(self, keep: str) -> None:
        live = set(self.live())
        for target in [t for t in self._calls if t not in live and t != keep]:
            task = asyncio.create_task(self._calls.pop(target).channel.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        calls, self._calls = self._calls, {}
        await asyncio.gather(*(c.channel.close() for c in calls.values()), *self._closing)
