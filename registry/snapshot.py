"""An immutable in-memory view of the whole registry at one revision, for the hot path.

The gateway resolves from a snapshot and swaps in a new one when the revision moves; a
snapshot is never mutated, so results are cached per (model, reference, prerelease flag).
It also holds the live tokens by hash, so the gateway verifies inference tokens from
memory; a token created or revoked moves the revision like any other mutation. And it holds
each model's active rollout (`ActiveRollout`: id, candidate, baseline, state), so every
replica's data plane knows which baseline a failed candidate attempt may be retried on;
every rollout transition moves the revision too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from registry.models import Model, RegistryState
from registry.resolution import ModelView, Resolution, resolve, unknown_model
from registry.tokens import Grant, load_grants
from registry.views import ActiveRollout, load_active_rollouts, load_views

__all__ = ["ActiveRollout", "RegistrySnapshot", "load_snapshot"]

CACHE_LIMIT = 100_000


@dataclass(frozen=True)
class RegistrySnapshot:
    revision: int
    models: Mapping[str, ModelView]
    #: Unrevoked tokens by sha256 (`registry.tokens.hash_token`).
    tokens: Mapping[str, Grant] = field(default_factory=dict)
    #: Each model's waiting, running or paused rollout, by model name.
    rollouts: Mapping[str, ActiveRollout] = field(default_factory=dict)
    _cache: dict[tuple[str, str | None, bool], Resolution] = field(
        default_factory=dict, compare=False, repr=False
    )

    def view(self, model: str) -> ModelView:
        view = self.models.get(model)
        if view is None:
            raise unknown_model(model, self.models)
        return view

    def rollout(self, model: str) -> ActiveRollout | None:
        """The model's active rollout, if it has one."""
        return self.rollouts.get(model)

    def resolve(
        self, model: str, reference: str | None, *, include_prerelease: bool = False
    ) -> Resolution:
        """Like `registry.resolution.resolve`, cached; errors are not cached."""
        key = (model, reference, include_prerelease)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        result = resolve(self.view(model), reference, include_prerelease=include_prerelease)
        if len(self._cache) < CACHE_LIMIT:
            self._cache[key] = result
        return result


async def load_snapshot(sessions: async_sessionmaker[AsyncSession]) -> RegistrySnapshot:
    """Read the whole registry in one transaction, so the snapshot is consistent."""
    async with sessions() as session, session.begin():
        revision = await session.scalar(select(RegistryState.revision).where(RegistryState.id == 1))
        models = (await session.execute(select(Model))).scalars().all()
        views = await load_views(session, models)
        tokens = await load_grants(session)
        rollouts = await load_active_rollouts(session)
    return RegistrySnapshot(int(revision or 0), views, tokens, rollouts)
