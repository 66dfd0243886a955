"""The observed split: what each model's versions served over the last minute, read off the
gateway's own request counters, never off the request path.

The data plane already counts every answer in ``modelgate_gateway_requests`` (labels model,
version, arm, worker, code; `gateway.metrics`). `SplitSampler` reads those totals every
``interval_s`` in the background into a ring that spans ``window_s``, and `observed`
differences the newest sample against the oldest one still inside the window. The request
path does nothing more than it did.

A request counts as *split by the policy* when its route (the ``arm`` label) is ``arm:...``:
the traffic policy chose its version. Pins, aliases and ranges that bypass the policy are
counted beside it, so the observed split compares like with like against the configured
weights.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.control.background import Tasks

__all__ = ["Counts", "Observed", "SplitSampler", "VersionCounts", "observed_between"]

#: (model, version, split by the policy, a 5xx answer) → answers counted.
Key = tuple[str, str, bool, bool]
Counts = dict[Key, float]


class MetricSource(Protocol):
    """What the sampler reads: a prometheus-client metric (``collect()``)."""

    def collect(self) -> Iterable[Any]: ...


@dataclass(frozen=True, slots=True)
class VersionCounts:
    """One version's answers in the window: all of them, those the policy split, 5xx."""

    requests: int = 0
    split: int = 0
    errors: int = 0


@dataclass(frozen=True, slots=True)
class Observed:
    """One model's answers over ``window_s`` seconds (0 until two samples exist)."""

    window_s: float
    versions: Mapping[str, VersionCounts] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        return sum(v.requests for v in self.versions.values())

    @property
    def split(self) -> int:
        """Answers whose version the traffic policy chose."""
        return sum(v.split for v in self.versions.values())

    def shares(self) -> dict[str, float]:
        """Each version's share of the answers the policy split, in percent (of all the
        answers when none was split by a policy)."""
        by_policy = self.split
        if by_policy:
            return {v: 100.0 * c.split / by_policy for v, c in self.versions.items() if c.split}
        total = self.requests
        if not total:
            return {}
        return {v: 100.0 * c.requests / total for v, c in self.versions.items() if c.requests}

    def as_dict(self) -> dict[str, Any]:
        return {
            "window_s": round(self.window_s, 1),
            "requests": self.requests,
            "split_requests": self.split,
            "shares": {v: round(s, 2) for v, s in self.shares().items()},
            "versions": {
                v: {"requests": c.requests, "split": c.split, "errors": c.errors}
                for v, c in sorted(self.versions.items())
            },
        }


def read_counts(metric: MetricSource) -> Counts:
    """The metric's totals, keyed by (model, version, split by the policy, 5xx)."""
    counts: Counts = {}
    for family in metric.collect():
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue
            labels = sample.labels
            key = (
                labels["model"],
                labels["version"],
                labels["arm"].startswith("arm:"),
                labels["code"].startswith("5"),
            )
            counts[key] = counts.get(key, 0.0) + sample.value
    return counts


def observed_between(older: Counts, newer: Counts, window_s: float) -> dict[str, Observed]:
    """Per model, the answers counted between two samples (``window_s`` apart)."""
    totals: dict[str, dict[str, list[int]]] = {}
    for key, value in newer.items():
        delta = int(value - older.get(key, 0.0))
        if delta <= 0:
            continue
        model, version, split, error = key
        cell = totals.setdefault(model, {}).setdefault(version, [0, 0, 0])
        cell[0] += delta
        if split:
            cell[1] += delta
        if error:
            cell[2] += delta
    return {
        model: Observed(window_s, {v: VersionCounts(*c) for v, c in versions.items()})
        for model, versions in totals.items()
    }


class SplitSampler:
    """A ring of the request counters' totals, one sample every ``interval_s``, spanning
    ``window_s``; `observed` is the last ``window_s`` seconds (or as much as was sampled)."""

    def __init__(
        self,
        metric: MetricSource,
        *,
        interval_s: float = 2.0,
        window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.metric = metric
        self.interval_s = interval_s
        self.window_s = window_s
        self.clock = clock
        self._ring: deque[tuple[float, Counts]] = deque()
        self._tasks = Tasks()

    def sample(self) -> None:
        """Read the counters now; drop samples no longer needed for the window."""
        now = self.clock()
        self._ring.append((now, read_counts(self.metric)))
        # NOTE: keep the newest sample at least window_s old: it is the window's start.
        while len(self._ring) > 2 and self._ring[1][0] <= now - self.window_s:
            self._ring.popleft()

    def _bounds(self) -> tuple[tuple[float, Counts], tuple[float, Counts]] | None:
        """The window's first and last samples: the oldest one inside ``window_s`` of the
        newest, and the newest."""
        if len(self._ring) < 2:
            return None
        newest = self._ring[-1]
        for sample in self._ring:
            if sample[0] >= newest[0] - self.window_s:
                return sample, newest
        return newest, newest  # unreachable: the newest is inside its own window

    def span_s(self) -> float:
        """The seconds `observed` covers (less than ``window_s`` after a start)."""
        bounds = self._bounds()
        return 0.0 if bounds is None else bounds[1][0] - bounds[0][0]

    def observed(self) -> dict[str, Observed]:
        """Per model, what was answered between the window's first and last samples."""
        bounds = self._bounds()
        if bounds is None:
            return {}
        (start_at, start), (newest_at, newest) = bounds
        return observed_between(start, newest, newest_at - start_at)

    async def start(self) -> None:
        self.sample()
        self._tasks.spawn(self._run(), "dashboard-split-sampler")

    async def stop(self) -> None:
        await self._tasks.stop()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            self.sample()
