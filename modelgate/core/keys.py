"""The names modelgate uses in Redis, under one prefix (``MODELGATE_REDIS_PREFIX``).

Several deployments, or several test runs, can share one Redis server when each has its
own prefix; every key and channel below is derived from it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_KEYS", "DEFAULT_PREFIX", "RedisKeys", "glob_escape"]

DEFAULT_PREFIX = "modelgate"


def glob_escape(text: str) -> str:
    """``text`` as a literal inside a Redis ``MATCH``/``KEYS`` pattern (``*?[]\\`` escaped)."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


@dataclass(frozen=True, slots=True)
class RedisKeys:
    prefix: str = DEFAULT_PREFIX

    def worker(self, worker_id: str) -> str:
        """A worker's announcement (JSON, with a TTL)."""
        return f"{self.prefix}:worker:{worker_id}"

    @property
    def workers_pattern(self) -> str:
        """Every announcement key (a ``SCAN MATCH`` pattern; the prefix taken literally)."""
        return f"{glob_escape(self.prefix)}:worker:*"

    @property
    def workers_channel(self) -> str:
        """Workers publish their id here whenever their announcement changes."""
        return f"{self.prefix}:workers"

    @property
    def registry_channel(self) -> str:
        """The registry publishes its new revision here after each mutation."""
        return f"{self.prefix}:registry"

    @property
    def ejections_channel(self) -> str:
        """Gateway replicas share outlier ejections here."""
        return f"{self.prefix}:ejections"

    def rollout_stats(self, model: str, version: str, slot: int) -> str:
        """One version's attempt counters in one wall-clock second (a hash, with a TTL)."""
        return f"{self.prefix}:rollout-stats:{model}@{version}:{slot}"

    def rate_limit(self, client: str) -> str:
        """One client's token bucket."""
        return f"{self.prefix}:rl:{client}"


DEFAULT_KEYS = RedisKeys()
