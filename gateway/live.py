"""The running gateway's view for admin answers: balancer health, worker choice explained."""

from __future__ import annotations

from typing import Any

from gateway.discovery import WorkerDirectory
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
        """The least-loaded eligible worker now (by the balancer's state, without picking,
        so explaining changes no balancing state), and each candidate's state."""
        wanted = f"{model}@{version}"
        rows = [r for r in self.table.balancer.snapshot() if wanted in r["ready"]]
        if not rows:
            return None, [f"worker: none has {model}@{version} loaded and ready"]
        healthy = [r for r in rows if r["ejected_until"] is None] or rows
        best = min(
            healthy, key=lambda r: ((r["in_flight"] + 1) * (r["ewma_ms"] or 1.0)) / r["weight"]
        )
        lines = [
            f"worker {r['id']}: in_flight={r['in_flight']} ewma_ms={r['ewma_ms']} "
            f"weight={r['weight']} ejected_until={r['ejected_until']}"
            for r in rows
        ]
        return str(best["id"]), [*lines, f"worker {best['id']} is the least loaded eligible"]
