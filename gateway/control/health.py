"""Which outside dependencies are failing now; the gateway serves on, degraded."""

from __future__ import annotations

import logging

__all__ = ["Health"]

log = logging.getLogger("modelgate.gateway.health")


class Health:
    """Which outside dependencies (named components: ``database``, ``redis``) are failing
    now; the gateway serves on, degraded.

    A component may be checked by several loops (the registry sync and worker discovery
    both read the database); each reports under its own ``check`` name, and the component
    is degraded while any of its checks fails. The log says each change of a check's state
    once (failing with a new message, recovered), never the same failure every poll.
    """

    def __init__(self) -> None:
        self._failing: dict[tuple[str, str], str] = {}

    def fail(self, component: str, message: str, check: str | None = None) -> None:
        key = (component, check or component)
        if self._failing.get(key) != message:
            log.warning("%s degraded: %s", component, message)
        self._failing[key] = message

    def ok(self, component: str, check: str | None = None) -> None:
        if self._failing.pop((component, check or component), None) is not None:
            log.info("%s recovered (%s)", component, check or component)

    @property
    def problems(self) -> dict[str, str]:
        """Each degraded component with what its failing checks say."""
        found: dict[str, list[str]] = {}
        for (component, _), message in sorted(self._failing.items()):
            found.setdefault(component, []).append(message)
        return {component: "; ".join(messages) for component, messages in found.items()}

    @property
    def degraded(self) -> bool:
        return bool(self._failing)
