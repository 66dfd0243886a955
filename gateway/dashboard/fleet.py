"""The workers as the dashboard shows them: the balancer's view (ready, in flight, EWMA
latency, ejection) joined with each worker's announcement and its latest ejection's reason.

Pure functions of what the gateway already holds in memory (`Balancer.snapshot`,
`Balancer.ejections`, `WorkerDirectory.announcements`); nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from gateway.balancing.balancer import WorkerInfo
from gateway.balancing.outliers import (
    CONSECUTIVE_FAILURES,
    FAILURE_PERCENTAGE,
    REMOTE,
    Ejection,
    EjectionRules,
)
from modelgate.core.announce import SERVING_STATES, Announcement

__all__ = ["describe_ejection", "worker_rows"]


def describe_ejection(ejection: Ejection, rules: EjectionRules) -> str:
    """One sentence saying why a worker was ejected, in the rules' own figures."""
    if ejection.reason == CONSECUTIVE_FAILURES:
        why = f"{rules.consecutive_failures} failed requests in a row"
    elif ejection.reason == FAILURE_PERCENTAGE:
        why = (
            f"at least {rules.failure_percentage_threshold:g}% of its requests failed over "
            f"{rules.failure_percentage_interval_s:g} s"
        )
    elif ejection.reason == REMOTE:
        why = "ejected by another gateway replica"
    else:
        why = ejection.reason.replace("_", " ")
    if ejection.remote and ejection.reason != REMOTE:
        why += " (seen by another gateway replica)"
    times = "" if ejection.count <= 1 else f", ejection #{ejection.count}"
    return f"{why}; out for {ejection.duration_s:.0f} s{times}"


def _latest_ejections(ejections: Iterable[Ejection]) -> dict[str, Ejection]:
    latest: dict[str, Ejection] = {}
    for event in ejections:  # oldest first: the last one wins
        latest[event.worker_id] = event
    return latest


def _status(row: Mapping[str, Any], announced: Announcement | None, unready: list[str]) -> str:
    if row["ejected_for_s"] is not None and row["ejected_for_s"] > 0:
        return "ejected"
    if announced is not None and announced.state not in SERVING_STATES:
        return announced.state
    if row["ready"]:
        return "degraded" if unready else "ready"
    if unready:
        return "unready"
    return "loading"


def worker_rows(
    balancer_rows: Sequence[Mapping[str, Any]],
    ejections: Iterable[Ejection],
    rules: EjectionRules,
    announcements: Mapping[str, Announcement],
    infos: Mapping[str, WorkerInfo],
) -> list[dict[str, Any]]:
    """One row per worker the balancer routes to, sorted by id.

    ``status`` is ``ejected`` (with ``ejection``, the reason), the announced state when the
    worker is not serving (``draining``, ``stopped``), ``ready``, ``degraded`` (some of what
    it announces ready, probes find not ready), ``unready`` (none of it) or ``loading``.
    """
    latest = _latest_ejections(ejections)
    rows: list[dict[str, Any]] = []
    for row in balancer_rows:
        worker_id = str(row["id"])
        announced = announcements.get(worker_id)
        info = infos.get(worker_id)
        claimed = sorted(f"{m}@{v}" for m, v in info.ready) if info is not None else []
        unready = [ref for ref in claimed if ref not in row["ready"]]
        status = _status(row, announced, unready)
        ejection = latest.get(worker_id)
        loaded = (
            [{"ref": f"{e.model}@{e.version}", "ready": e.ready} for e in announced.loaded]
            if announced is not None
            else [{"ref": ref, "ready": True} for ref in claimed]
        )
        rows.append(
            {
                "id": worker_id,
                "url": row["url"],
                "status": status,
                "external": bool(info is not None and info.external),
                "ready": list(row["ready"]),
                "probe_unready": unready,
                "loaded": loaded,
                "in_flight": row["in_flight"],
                "capacity": row["capacity"],
                "queue_depth": announced.queue_depth if announced is not None else None,
                "device": announced.device if announced is not None else None,
                "ewma_ms": None if row["ewma_ms"] is None else round(row["ewma_ms"], 3),
                "weight": round(float(row["weight"]), 3),
                "consecutive_failures": row["consecutive_failures"],
                "ejection_count": row["ejection_count"],
                "ejected_for_s": (
                    None if status != "ejected" else round(float(row["ejected_for_s"]), 1)
                ),
                "ejection": (
                    describe_ejection(ejection, rules)
                    if status == "ejected" and ejection is not None
                    else None
                ),
                "last_seen": announced.last_seen.isoformat() if announced is not None else None,
            }
        )
    return rows
