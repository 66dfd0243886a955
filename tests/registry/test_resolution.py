"""The pure resolution and traffic rules (README.md, "How a request is served")."""

from __future__ import annotations

import collections

import pytest
import semver

from registry.errors import AliasNotFound, NoReadyVersion, NoVersionSatisfies, VersionNotFound
from registry.resolution import Arm, ModelView, Policy, VersionInfo, resolve
from registry.traffic import choose


def view(policy: Policy | None = None, **status: str) -> ModelView:
    versions = ["1.0.0", "1.1.0", "1.2.0-rc.1", "2.0.0"]
    infos = [
        VersionInfo(
            v, semver.Version.parse(v), status.get(v.replace(".", "_").replace("-", "_"), "active")
        )
        for v in versions
    ]
    return ModelView.build("m", infos, {"canary": "1.2.0-rc.1"}, policy)


def test_references() -> None:
    v = view(**{"2_0_0": "deprecated", "1_0_0": "yanked"})
    assert resolve(v, "stable").best.version == "1.1.0"
    assert resolve(v, "latest").best.version == "1.2.0-rc.1"
    assert resolve(v, "2.0.0").best.version == "2.0.0"  # deprecated: exact pin only
    with pytest.raises(NoVersionSatisfies):
        resolve(v, "^2")
    with pytest.raises(VersionNotFound, match="yanked"):
        resolve(v, "1.0.0")
    assert resolve(v, "canary").kind == "alias"
    with pytest.raises(AliasNotFound):
        resolve(v, "nightly")
    assert [c.version for c in resolve(v, None).candidates] == ["1.1.0"]


def test_latest_and_stable_rank_every_candidate_and_choose_the_highest_ready_one() -> None:
    v = view(**{"1_0_0": "yanked"})
    latest, stable = resolve(v, "latest"), resolve(v, "stable")
    assert [c.version for c in latest.candidates] == ["2.0.0", "1.2.0-rc.1", "1.1.0"]
    assert [c.version for c in stable.candidates] == ["2.0.0", "1.1.0"]
    assert (latest.pinned, latest.bypasses_policy) == (False, True)
    assert choose(stable, None, ready=lambda version: version != "2.0.0").version == "1.1.0"
    assert choose(latest, None, ready=lambda version: version != "2.0.0").version == "1.2.0-rc.1"
    with pytest.raises(NoReadyVersion, match=r"2\.0\.0, 1\.1\.0"):
        choose(stable, None, ready=lambda _: False)


def test_no_version_follows_the_policy_including_prerelease_arms() -> None:
    policy = Policy((Arm("1.1.0", 1), Arm("1.2.0-rc.1", 1)))
    assert {c.version for c in resolve(view(policy), None).candidates} == {"1.1.0", "1.2.0-rc.1"}


def test_ready_aware_split_and_stickiness() -> None:
    policy = Policy((Arm("1.0.0", 90), Arm("1.1.0", 10)))
    resolution = resolve(view(policy), None)
    counts = collections.Counter(choose(resolution, policy, str(k)).version for k in range(5000))
    assert abs(counts["1.0.0"] / 5000 - 0.9) < 0.02
    assert all(
        choose(resolution, policy, str(k)).version == choose(resolution, policy, str(k)).version
        for k in range(100)
    )
    only_new = choose(resolution, policy, "k", ready=lambda v: v == "1.1.0")
    assert (only_new.version, only_new.route) == ("1.1.0", "arm:1.1.0:reweighted")
    with pytest.raises(NoReadyVersion):
        choose(resolution, policy, "k", ready=lambda v: False)


def test_a_range_whose_arms_have_no_ready_worker_falls_back_to_the_best_ready_candidate() -> None:
    """Policy 1.0.0=50, 2.0.0=50; a request for ``^2 || 1.1.x`` fits only the 2.0.0 arm, which
    no worker has ready: 1.1.0 satisfies the range and is ready, so it serves. A request
    without a version still follows the policy and gets 503 when no arm is ready."""
    policy = Policy((Arm("1.0.0", 50), Arm("2.0.0", 50)))
    ranged = resolve(view(policy), "^2 || 1.1.x")
    not_two = choose(ranged, policy, "k", ready=lambda v: v != "2.0.0")
    assert (not_two.version, not_two.route, not_two.skipped) == ("1.1.0", "best-ready", ("2.0.0",))
    assert choose(ranged, policy, "k").route == "arm:2.0.0"  # the arm serves while it is ready
    with pytest.raises(NoReadyVersion, match="matching"):
        choose(ranged, policy, "k", ready=lambda _: False)
    with pytest.raises(NoReadyVersion, match="no arm"):
        choose(resolve(view(policy), None), policy, "k", ready=lambda v: v == "1.1.0")


def test_changing_one_weight_moves_only_keys_into_that_arm() -> None:
    before = Policy((Arm("1.0.0", 80), Arm("1.1.0", 10), Arm("2.0.0", 10)))
    after = Policy((Arm("1.0.0", 80), Arm("1.1.0", 20), Arm("2.0.0", 10)))
    r = resolve(view(before), ">=1.0.0")
    moved = [
        (choose(r, before, str(k)).version, choose(r, after, str(k)).version) for k in range(5000)
    ]
    changed = [(a, b) for a, b in moved if a != b]
    assert changed
    assert all(b == "1.1.0" for _, b in changed)  # keys only move into the grown arm
