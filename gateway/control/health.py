"""Which outside dependencies are failing now; the gateway serves on, degraded."""

from __future__ import annotations

import logging

__all__ = ["Health"]

log = logging.getLogger("modelgate.gateway.health")


class Health:
    """Which outside dependencies are failing now; the gateway serves on, degraded."""

    def __init__(self) -> None:
        self.problems: dict[str, str] = {}

    def fail(self, source: str, message: str) -> None:
        if self.problems.get(source) != message:
            log.warning("%s degraded: %s", source, message)
        self.problems[source] = message

    def ok(self, source: str) -> None:
        if self.problems.pop(source, None) is not None:
            log.info("%s recovered", source)

    @property
    def degraded(self) -> bool:
        return bool(self.problems)
