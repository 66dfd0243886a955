"""Who an inference request comes from: a verified token, or else the client's address.

Contract (DESIGN.md, "Inference API"):

* ``Authorization: Bearer <token>`` must name a live token with the ``infer`` scope
  (``admin`` implies it): an unknown, revoked or malformed value is a 401 and a token
  without the scope a 403, never a fresh rate-limit bucket. Without the header the caller
  is anonymous, unless ``MODELGATE_GATEWAY_INFERENCE_AUTH=required`` (then 401).
* Tokens are verified against the registry snapshot in memory (its live tokens by sha256),
  which `gateway.control.sync.RegistrySync` replaces whenever the registry revision moves;
  creating or revoking a token moves it. No database or Redis call here.
* The address is the TCP peer's. ``X-Forwarded-For`` is read only when the peer is in
  ``MODELGATE_GATEWAY_TRUSTED_PROXIES``: walking it from the right, the first address
  that is not itself a trusted proxy is the client. An IPv6 client is its /64, the
  block one host usually holds, so rotating through it buys no fresh buckets.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from gateway.errors import RegistryNotLoaded
from registry.errors import Forbidden, Unauthorized
from registry.tokens import Grant, Principal, hash_token

__all__ = ["Caller", "Identity"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
RawHeaders = Iterable[tuple[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class Caller:
    """The rate-limit identity of one request: ``key`` names its bucket (``token:<id>`` or
    ``addr:<ip>``), ``grant`` is its verified token, if any."""

    key: str
    label: str
    grant: Grant | None = None


class Identity:
    """Turns a request's headers and peer into a `Caller`, or refuses it (401/403)."""

    def __init__(
        self,
        grants: Callable[[], Mapping[str, Grant] | None],
        *,
        required: bool = False,
        trusted_proxies: Sequence[Network] = (),
    ) -> None:
        #: The live tokens of the current snapshot, None before the first one is loaded.
        self.grants = grants
        self.required = required
        self.trusted = tuple(trusted_proxies)

    def caller(self, headers: RawHeaders, peer: tuple[str, int] | None) -> Caller:
        """Who sent a request with these (raw ASGI) headers from ``peer``."""
        authorization: list[bytes] = []
        forwarded: list[bytes] = []
        for name, value in headers:
            lowered = name.lower()
            if lowered == b"authorization":
                authorization.append(value)
            elif lowered == b"x-forwarded-for":
                forwarded.append(value)
        if authorization:
            return self._token(authorization)
        if self.required:
            raise Unauthorized(
                "this gateway requires an inference token: send 'Authorization: Bearer <token>' "
                "with a token that has the infer scope"
            )
        address = self.address(peer[0] if peer else None, forwarded)
        return Caller(f"addr:{address}", f"address {address}")

    def admin(self, headers: RawHeaders) -> Grant:
        """The verified token of an operator's request (the repository calls): it must name
        a live token with the ``admin`` scope (401 without one, 403 without the scope)."""
        authorization = [value for name, value in headers if name.lower() == b"authorization"]
        if not authorization:
            raise Unauthorized(
                "this call needs an admin token: send 'Authorization: Bearer <token>' with a "
                "token that has the admin scope"
            )
        grant = self._grant(authorization)
        if not Principal(grant.token_id, grant.name, grant.scopes).allows("admin"):
            have = ", ".join(sorted(grant.scopes))
            raise Forbidden(
                f'token "{grant.name}" lacks the "admin" scope (it has: {have}); '
                "create one with --scope admin"
            )
        return grant

    def _token(self, values: list[bytes]) -> Caller:
        grant = self._grant(values)
        if not grant.may_infer:
            have = ", ".join(sorted(grant.scopes))
            raise Forbidden(
                f'token "{grant.name}" lacks the "infer" scope (it has: {have}); '
                "create one with --scope infer"
            )
        return Caller(f"token:{grant.token_id}", f'token "{grant.name}"', grant)

    def _grant(self, values: list[bytes]) -> Grant:
        """The live token the one ``Authorization`` header names (401 otherwise)."""
        if len(values) > 1:
            raise Unauthorized(f"{len(values)} Authorization headers were sent; send one")
        scheme, _, secret = values[0].decode("latin-1").strip().partition(" ")
        secret = secret.strip()
        if scheme.lower() != "bearer" or not secret:
            raise Unauthorized("malformed Authorization header: expected 'Bearer <token>'")
        grants = self.grants()
        if grants is None:
            raise RegistryNotLoaded(
                "cannot verify the bearer token: the registry has not been loaded yet"
            )
        grant = grants.get(hash_token(secret))
        if grant is None:
            shown = secret[:10] + ("…" if len(secret) > 10 else "")
            raise Unauthorized(f'invalid or revoked bearer token "{shown}"')
        return grant

    def address(self, peer: str | None, forwarded: list[bytes]) -> str:
        """The client's address: the peer, or what trusted proxies say it forwarded."""
        if peer is None:
            return "unknown"
        if ":" not in peer and (not forwarded or not self.trusted):
            return peer  # NOTE: the common case, an IPv4 peer, needs no parsing (~2 µs)
        current = _parse(peer)
        if current is None or not forwarded or not self._trusted(current):
            return _bucket(current) if current is not None else peer
        hops = [h.strip() for v in forwarded for h in v.decode("latin-1").split(",")]
        for hop in reversed(hops):
            parsed = _parse(hop)
            if parsed is None:
                break  # a trusted proxy never writes this: stop at the last trusted hop
            current = parsed
            if not self._trusted(current):
                break
        return _bucket(current)

    def _trusted(self, address: Address) -> bool:
        return any(address in network for network in self.trusted)


def _parse(text: str) -> Address | None:
    """An address as a proxy writes it (IPv4-mapped IPv6 as IPv4), or None."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _bucket(address: Address) -> str:
    """The address as a bucket names it: IPv4 as is, IPv6 as its /64."""
    if isinstance(address, ipaddress.IPv4Address):
        return str(address)
    return str(ipaddress.IPv6Network((address, 64), strict=False))
