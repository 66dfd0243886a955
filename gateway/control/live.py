"""The running gateway's view for admin answers: balancer health, worker choice explained."""

from __future__ import annotations

from typing import Any

from gateway.control.discovery import WorkerDirectory
from gateway.routing import RoutingTable

__all__ = ["Live"]


class Live:
    def __init__(self, table: RoutingTable, directory: WorkerDirectory) -> None:
        self.table = table
        self.directory = directory

    def worker_health(self) -> dict[str, dict[str, Any]]:
        return {row["id"]: row for row in self.table.balancer.snapshot()}

    def has_ready(self, model: str, version: str) -> bool:
        return self.table.balancer.has_ready(model, version)

    def explain_worker(self, model: str, version: str) -> tuple[str | None, list[str]]:
        """The worker the balancer ranks first now (without picking, so explaining changes
        no balancing state), and each candidate's state."""
        wanted = f"{model}@{version}"
        rows = [r for r in self.table.balancer.snapshot() if wanted in r["ready"]]
        best = self.table.balancer.least_loaded(model, version)
        if best is None:
            return None, [f"worker: none can serve {wanted} now"]
        lines = [
            f"worker {r['id']}: in_flight={r['in_flight']} ewma_ms={r['ewma_ms']} "
            f"weight={r['weight']} ejected_until={r['ejected_until']}"
            for r in rows
        ]
        return best, [*lines, f"worker {best} is the least loaded eligible"]
