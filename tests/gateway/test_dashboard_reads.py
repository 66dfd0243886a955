"""What the dashboard reads from the registry, and when: versions and aliases once per
registry revision, active rollouts at most once per TTL between revisions, every rollout
with a new revision; a failed read keeps the last figures, says why, and is not retried at
once."""

from __future__ import annotations

from collections import Counter
from typing import Any, cast

import msgspec

from gateway.dashboard.registry_reads import MAX_ROLLOUTS, RegistryReads
from registry.api.deps import Registry
from registry.errors import DatabaseUnavailable
from registry.schemas import Page


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Item(msgspec.Struct):
    version: str
    created_by: str = "token:ci"


class FakeRegistry:
    """The three services the reads call, counting calls; ``down`` makes each raise."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.down = False
        self.limits: list[int | None] = []
        self.rollout_state = "running"
        self.catalog, self.policies, self.rollouts = self, self, self

    def _call(self, name: str) -> None:
        if self.down:
            raise DatabaseUnavailable("sqlite://x", "gone", "start it")
        self.calls[name] += 1

    async def list_versions(self, model: str, **_: Any) -> Page:
        self._call(f"versions:{model}")
        return Page(items=[Item("1.0.0")], total=1, offset=0, limit=50)

    async def get_alias(self, model: str, alias: str) -> dict[str, Any]:
        self._call(f"alias:{model}:{alias}")
        return {"alias": alias, "etag": '"a1.1"', "history": []}

    async def list(self, model: str, limit: int | None = None) -> list[dict[str, Any]]:
        self._call(f"rollouts:{model}")
        self.limits.append(limit)
        found = [{"id": i, "model": model, "state": self.rollout_state} for i in range(9, 0, -1)]
        return found[:limit]


def reads() -> tuple[RegistryReads, FakeRegistry, Clock]:
    fake, clock = FakeRegistry(), Clock()
    return RegistryReads(cast(Registry, fake), rollouts_ttl_s=1.0, clock=clock), fake, clock


MODELS = [("a", ["prod"]), ("b", [])]


async def test_versions_and_aliases_are_read_once_per_revision() -> None:
    cached, fake, clock = reads()
    figures = await cached.read(7, MODELS)
    assert figures.versions["a"]["1.0.0"]["created_by"] == "token:ci"
    assert figures.aliases["a"]["prod"]["etag"] == '"a1.1"'
    clock.now = 30.0
    await cached.read(7, MODELS)
    assert fake.calls == Counter(
        {"versions:a": 1, "versions:b": 1, "alias:a:prod": 1, "rollouts:a": 1, "rollouts:b": 1}
    )
    await cached.read(8, MODELS)  # a new revision: everything again
    assert fake.calls["versions:a"] == fake.calls["rollouts:b"] == 2


async def test_active_rollouts_are_reread_after_the_ttl_only() -> None:
    cached, fake, clock = reads()
    await cached.read(7, MODELS, active={"a"})
    clock.now = 0.5
    await cached.read(7, MODELS, active={"a"})
    assert fake.calls["rollouts:a"] == 1
    clock.now = 1.5
    fake.rollout_state = "paused"
    figures = await cached.read(7, MODELS, active={"a"})
    assert figures.rollouts["a"][0]["state"] == "paused"
    assert (fake.calls["rollouts:a"], fake.calls["rollouts:b"]) == (2, 1)
    assert fake.calls["versions:a"] == 1


async def test_a_failed_read_keeps_the_last_figures_and_backs_off() -> None:
    cached, fake, clock = reads()
    await cached.read(7, MODELS)
    fake.down = True
    stale = await cached.read(8, MODELS)
    assert stale.problem == (
        "registry details may be stale: database unavailable: sqlite://x: gone; start it"
    )
    assert stale.versions["a"]["1.0.0"]["version"] == "1.0.0"
    fake.down = False
    clock.now = 2.0  # within the back-off: the database is not asked
    assert (await cached.read(8, MODELS)).problem is not None
    assert fake.calls["versions:a"] == 1
    clock.now = 6.0
    fresh = await cached.read(8, MODELS)
    assert fresh.problem is None
    assert fake.calls["versions:a"] == 2


async def test_only_each_models_latest_rollouts_are_read() -> None:
    cached, fake, clock = reads()
    figures = await cached.read(7, MODELS, active={"a"})
    clock.now = 1.5
    await cached.read(7, MODELS, active={"a"})
    assert fake.limits == [MAX_ROLLOUTS] * 3  # a and b with the revision, then a again
    assert [r["id"] for r in figures.rollouts["a"]] == [9, 8, 7, 6][:MAX_ROLLOUTS]
