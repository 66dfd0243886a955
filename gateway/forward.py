"""The forwarding client: bytes in, bytes out, over a keep-alive pool (aiohttp).

NOTE: aiohttp, not httpx: the issue's measurements on this machine put a default
``httpx.AsyncClient`` at 0.04-0.09x a direct call and a minimal aiohttp proxy at 0.45x
(encode/httpx#3215); bench/bench_gateway.py compares them again. httpx stays the client of
the CLI, probes and tests. Transport failures are translated here, once, to
`BackendUnavailable` (retryable elsewhere) or `DeadlineExceeded`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp

from gateway.errors import BackendUnavailable, DeadlineExceeded

__all__ = ["Forwarder", "Reply"]

#: Response headers passed back to the client (everything else is the gateway's own).
PASSED_BACK = ("content-type", "inference-header-content-length", "content-encoding")


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


class Forwarder:
    """One pooled client session per gateway process; ``start`` inside the event loop."""

    def __init__(self, *, connect_timeout_s: float = 1.0) -> None:
        self.connect_timeout_s = connect_timeout_s
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30, ttl_dns_cache=300)
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Content-Type", "Accept-Encoding"),
        )

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None,
        headers: Mapping[str, str],
        timeout_s: float,
    ) -> Reply:
        """One attempt; raises `BackendUnavailable` or `DeadlineExceeded`, never aiohttp's."""
        assert self._session is not None, "Forwarder.start() was not awaited"
        timeout = aiohttp.ClientTimeout(
            total=timeout_s, connect=min(self.connect_timeout_s, timeout_s)
        )
        try:
            async with self._session.request(
                method, url, data=body, headers=headers, timeout=timeout
            ) as response:
                payload = await response.read()
                passed = [
                    (name.encode(), value.encode())
                    for name in PASSED_BACK
                    if (value := response.headers.get(name)) is not None
                ]
                return Reply(response.status, passed, payload)
        except TimeoutError:
            raise DeadlineExceeded(
                f"the worker did not answer within {timeout_s * 1000:.0f} ms"
            ) from None
        except (aiohttp.ClientError, OSError, asyncio.IncompleteReadError) as exc:
            raise BackendUnavailable(
                f"worker at {url.split('/v2')[0]} failed: {exc.__class__.__name__}: {exc}"
            ) from None
