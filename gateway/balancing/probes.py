"""Active health probes: each worker's per-version ready endpoint, every few seconds.

A failed probe takes that version of that worker out of rotation until a probe succeeds,
and tells ``on_unready`` (the data plane, which abandons the requests in flight there that
can go elsewhere); a success also ends an outlier ejection early. Probes run off the
request path with httpx, each bounded by ``timeout_s``, so a hung worker is found within
about ``interval_s + timeout_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping

import httpx

from gateway.balancing.balancer import Balancer, WorkerInfo

__all__ = ["Prober"]

log = logging.getLogger("modelgate.gateway.probes")


class Prober:
    def __init__(
        self,
        balancer: Balancer,
        *,
        interval_s: float = 2.0,
        timeout_s: float = 1.0,
        on_unready: Callable[[str, str, str], None] | None = None,
    ) -> None:
        self.balancer = balancer
        #: Called with (worker id, model, version) on every failed probe; must not block.
        self.on_unready = on_unready
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.workers: Mapping[str, WorkerInfo] = {}
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None
        self.failing: set[tuple[str, str, str]] = set()

    async def start(self) -> None:
        self._client = httpx.AsyncClient(timeout=self.timeout_s)
        self._task = asyncio.create_task(self._run(), name="prober")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._client is not None:
            await self._client.aclose()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self.probe_all()

    async def probe_all(self) -> None:
        keys = {(w.id, m, v) for w in self.workers.values() for m, v in w.ready}
        # NOTE: forget verdicts on versions no longer announced: a worker that left while
        # failing and came back under its id must be judged afresh.
        self.failing &= keys
        checks = [
            self._probe(worker, model, version)
            for worker in self.workers.values()
            for model, version in worker.ready
        ]
        if checks:
            await asyncio.gather(*checks)

    async def _probe(self, worker: WorkerInfo, model: str, version: str) -> None:
        assert self._client is not None
        key = (worker.id, model, version)
        try:
            url = f"{worker.url}/v2/models/{model}/versions/{version}/ready"
            ok = (await self._client.get(url)).status_code == 200
        except httpx.HTTPError:
            ok = False
        if ok:
            if key in self.failing:
                # NOTE: readmit only a worker whose probes had failed (it was down and is back);
                # one that answers /ready but fails inference stays ejected for its full term.
                self.failing.discard(key)
                log.info("probe: %s serves %s@%s again", worker.id, model, version)
                self.balancer.mark_ready(worker.id, model, version)
                self.balancer.readmit(worker.id)
            return
        if key not in self.failing:
            self.failing.add(key)
            log.warning("probe: %s does not serve %s@%s", worker.id, model, version)
        # NOTE: on every failed probe, not only the first: a new announcement of the
        # worker's ready set clears the balancer's verdict, and attempts that could not be
        # moved last time (no retry slot) may be movable now. Both calls are idempotent.
        self.balancer.mark_unready(worker.id, model, version)
        if self.on_unready is not None:
            self.on_unready(worker.id, model, version)
