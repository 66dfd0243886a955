"""`modelgate.core`: the precedence key, the announcement wire format, Redis names, settings."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest
import semver
from hypothesis import given
from hypothesis import strategies as st

from backends.dataplane import precedence
from backends.settings import WorkerSettings
from gateway.settings import GatewaySettings
from modelgate.core.announce import Announcement, LoadedEntry, decode, encode
from modelgate.core.keys import RedisKeys
from modelgate.core.semver import base_version, precedence_key, split_version
from registry.constraints import version_key

_ids = st.one_of(
    st.integers(0, 50).map(str), st.sampled_from(["alpha", "beta", "rc", "x-1", "0a", "a0"])
)
versions = st.builds(
    lambda major, minor, patch, pre, build: (
        f"{major}.{minor}.{patch}"
        + (f"-{'.'.join(pre)}" if pre else "")
        + (f"+{build}" if build else "")
    ),
    st.integers(0, 20),
    st.integers(0, 20),
    st.integers(0, 20),
    st.lists(_ids, max_size=3),
    st.sampled_from(["", "b7", "exp.sha.5114f85"]),
)


@given(versions, versions)
def test_every_precedence_key_orders_like_semver(a: str, b: str) -> None:
    expected = semver.Version.parse(a).compare(semver.Version.parse(b))
    for key in (version_key, precedence):
        assert (key(a) > key(b)) - (key(a) < key(b)) == expected, (key, a, b)


def test_split_and_base_version() -> None:
    assert split_version("1.2.3-rc.1+b7") == (1, 2, 3, "rc.1")
    assert split_version("1.2.3") == (1, 2, 3, "")
    assert split_version("1.2") is None
    assert split_version("a.b.c") is None
    assert base_version("1.2.3+b7") == "1.2.3"
    assert precedence_key(1, 0, 0, "") > precedence_key(1, 0, 0, "rc.1")
    assert precedence("not-a-version") < precedence("0.0.0-0")


def _announcement(state: str = "ready") -> Announcement:
    now = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
    return Announcement(
        id="w1",
        url="http://127.0.0.1:8001",
        state=state,
        loaded=[LoadedEntry("m", "1.0.0", True), LoadedEntry("m", "2.0.0", False)],
        in_flight=3,
        capacity=32,
        started_at=now,
        last_seen=now,
    )


def test_announcement_round_trips_and_offers_only_ready_versions() -> None:
    sent = _announcement()
    assert decode(encode(sent)) == sent
    assert decode(encode(sent)).last_seen.tzinfo is not None
    assert sent.ready_versions() == {("m", "1.0.0")}
    assert _announcement("draining").ready_versions() == frozenset()


@pytest.mark.parametrize(
    "data", [b"{}", b'{"id": "w1"}', b"not json", b'{"id": 1, "url": "u", "state": "ready"}']
)
def test_malformed_announcements_raise_msgspec_errors(data: bytes) -> None:
    with pytest.raises((msgspec.DecodeError, msgspec.ValidationError)):
        decode(data)


def test_every_redis_name_carries_the_prefix() -> None:
    keys = RedisKeys("run-1")
    names = [
        keys.worker("w1"),
        keys.workers_pattern,
        keys.workers_channel,
        keys.registry_channel,
        keys.ejections_channel,
        keys.rate_limit("addr:1.2.3.4"),
    ]
    assert all(name.startswith("run-1:") for name in names)
    assert len(set(names)) == len(names)
    assert keys.worker("w1").startswith(keys.workers_pattern.rstrip("*"))


def test_shared_settings_are_read_once_under_their_documented_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MODELGATE_REDIS_URL", "redis://127.0.0.1:6379/3")
    monkeypatch.setenv("MODELGATE_REDIS_PREFIX", "staging")
    monkeypatch.setenv("MODELGATE_GATEWAY_CONSECUTIVE_FAILURES", "9")
    gateway, worker = GatewaySettings(), WorkerSettings()
    assert gateway.redis_url == worker.redis_url == "redis://127.0.0.1:6379/3"
    assert gateway.redis_keys == worker.redis_keys == RedisKeys("staging")
    assert gateway.consecutive_failures == 9
    monkeypatch.setenv("MODELGATE_REDIS_PREFIX", "bad prefix")
    with pytest.raises(ValueError, match="MODELGATE_REDIS_PREFIX"):
        GatewaySettings()
