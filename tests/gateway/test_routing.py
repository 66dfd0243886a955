"""`RoutingTable`: the real snapshot, traffic split and balancer behind ``route``; only the
workers are made up (`WorkerInfo` as discovery would hand them over)."""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping

import pytest
import semver

from gateway.balancing.balancer import Balancer, WorkerInfo
from gateway.errors import RegistryNotLoaded
from gateway.routing import RoutingTable
from gateway.settings import GatewaySettings
from registry.errors import NoReadyVersion, NotFound
from registry.resolution import Arm, ModelView, Policy, Shadow, VersionInfo
from registry.snapshot import RegistrySnapshot

MODEL = "m"


def snapshot(
    versions: Iterable[str], policy: Policy | None = None, revision: int = 1
) -> RegistrySnapshot:
    infos = [VersionInfo(v, semver.Version.parse(v)) for v in versions]
    return RegistrySnapshot(revision, {MODEL: ModelView.build(MODEL, infos, policy=policy)})


def workers(serving: Mapping[str, Iterable[str]]) -> dict[str, WorkerInfo]:
    return {
        w: WorkerInfo(w, f"http://{w}:8000", frozenset((MODEL, v) for v in versions), 0.0)
        for w, versions in serving.items()
    }


def table(
    versions: Iterable[str],
    serving: Mapping[str, Iterable[str]],
    policy: Policy | None = None,
    rng: float = 0.0,
) -> RoutingTable:
    balancer = Balancer(GatewaySettings(slow_start_s=0), rng=random.Random(1))
    routing = RoutingTable(balancer, rng=lambda: rng)
    routing.install(snapshot(versions, policy))
    routing.workers_changed(workers(serving))
    return routing


def test_a_range_routes_to_the_highest_version_with_a_ready_worker() -> None:
    routing = table(["1.0.0", "1.1.0", "1.2.0"], {"a": ["1.0.0", "1.1.0"]})
    route = routing.route(MODEL, "^1.0.0", None)
    assert (route.version, route.route) == ("1.1.0", "best-ready")
    routing.workers_changed(workers({"a": ["1.1.0"], "b": ["1.2.0"]}))
    assert routing.route(MODEL, "^1.0.0", None).route == "best"
    assert routing.route(MODEL, "^1.0.0", None).version == "1.2.0"


def test_a_pinned_version_without_a_ready_worker_is_a_503_not_another_version() -> None:
    routing = table(["1.0.0", "1.1.0"], {"a": ["1.0.0"]})
    with pytest.raises(NoReadyVersion, match=r"1\.1\.0") as caught:
        routing.route(MODEL, "1.1.0", None)
    assert caught.value.status_code == 503


@pytest.mark.parametrize("reference", ["stable", "latest"])
def test_stable_and_latest_serve_the_highest_ready_candidate_while_a_newer_one_loads(
    reference: str,
) -> None:
    routing = table(["1.0.0", "1.1.0", "1.2.0"], {"a": ["1.0.0", "1.1.0"]})
    route = routing.route(MODEL, reference, None)
    assert (route.version, route.route) == ("1.1.0", f"{reference}-ready")
    assert route.choice.skipped == ("1.2.0",)
    routing.workers_changed(workers({"a": ["1.0.0"], "b": ["1.2.0"]}))
    route = routing.route(MODEL, reference, None)
    assert (route.version, route.route, route.choice.skipped) == ("1.2.0", reference, ())


def test_stable_skips_prereleases_and_latest_takes_them_both_only_when_ready() -> None:
    versions = ["1.0.0", "1.1.0", "2.0.0-rc.1"]
    routing = table(versions, {"a": ["1.0.0"], "b": ["2.0.0-rc.1"]})
    assert routing.route(MODEL, "stable", None).version == "1.0.0"
    assert routing.route(MODEL, "latest", None).version == "2.0.0-rc.1"
    routing.workers_changed(workers({"a": ["1.0.0"]}))
    latest = routing.route(MODEL, "latest", None)
    assert (latest.version, latest.choice.skipped) == ("1.0.0", ("2.0.0-rc.1", "1.1.0"))


@pytest.mark.parametrize("reference", ["stable", "latest"])
def test_stable_and_latest_are_a_503_only_when_no_candidate_is_ready(reference: str) -> None:
    routing = table(["1.0.0", "1.1.0"], {"a": ["0.9.0"]})
    with pytest.raises(NoReadyVersion, match=r"1\.1\.0, 1\.0\.0") as caught:
        routing.route(MODEL, reference, None)
    assert caught.value.status_code == 503
    assert f'"{reference}"' in caught.value.message


def test_stable_bypasses_the_traffic_policy() -> None:
    policy = Policy((Arm("1.0.0", 100),))
    routing = table(["1.0.0", "1.1.0"], {"a": ["1.0.0", "1.1.0"]}, policy)
    assert routing.route(MODEL, "stable", "k").version == "1.1.0"
    assert routing.route(MODEL, None, "k").version == "1.0.0"


def test_an_unknown_model_is_a_404_naming_it() -> None:
    routing = table(["1.0.0"], {"a": ["1.0.0"]})
    with pytest.raises(NotFound, match="nope") as caught:
        routing.route("nope", None, None)
    assert caught.value.status_code == 404


def test_a_split_skips_an_arm_without_a_ready_worker_and_says_so() -> None:
    policy = Policy((Arm("1.0.0", 50), Arm("2.0.0", 50)))
    routing = table(["1.0.0", "2.0.0"], {"a": ["1.0.0"]}, policy)
    routes = {routing.route(MODEL, ">=1", f"k{n}").route for n in range(50)}
    assert routes == {"arm:1.0.0:reweighted"}


def test_a_route_key_always_gets_the_same_arm_and_keys_spread_by_weight() -> None:
    policy = Policy((Arm("1.0.0", 90), Arm("2.0.0", 10)))
    routing = table(["1.0.0", "2.0.0"], {"a": ["1.0.0"], "b": ["2.0.0"]}, policy)
    first = {n: routing.route(MODEL, ">=1", f"user-{n}").version for n in range(2000)}
    again = {n: routing.route(MODEL, ">=1", f"user-{n}").version for n in range(2000)}
    assert first == again
    share = sum(v == "2.0.0" for v in first.values()) / len(first)
    assert 0.07 < share < 0.13, share


def test_the_sticky_header_is_the_policys_lower_cased_and_none_without_a_policy() -> None:
    policy = Policy((Arm("1.0.0", 1),), sticky_header="X-User-Id")
    assert table(["1.0.0"], {"a": ["1.0.0"]}, policy).sticky_header(MODEL) == "x-user-id"
    assert table(["1.0.0"], {"a": ["1.0.0"]}).sticky_header(MODEL) is None
    assert table(["1.0.0"], {"a": ["1.0.0"]}, policy).sticky_header("other") is None


@pytest.mark.parametrize(
    ("rng", "serving", "shadow"),
    [
        (0.49, {"a": ["1.0.0"], "b": ["2.0.0"]}, "2.0.0"),  # under the fraction: copied
        (0.50, {"a": ["1.0.0"], "b": ["2.0.0"]}, None),  # at the fraction: not
        (0.0, {"a": ["1.0.0"]}, None),  # no ready worker for the shadow
    ],
)
def test_a_shadow_copy_is_sent_for_its_fraction_only_to_a_ready_version(
    rng: float, serving: dict[str, list[str]], shadow: str | None
) -> None:
    policy = Policy((Arm("1.0.0", 1),), shadow=Shadow("2.0.0", 0.5))
    routing = table(["1.0.0", "2.0.0"], serving, policy, rng=rng)
    route = routing.route(MODEL, None, None)
    assert (route.version, route.shadow) == ("1.0.0", shadow)


def test_no_shadow_of_the_version_that_already_serves() -> None:
    policy = Policy((Arm("2.0.0", 1),), shadow=Shadow("2.0.0", 1.0))
    routing = table(["1.0.0", "2.0.0"], {"a": ["2.0.0"]}, policy)
    assert routing.route(MODEL, None, None).shadow is None


def test_installing_a_snapshot_replaces_the_whole_view() -> None:
    routing = table(["1.0.0"], {"a": ["1.0.0", "1.1.0"]})
    assert routing.route(MODEL, None, None).version == "1.0.0"
    routing.install(snapshot(["1.0.0", "1.1.0"], revision=2))
    assert routing.route(MODEL, None, None).version == "1.1.0"
    assert routing.snapshot is not None
    assert routing.snapshot.revision == 2


def test_a_worker_set_change_replaces_urls_and_the_balancers_workers() -> None:
    routing = table(["1.0.0"], {"a": ["1.0.0"], "b": ["1.0.0"]})
    assert routing.urls == {"a": "http://a:8000", "b": "http://b:8000"}
    routing.workers_changed(workers({"c": ["1.0.0"]}))
    assert routing.urls == {"c": "http://c:8000"}
    assert [row["id"] for row in routing.balancer.snapshot()] == ["c"]
    assert routing.balancer.pick(MODEL, "1.0.0") == "c"


def test_before_the_first_snapshot_every_route_is_a_503_not_a_crash() -> None:
    routing = RoutingTable(Balancer(GatewaySettings()))
    assert not routing.ready
    for call in (lambda: routing.route(MODEL, None, None), lambda: routing.resolve(MODEL, "^1")):
        with pytest.raises(RegistryNotLoaded, match="not loaded the registry") as caught:
            call()
        assert caught.value.status_code == 503
    assert routing.sticky_header(MODEL) is None
