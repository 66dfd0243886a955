"""What the dashboard reads from the registry's database, through the admin API's own
services, and how often.

The gateway's in-memory snapshot already has every model's versions, statuses, aliases and
policy; the database adds what the snapshot leaves out: when and by whom each version was
published, each alias's history, and the rollouts with their judgements. Those are read
here, shared by every viewer:

* versions and aliases change only with the registry revision, so they are re-read when the
  revision the gateway routes by moves;
* every rollout transition moves the revision too, so each model's rollouts are re-read
  with it; only an active rollout gains judgements in between (a ``wait`` verdict), so the
  models with one are re-read when older than ``rollouts_ttl_s``.

A failed read keeps the last one and says why in `RegistryFigures.problem` (the page shows
it), and the database is not asked again for ``retry_s``: the dashboard stays up, and
quick, while the database is down, as the gateway does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from registry.api.deps import Registry
from registry.errors import NotFound, RegistryError

__all__ = ["RegistryFigures", "RegistryReads"]

#: Versions per model the page lists (highest first), and rollouts (newest first).
MAX_VERSIONS = 50
MAX_ROLLOUTS = 4


@dataclass
class RegistryFigures:
    """Per model: version details by version, alias details by alias, rollouts newest
    first (each as the admin API renders it)."""

    versions: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    aliases: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    rollouts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    problem: str | None = None


def _plain(value: Any) -> Any:
    return msgspec.to_builtins(value)


class RegistryReads:
    """Cached reads of the registry for the dashboard (see the module docstring)."""

    def __init__(
        self,
        registry: Registry,
        *,
        rollouts_ttl_s: float = 1.0,
        retry_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.rollouts_ttl_s = rollouts_ttl_s
        self.retry_s = retry_s
        self.clock = clock
        self._figures = RegistryFigures()
        self._catalog_key: tuple[int, tuple[tuple[str, tuple[str, ...]], ...]] | None = None
        self._rollouts_at = -float("inf")
        self._failed_at = -float("inf")
        self._lock = asyncio.Lock()

    async def read(
        self,
        revision: int,
        aliases: Sequence[tuple[str, Sequence[str]]],
        active: Collection[str] = (),
    ) -> RegistryFigures:
        """The figures for ``aliases`` (each model with its alias names) at ``revision``;
        ``active`` names the models with an active rollout."""
        key = (revision, tuple((m, tuple(a)) for m, a in aliases))
        async with self._lock:
            if self.clock() - self._failed_at < self.retry_s:
                return self._figures  # still failing, as far as we know
            problem = None
            try:
                if key != self._catalog_key:
                    await self._read_catalog(aliases)
                    await self._read_rollouts([m for m, _ in aliases], every=True)
                    self._catalog_key = key
                    self._rollouts_at = self.clock()
                elif active and self.clock() - self._rollouts_at >= self.rollouts_ttl_s:
                    await self._read_rollouts(sorted(active), every=False)
                    self._rollouts_at = self.clock()
            except RegistryError as exc:
                problem = f"registry details may be stale: {exc.message}"
                self._failed_at = self.clock()
            self._figures.problem = problem
            return self._figures

    async def _read_catalog(self, aliases: Sequence[tuple[str, Sequence[str]]]) -> None:
        catalog, policies = self.registry.catalog, self.registry.policies
        versions: dict[str, dict[str, dict[str, Any]]] = {}
        alias_docs: dict[str, dict[str, dict[str, Any]]] = {}
        for model, names in aliases:
            try:
                page = await catalog.list_versions(
                    model,
                    status=None,
                    constraint=None,
                    include_prerelease=True,
                    offset=0,
                    limit=MAX_VERSIONS,
                )
            except NotFound:  # deleted since the snapshot was taken
                continue
            versions[model] = {item.version: _plain(item) for item in page.items}
            alias_docs[model] = {}
            for name in names:
                try:
                    alias_docs[model][name] = _plain(await policies.get_alias(model, name))
                except NotFound:
                    continue
        self._figures.versions = versions
        self._figures.aliases = alias_docs

    async def _read_rollouts(self, models: Sequence[str], *, every: bool) -> None:
        """Re-read ``models``' rollouts: ``every`` model's (the others' are dropped), or
        those beside the others as last read."""
        rollouts = {} if every else dict(self._figures.rollouts)
        for model in models:
            try:
                found = await self.registry.rollouts.list(model, limit=MAX_ROLLOUTS)
            except NotFound:  # deleted since the snapshot was taken
                rollouts.pop(model, None)
                continue
            rollouts[model] = [_plain(r) for r in found]
        self._figures.rollouts = rollouts
