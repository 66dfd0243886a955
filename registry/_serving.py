"""Whether each arm of a traffic policy can serve now, and if not, why.

Shared by ``GET .../traffic`` and resolve-explain: an arm on a yanked version, on a version
without a ready worker (on a gateway, from its live view), or with weight 0 gets no
traffic, and the answer says so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from registry.models import VersionStatus

__all__ = ["NO_READY_WORKER", "YANKED", "mark_arms", "not_serving_note"]

YANKED = "yanked"
NO_READY_WORKER = "no ready worker"
WEIGHT_ZERO = "weight 0"


def mark_arms(
    arms: Sequence[Mapping[str, Any]],
    status_of: Mapping[str, str],
    ready: Callable[[str], bool] | None,
) -> list[dict[str, Any]]:
    """Copies of ``arms`` with ``serving`` (bool) and ``reason`` (None while serving).

    ``status_of`` maps each version to its status; ``ready`` is the gateway's readiness
    (None off a gateway, where only the registry's own reasons are known)."""
    marked: list[dict[str, Any]] = []
    for arm in arms:
        version = str(arm["version"])
        reason: str | None = None
        if status_of.get(version) == VersionStatus.YANKED:
            reason = YANKED
        elif ready is not None and not ready(version):
            reason = NO_READY_WORKER
        elif int(arm["weight"]) <= 0:
            reason = WEIGHT_ZERO
        marked.append({**arm, "serving": reason is None, "reason": reason})
    return marked


def not_serving_note(marked: Sequence[Mapping[str, Any]]) -> str:
    """``" (not serving: 1.1.0 no ready worker)"``, or ``""`` when every arm serves."""
    idle = [f"{a['version']} {a['reason']}" for a in marked if not a["serving"]]
    return f" (not serving: {'; '.join(idle)})" if idle else ""
