"""Pure traffic choice: which candidate version serves a request.

An exact version or an alias is a pin: that version or a 503, never another one. ``latest``
and ``stable`` bypass the policy too, and serve their best candidate, else the highest one
with a ready worker (the versions passed over are in `Choice.skipped`). A request with no
version follows the model's policy; a constraint uses the policy's arms that satisfy it,
re-weighted, else its candidates. Without a policy, the registry's priority weights split
among the candidates (the highest version takes all when none has a weight).

Weighted choice is rendezvous (highest random weight) hashing of the route key: the same key
gives the same arm on every gateway replica without coordination, and changing one arm's
weight moves only keys into or out of that arm.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from registry.errors import NoReadyVersion
from registry.resolution import Arm, Policy, Resolution

__all__ = ["Choice", "choose", "weighted_pick"]


@dataclass(frozen=True, slots=True)
class Choice:
    """The version that serves and why: ``route`` names the arm or rule for ``X-Route``."""

    version: str
    route: str
    weights: tuple[tuple[str, float], ...]
    #: Candidates ranked above ``version`` (or arms beside it) that had no ready worker.
    skipped: tuple[str, ...] = ()


_SCALE = float(1 << 64)


def _score(key: str, version: str, weight: float) -> float:
    digest = hashlib.blake2b(f"{version}\x00{key}".encode(), digest_size=8).digest()
    unit = (int.from_bytes(digest, "big") + 1) / (_SCALE + 1)
    return -weight / math.log(unit)


def weighted_pick(arms: Sequence[tuple[str, float]], key: str | None) -> str:
    """Pick one of ``arms`` (name, weight > 0) by route key, or at random without one."""
    if len(arms) == 1:
        return arms[0][0]
    if key is None:
        return random.choices([a for a, _ in arms], weights=[w for _, w in arms])[0]
    return max(arms, key=lambda arm: _score(key, arm[0], arm[1]))[0]


def choose(
    resolution: Resolution,
    policy: Policy | None,
    route_key: str | None = None,
    ready: Callable[[str], bool] | None = None,
) -> Choice:
    """Choose the serving version; ``ready`` says whether a version has a ready worker."""
    is_ready = ready or (lambda _v: True)
    if resolution.pinned:
        version = resolution.best.version
        if not is_ready(version):
            raise NoReadyVersion(f'version {version} of "{resolution.model}" has no ready worker')
        return Choice(version, resolution.kind, ((version, 1.0),))
    if resolution.bypasses_policy:
        return _best_ready(resolution, resolution.kind, is_ready)
    names = {c.version for c in resolution.candidates}
    if policy is not None:
        arms: list[Arm] = [a for a in policy.arms if a.version in names and a.weight > 0]
        if arms and (resolution.kind == "default" or any(is_ready(a.version) for a in arms)):
            pairs = [(a.version, float(a.weight)) for a in arms]
            return _split(resolution, pairs, "arm", route_key, is_ready)
        # A range chooses among candidates with a ready worker: when none of the arms that
        # satisfy it has one, the best ready candidate serves (`best-ready` says so).
    else:
        weighted = [(c.version, float(c.priority)) for c in resolution.candidates if c.priority > 0]
        if weighted:
            return _split(resolution, weighted, "priority", route_key, is_ready)
    return _best_ready(resolution, "best", is_ready)


def _best_ready(resolution: Resolution, rule: str, is_ready: Callable[[str], bool]) -> Choice:
    """The highest candidate with a ready worker; ``rule`` names the route when it is the
    best candidate, ``<rule>-ready`` when higher ones were skipped."""
    for rank, candidate in enumerate(resolution.candidates):
        if is_ready(candidate.version):
            route = rule if rank == 0 else f"{rule}-ready"
            skipped = tuple(c.version for c in resolution.candidates[:rank])
            return Choice(candidate.version, route, ((candidate.version, 1.0),), skipped)
    names = ", ".join(c.version for c in resolution.candidates)
    if resolution.kind in ("latest", "stable"):
        raise NoReadyVersion(
            f'no candidate for "{resolution.reference}" of "{resolution.model}" has a ready '
            f"worker ({names})"
        )
    raise NoReadyVersion(
        f'no version of "{resolution.model}" matching "{resolution.normalized}" has a ready worker'
    )


def _split(
    resolution: Resolution,
    arms: list[tuple[str, float]],
    rule: str,
    route_key: str | None,
    is_ready: Callable[[str], bool],
) -> Choice:
    live = [(v, w) for v, w in arms if is_ready(v)]
    if not live:
        names = ", ".join(v for v, _ in arms)
        raise NoReadyVersion(f'no arm of "{resolution.model}" has a ready worker ({names})')
    version = weighted_pick(live, route_key)
    route = f"{rule}:{version}" if len(live) == len(arms) else f"{rule}:{version}:reweighted"
    total = sum(w for _, w in live)
    skipped = tuple(v for v, _ in arms if not is_ready(v))
    return Choice(version, route, tuple((v, w / total) for v, w in live), skipped)
