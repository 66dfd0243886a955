"""What keeps one test run apart from another on a shared machine.

Each run has its own id. On the machine's Redis, every key and channel a run touches
carries the run's prefix (``MODELGATE_REDIS_PREFIX`` for processes, `RedisKeys` in
process), so two runs never see each other's workers, notifications or buckets, and a
run cleans up by deleting its own keys, never by flushing a database.
"""

from __future__ import annotations

import uuid

from modelgate.core.keys import RedisKeys

RUN_ID = uuid.uuid4().hex[:10]
REDIS_URL = "redis://127.0.0.1:6379/0"
REDIS_PREFIX = f"mgtest-{RUN_ID}"
KEYS = RedisKeys(REDIS_PREFIX)


def scoped(name: str) -> RedisKeys:
    """Keys for one test or fixture inside this run's prefix."""
    return RedisKeys(f"{REDIS_PREFIX}:{name}")


async def delete_prefix(redis: object, prefix: str = REDIS_PREFIX) -> int:
    """Delete every key under ``prefix`` (an async Redis client); returns how many."""
    keys = [key async for key in redis.scan_iter(match=f"{prefix}:*")]  # type: ignore[attr-defined]
    if keys:
        await redis.delete(*keys)  # type: ignore[attr-defined]
    return len(keys)
