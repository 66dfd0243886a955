"""What keeps one test run apart from another on a shared machine.

Each run has its own id, its own Redis instance and its own key prefix:

* Redis: a private ``redis-server`` on a port reserved for the run (`REDIS_URL`), started
  by the root conftest for the session. ``MODELGATE_TEST_REDIS`` names a shared server
  instead (one with no redis-server binary at hand); the prefix then keeps runs apart.
* Every key and channel a run touches carries the run's prefix: ``MODELGATE_REDIS_PREFIX``
  is set for the whole session, so every process the tests start inherits it, and
  in-process objects get `KEYS` (or `scoped`). A run cleans up by deleting its own keys,
  never by flushing a database.
"""

from __future__ import annotations

import os
import uuid

from modelgate.core.keys import RedisKeys, glob_escape
from tests.support.net import free_port

RUN_ID = uuid.uuid4().hex[:10]
REDIS_PREFIX = f"mgtest-{RUN_ID}"
KEYS = RedisKeys(REDIS_PREFIX)

#: The shared server named by ``MODELGATE_TEST_REDIS``, or None for a private one.
SHARED_REDIS = os.environ.get("MODELGATE_TEST_REDIS") or None
# NOTE: the port is reserved when this module is imported (a bound socket, no process),
# so the URL is a constant that test modules can import; the server starts with the session.
REDIS_PORT = None if SHARED_REDIS else free_port()
REDIS_URL = SHARED_REDIS or f"redis://127.0.0.1:{REDIS_PORT}/0"


def scoped(name: str) -> RedisKeys:
    """Keys for one test or fixture inside this run's prefix."""
    return RedisKeys(f"{REDIS_PREFIX}:{name}")


async def delete_prefix(redis: object, prefix: str = REDIS_PREFIX) -> int:
    """Delete every key under ``prefix`` (an async Redis client); returns how many."""
    keys = [key async for key in redis.scan_iter(match=f"{glob_escape(prefix)}:*")]  # type: ignore[attr-defined]
    if keys:
        await redis.delete(*keys)  # type: ignore[attr-defined]
    return len(keys)


def delete_prefix_sync(url: str = REDIS_URL, prefix: str = REDIS_PREFIX) -> int:
    """`delete_prefix` from synchronous code, on its own connection to ``url``."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        keys = list(client.scan_iter(match=f"{glob_escape(prefix)}:*"))
        if keys:
            client.delete(*keys)
        return len(keys)
    finally:
        client.close()
