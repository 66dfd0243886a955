"""Who a gRPC call comes from: its metadata and peer as `gateway.identity.Identity` reads
an HTTP request's headers and client address."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import unquote

from gateway.identity import Caller, Identity

__all__ = ["caller", "peer_address"]

_READ = frozenset({"authorization", "x-forwarded-for"})


def peer_address(peer: str | None) -> tuple[str, int] | None:
    """``(host, port)`` of a gRPC peer string (``ipv4:1.2.3.4:5``, ``ipv6:[::1]:5``, either
    percent-encoded), or None for another kind (``unix:``) or none."""
    if not peer:
        return None
    kind, _, rest = unquote(peer).partition(":")
    if kind not in ("ipv4", "ipv6"):
        return None
    host, _, port = rest.rpartition(":")
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        return None


def caller(
    identity: Identity, metadata: Sequence[tuple[str, str | bytes]], peer: str | None
) -> Caller:
    """`Identity.caller` for a call's invocation metadata and ``context.peer()``."""
    headers = [
        (k.encode(), v.encode("latin-1") if isinstance(v, str) else v)
        for k, v in metadata
        if k in _READ
    ]
    return identity.caller(headers, peer_address(peer))
