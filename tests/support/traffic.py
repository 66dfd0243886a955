"""Client loops against a gateway for end-to-end tests: requests at a fixed concurrency from
entering until leaving the block, each answer kept with the index it was sent under, so a
test can tell what was sent after a step (``mark``) and count every failure. `Loop` sends
over HTTP, `GrpcLoop` over gRPC.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self

import grpc
import httpx

from modelgate.core.proto import inference_pb2 as pb
from modelgate.core.proto.service import path as grpc_path


class _Loop:
    """``concurrency`` tasks sending `_send` until exit; the answers in `answers`."""

    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        self.sent = 0
        self.answers: list[tuple[int, Any]] = []
        self._answered = asyncio.Condition()
        self._stop = False
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Self:
        self._tasks = [asyncio.create_task(self._run()) for _ in range(self.concurrency)]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop = True
        await asyncio.gather(*self._tasks)
        await self._close()

    async def _send(self) -> Any:
        raise NotImplementedError

    async def _close(self) -> None:
        raise NotImplementedError

    async def _run(self) -> None:
        while not self._stop:
            index = self.sent
            self.sent += 1
            answer = await self._send()
            async with self._answered:
                self.answers.append((index, answer))
                self._answered.notify_all()

    def mark(self) -> int:
        """The index of the next request to be sent: everything from it on is "after"."""
        return self.sent

    async def until(self, count: int, timeout_s: float = 60.0) -> None:
        """Until at least ``count`` answers are in (bounded)."""
        async with self._answered:
            await asyncio.wait_for(
                self._answered.wait_for(lambda: len(self.answers) >= count), timeout_s
            )

    async def more(self, count: int, timeout_s: float = 60.0) -> None:
        """Until ``count`` more answers than now are in (bounded)."""
        await self.until(len(self.answers) + count, timeout_s)

    def ordered(self) -> list[Any]:
        """Every answer, in the order the requests were sent."""
        return [answer for _, answer in sorted(self.answers, key=lambda a: a[0])]


class Loop(_Loop):
    """``concurrency`` tasks POSTing ``body()`` to ``path`` (with ``headers``) until exit.

    A request that raises (connection reset, timeout) is kept as its error text, so a test
    counts it as a failure instead of losing it.
    """

    answers: list[tuple[int, httpx.Response | str]]

    def __init__(
        self,
        base_url: str,
        path: str,
        body: Callable[[], Any],
        *,
        concurrency: int = 2,
        headers: dict[str, str] | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        super().__init__(concurrency)
        self.path, self.body = path, body
        self.headers = headers or {}
        self._client = httpx.AsyncClient(base_url=base_url, timeout=timeout_s)

    async def _send(self) -> httpx.Response | str:
        try:
            return await self._client.post(self.path, json=self.body(), headers=self.headers)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"

    async def _close(self) -> None:
        await self._client.aclose()

    def failures(self) -> list[str]:
        """Each answer that is not a 200, as ``"<status> <body>"`` or the error raised."""
        return [
            answer if isinstance(answer, str) else f"{answer.status_code} {answer.text[:200]}"
            for _, answer in self.answers
            if isinstance(answer, str) or answer.status_code != 200
        ]


@dataclass(frozen=True)
class GrpcAnswer:
    """A served ModelInfer call: the response and the trailing metadata naming what served."""

    response: pb.ModelInferResponse
    metadata: dict[str, str]

    @property
    def version(self) -> str:
        return self.response.model_version

    @property
    def backend(self) -> str:
        return self.metadata.get("x-backend", "")


class GrpcLoop(_Loop):
    """`Loop` over gRPC: ``ModelInfer`` calls of ``request()`` to ``target`` (with
    ``metadata``). An answer is a `GrpcAnswer`, or a failed call as ``"<CODE> <details>"``.
    """

    answers: list[tuple[int, GrpcAnswer | str]]

    def __init__(
        self,
        target: str,
        request: Callable[[], pb.ModelInferRequest],
        *,
        concurrency: int = 2,
        metadata: dict[str, str] | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        super().__init__(concurrency)
        self.request, self.timeout_s = request, timeout_s
        self.metadata = tuple((metadata or {}).items())
        self._channel = grpc.aio.insecure_channel(target)
        self._infer = self._channel.unary_unary(
            grpc_path("ModelInfer"),
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=pb.ModelInferResponse.FromString,
        )

    async def _send(self) -> GrpcAnswer | str:
        call = self._infer(self.request(), metadata=self.metadata, timeout=self.timeout_s)
        try:
            response = await call
            trailing = await call.trailing_metadata()
        except grpc.aio.AioRpcError as exc:
            return f"{exc.code().name} {exc.details()}"
        return GrpcAnswer(response, {k: v for k, v in trailing if isinstance(v, str)})

    async def _close(self) -> None:
        await self._channel.close()

    def failures(self) -> list[str]:
        """Each call that failed, as ``"<CODE> <details>"``."""
        return [answer for _, answer in self.answers if isinstance(answer, str)]
