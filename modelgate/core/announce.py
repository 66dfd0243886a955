"""The worker announcement: what a worker tells gateways about itself, on every beat.

Workers write it (``backends.announce``) to the registry's ``workers`` table and, with
Redis, to ``RedisKeys.worker(id)`` with a TTL, publishing the id on
``RedisKeys.workers_channel``; gateways read it back (``gateway.control.discovery``).
This module is the one definition of that wire format.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

__all__ = ["SERVING_STATES", "Announcement", "LoadedEntry", "decode", "encode"]

#: Worker states in which its ready versions take traffic; ``draining`` and ``stopped``
#: keep the entry visible but offer nothing.
SERVING_STATES = frozenset({"ready", "serving", "starting"})


class LoadedEntry(msgspec.Struct, frozen=True):
    """One loaded version; ``ready`` once it is warm and can serve."""

    model: str
    version: str
    ready: bool = False


class Announcement(msgspec.Struct, frozen=True, kw_only=True):
    """A worker's state at ``last_seen`` (timestamps are timezone-aware, UTC)."""

    id: str
    #: The OIP REST base URL.
    url: str
    #: The gRPC target (``host:port``) when the worker serves gRPC too.
    grpc_url: str | None = None
    state: str
    loaded: list[LoadedEntry] = []
    in_flight: int = 0
    queue_depth: int = 0
    capacity: int = 0
    device: str = "cpu"
    started_at: datetime
    last_seen: datetime

    def ready_versions(self) -> frozenset[tuple[str, str]]:
        """The (model, version) pairs this worker offers now."""
        if self.state not in SERVING_STATES:
            return frozenset()
        return frozenset((e.model, e.version) for e in self.loaded if e.ready)


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Announcement)


def encode(announcement: Announcement) -> bytes:
    return _encoder.encode(announcement)


def decode(data: bytes | str) -> Announcement:
    """Parse an announcement; raises ``msgspec.ValidationError``/``DecodeError`` if malformed."""
    return _decoder.decode(data)
