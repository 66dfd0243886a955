"""Client loops against a gateway for end-to-end tests: requests at a fixed concurrency from
entering until leaving the block, each answer kept with the index it was sent under, so a
test can tell what was sent after a step (``mark``) and count every failure.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx


class Loop:
    """``concurrency`` tasks POSTing ``body()`` to ``path`` (with ``headers``) until exit.

    A request that raises (connection reset, timeout) is kept as its error text, so a test
    counts it as a failure instead of losing it.
    """

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
        self.path, self.body, self.concurrency = path, body, concurrency
        self.headers = headers or {}
        self.sent = 0
        self.answers: list[tuple[int, httpx.Response | str]] = []
        self._answered = asyncio.Condition()
        self._stop = False
        self._tasks: list[asyncio.Task[None]] = []
        self._client = httpx.AsyncClient(base_url=base_url, timeout=timeout_s)

    async def __aenter__(self) -> Loop:
        self._tasks = [asyncio.create_task(self._run()) for _ in range(self.concurrency)]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop = True
        await asyncio.gather(*self._tasks)
        await self._client.aclose()

    async def _run(self) -> None:
        while not self._stop:
            index = self.sent
            self.sent += 1
            answer: httpx.Response | str
            try:
                answer = await self._client.post(self.path, json=self.body(), headers=self.headers)
            except httpx.HTTPError as exc:
                answer = f"{type(exc).__name__}: {exc}"
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

    def ordered(self) -> list[httpx.Response | str]:
        """Every answer, in the order the requests were sent."""
        return [answer for _, answer in sorted(self.answers, key=lambda a: a[0])]

    def failures(self) -> list[str]:
        """Each answer that is not a 200, as ``"<status> <body>"`` or the error raised."""
        return [
            answer if isinstance(answer, str) else f"{answer.status_code} {answer.text[:200]}"
            for _, answer in self.answers
            if isinstance(answer, str) or answer.status_code != 200
        ]
