"""Shadow copies: a fraction of a model's requests sent, fire-and-forget, to another
version as well (`TrafficPolicy.shadow`). A copy never touches the client's answer; at most
``shadow_max_in_flight`` run at once (more are dropped and counted), and each counts in the
balancer like any attempt."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from gateway.balancing.balancer import Outcome
from gateway.metrics import GatewayMetrics
from gateway.routing import RoutingTable
from gateway.settings import GatewaySettings
from gateway.transport import Transport

__all__ = ["Shadows"]

log = logging.getLogger("modelgate.gateway")
#: (transport, model, version, workers not to pick) → a worker; raises `NoReadyWorker`.
Pick = Callable[[Transport, str, str, set[str]], str]


class Shadows:
    """The shadow copies in flight (``tasks``, awaited by tests)."""

    def __init__(
        self, table: RoutingTable, settings: GatewaySettings, metrics: GatewayMetrics, pick: Pick
    ) -> None:
        self.table = table
        self.settings = settings
        self.metrics = metrics
        self.pick = pick
        self.tasks: set[asyncio.Task[None]] = set()

    def send(
        self, transport: Transport, model: str, version: str, headers: dict[str, str], body: bytes
    ) -> None:
        if len(self.tasks) >= self.settings.shadow_max_in_flight:
            self.metrics.shadow.labels(model, version, "dropped").inc()
            return
        task = asyncio.create_task(self._copy(transport, model, version, headers, body))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _copy(
        self, transport: Transport, model: str, version: str, headers: dict[str, str], body: bytes
    ) -> None:
        balancer = self.table.balancer
        try:
            worker = self.pick(transport, model, version, set(transport.unreachable))
            balancer.started(worker)
            sent = time.monotonic()
            try:
                reply = await transport.send(
                    worker, model, version, headers, body, self.settings.request_timeout_s
                )
            except Exception:
                balancer.finished(worker, time.monotonic() - sent, Outcome.UNAVAILABLE)
                raise
            ok = reply.status < 500
            balancer.finished(
                worker, time.monotonic() - sent, Outcome.OK if ok else Outcome.FAILURE
            )
            self.metrics.shadow.labels(
                model, version, "ok" if reply.status == 200 else str(reply.status)
            ).inc()
        except Exception as exc:
            self.metrics.shadow.labels(model, version, "failed").inc()
            log.debug("shadow copy to %s@%s failed: %s", model, version, exc)
