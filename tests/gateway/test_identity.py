"""Who an inference request comes from: tokens verified from the snapshot's grants (401 for
anything else, 403 without the infer scope), the peer address, and ``X-Forwarded-For``
believed only from trusted proxies."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

import pytest

from gateway.identity import Identity
from modelgate.core.errors import ModelgateError
from registry.tokens import Grant, hash_token

GRANTS = {
    hash_token("mg_infer"): Grant(1, "client", frozenset({"infer"}), 5.0, 10.0),
    hash_token("mg_admin"): Grant(2, "ops", frozenset({"admin"}), None, None),
    hash_token("mg_read"): Grant(3, "viewer", frozenset({"read", "publish"}), None, None),
}
PEER = ("10.1.2.3", 5555)


def identity(grants: Mapping[str, Grant] | None = GRANTS, **kwargs: object) -> Identity:
    return Identity(lambda: grants, **kwargs)  # type: ignore[arg-type]


def headers(**values: str) -> list[tuple[bytes, bytes]]:
    return [(k.replace("_", "-").encode(), v.encode()) for k, v in values.items()]


def refused(ident: Identity, raw: list[tuple[bytes, bytes]]) -> ModelgateError:
    with pytest.raises(ModelgateError) as info:
        ident.caller(raw, PEER)
    return info.value


def test_a_live_infer_token_is_its_own_bucket() -> None:
    caller = identity().caller(headers(authorization="Bearer mg_infer"), PEER)
    assert caller.key == "token:1"
    assert caller.grant is not None
    assert caller.grant.rate_limit_rps == 5.0
    assert identity().caller(headers(Authorization="bearer  mg_admin "), PEER).key == "token:2"


@pytest.mark.parametrize(
    "value", ["Bearer made-up-1", "Bearer mg_inferX", "Basic dXNlcjpwdw==", "Bearer ", "mg_infer"]
)
def test_anything_but_a_live_token_is_a_401(value: str) -> None:
    exc = refused(identity(), headers(authorization=value))
    assert exc.status_code == 401
    assert exc.headers is not None
    assert "WWW-Authenticate" in exc.headers


def test_a_revoked_token_fails_once_the_snapshot_drops_it() -> None:
    grants = dict(GRANTS)
    ident = Identity(lambda: grants)
    assert ident.caller(headers(authorization="Bearer mg_infer"), PEER).key == "token:1"
    del grants[hash_token("mg_infer")]
    exc = refused(ident, headers(authorization="Bearer mg_infer"))
    assert exc.status_code == 401
    assert '"mg_infer"' in exc.message


def test_two_authorization_headers_are_refused() -> None:
    raw = headers(authorization="Bearer mg_infer") + headers(authorization="Bearer x")
    assert refused(identity(), raw).status_code == 401


def test_a_token_without_infer_is_forbidden() -> None:
    exc = refused(identity(), headers(authorization="Bearer mg_read"))
    assert exc.status_code == 403
    assert '"viewer"' in exc.message
    assert "infer" in exc.message


def test_before_the_first_snapshot_a_token_cannot_be_verified() -> None:
    exc = refused(identity(None), headers(authorization="Bearer mg_infer"))
    assert exc.status_code == 503


def test_required_auth_refuses_anonymous_requests() -> None:
    exc = refused(identity(required=True), [])
    assert exc.status_code == 401
    assert "infer" in exc.message
    assert identity(required=True).caller(headers(authorization="Bearer mg_infer"), PEER).grant


def test_anonymous_callers_key_on_the_peer_and_ignore_untrusted_forwarded_for() -> None:
    caller = identity().caller(headers(x_forwarded_for="203.0.113.9"), PEER)
    assert caller.key == "addr:10.1.2.3"
    assert identity().caller([], None).key == "addr:unknown"
    mapped = identity().caller([], ("::ffff:10.1.2.3", 1))
    assert mapped.key == "addr:10.1.2.3"
    # one host's /64 is one client, however it picks addresses in it
    one = identity().caller([], ("2001:db8:1:2::1", 1)).key
    assert one == identity().caller([], ("2001:db8:1:2:ffff::9", 1)).key == "addr:2001:db8:1:2::/64"
    assert identity().caller([], ("2001:db8:1:3::1", 1)).key != one


NETS = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("192.168.1.1/32")]


@pytest.mark.parametrize(
    ("forwarded", "client"),
    [
        (["203.0.113.9"], "203.0.113.9"),
        # the client forged a left part; the trusted proxy appended the real peer
        (["1.1.1.1, 203.0.113.9"], "203.0.113.9"),
        # two trusted hops, then the client
        (["6.6.6.6, 203.0.113.9, 192.168.1.1"], "203.0.113.9"),
        # several header lines are one list
        (["6.6.6.6, 203.0.113.9", "10.9.9.9"], "203.0.113.9"),
        # garbage where a trusted proxy would have written an address: the last trusted hop
        (["203.0.113.5, not-an-ip, 10.9.9.9"], "10.9.9.9"),
        # every hop trusted: the leftmost
        (["10.0.0.1, 10.0.0.2"], "10.0.0.1"),
    ],
)
def test_forwarded_for_is_walked_from_a_trusted_peer(forwarded: list[str], client: str) -> None:
    raw = [(b"x-forwarded-for", v.encode()) for v in forwarded]
    assert identity(trusted_proxies=NETS).caller(raw, PEER).key == f"addr:{client}"
    # the same header from an untrusted peer is ignored
    outside = identity(trusted_proxies=NETS).caller(raw, ("172.16.0.1", 1))
    assert outside.key == "addr:172.16.0.1"


def test_the_repository_calls_need_a_live_admin_token() -> None:
    ident = identity(required=False)
    assert ident.admin(headers(authorization="Bearer mg_admin")).name == "ops"
    for raw, status, message in [
        ([], 401, "needs an admin token"),
        (headers(authorization="Bearer made-up"), 401, "invalid or revoked"),
        (headers(authorization="Bearer mg_infer"), 403, 'lacks the "admin" scope'),
        (headers(authorization="Bearer mg_read"), 403, "it has: publish, read"),
    ]:
        with pytest.raises(ModelgateError, match=message) as info:
            ident.admin(raw)
        assert info.value.status_code == status
