"""Fault injection for tests and rollout demos: fail or slow down a fraction of requests.

A worker-wide ``FaultPolicy`` comes from options; a version's registry labels
``modelgate.fault.error_rate``, ``modelgate.fault.delay_rate`` and
``modelgate.fault.delay_ms`` override it for that version.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from dataclasses import dataclass, replace

from backends.errors import InjectedFault, LoadFailed

__all__ = ["LABEL_PREFIX", "FaultPolicy"]

LABEL_PREFIX = "modelgate.fault."


@dataclass(frozen=True, slots=True)
class FaultPolicy:
    """``error_rate`` of requests fail with a 500; ``delay_rate`` of them wait ``delay_ms``."""

    error_rate: float = 0.0
    delay_rate: float = 0.0
    delay_ms: float = 0.0

    def __post_init__(self) -> None:
        for name in ("error_rate", "delay_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"fault {name} must be within [0, 1], not {value}")
        if self.delay_ms < 0:
            raise ValueError(f"fault delay_ms must be >= 0, not {self.delay_ms}")

    @property
    def active(self) -> bool:
        return self.error_rate > 0 or (self.delay_rate > 0 and self.delay_ms > 0)

    def with_labels(self, labels: Mapping[str, str]) -> FaultPolicy:
        """This policy overridden by a version's ``modelgate.fault.*`` labels."""
        changes: dict[str, float] = {}
        for field in ("error_rate", "delay_rate", "delay_ms"):
            text = labels.get(LABEL_PREFIX + field)
            if text is None:
                continue
            try:
                changes[field] = float(text)
            except ValueError:
                raise LoadFailed(
                    f'label "{LABEL_PREFIX}{field}" is not a number: "{text}"'
                ) from None
        try:
            return replace(self, **changes)
        except ValueError as exc:
            raise LoadFailed(f"invalid fault labels: {exc}") from None

    async def apply(self, rng: random.Random, model: str, version: str) -> None:
        """Maybe sleep, then maybe raise ``InjectedFault``; a no-op when inactive."""
        if self.delay_rate > 0 and self.delay_ms > 0 and rng.random() < self.delay_rate:
            await asyncio.sleep(self.delay_ms / 1000)
        if self.error_rate > 0 and rng.random() < self.error_rate:
            raise InjectedFault(model, version)
