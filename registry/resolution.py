"""Pure version resolution: which published versions a reference may mean.

A reference is ``latest``, ``stable``, an alias, an exact version, a constraint, or nothing
(the model's default). Rules (README.md states them for users): candidates are the versions
that are not yanked; deprecated versions only for an exact pin (or an alias, which is a pin
by name); ``latest`` means the highest candidate, ``stable`` the highest without a prerelease
tag. Both keep every lower candidate too, in order, so a ready-aware caller (the gateway)
serves the highest one that has a ready worker: publishing a version before a worker loads
it must not break clients of ``latest`` or ``stable``. No I/O here: the admin API builds a
`ModelView` from SQL, the gateway from its in-memory snapshot.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import semver

from registry.constraints import (
    InvalidConstraint,
    VersionKey,
    parse_constraint,
    parse_version,
    version_key,
)
from registry.errors import (
    AliasNotFound,
    ModelNotFound,
    NoVersionSatisfies,
    VersionNotFound,
)
from registry.models import VersionStatus

__all__ = [
    "ALIAS_PATTERN",
    "Arm",
    "ModelView",
    "Policy",
    "Resolution",
    "Shadow",
    "VersionInfo",
    "close_matches",
    "resolve",
]

ReferenceKind = Literal["default", "latest", "stable", "alias", "exact", "constraint"]
#: Alias names: lower-case words that can never be read as a version or a constraint.
ALIAS_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
RESERVED = frozenset({"latest", "stable"})
_EXACT = re.compile(r"^=?\s*\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$")


@dataclass(frozen=True, slots=True)
class VersionInfo:
    """One published version as resolution sees it."""

    version: str
    parsed: semver.Version
    status: str = VersionStatus.ACTIVE
    priority: int = 0
    #: Precedence key, computed once so resolution compares tuples, not Version objects.
    key: VersionKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", version_key(self.parsed))

    @property
    def servable(self) -> bool:
        return self.status != VersionStatus.YANKED


@dataclass(frozen=True, slots=True)
class Arm:
    version: str
    weight: int


@dataclass(frozen=True, slots=True)
class Shadow:
    version: str
    fraction: float


@dataclass(frozen=True, slots=True)
class Policy:
    arms: tuple[Arm, ...]
    sticky_header: str = "X-Route-Key"
    shadow: Shadow | None = None


@dataclass(frozen=True)
class ModelView:
    """A model's versions (highest first, yanked included for messages), aliases and policy."""

    name: str
    versions: tuple[VersionInfo, ...]
    aliases: Mapping[str, str] = field(default_factory=dict)
    policy: Policy | None = None
    _index: dict[VersionKey, VersionInfo] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def build(
        cls,
        name: str,
        versions: Iterable[VersionInfo],
        aliases: Mapping[str, str] | None = None,
        policy: Policy | None = None,
    ) -> ModelView:
        ordered = tuple(sorted(versions, key=lambda v: v.key, reverse=True))
        return cls(name, ordered, dict(aliases or {}), policy)

    def find(self, version: str) -> VersionInfo | None:
        """The version equal to ``version`` ignoring build metadata, yanked or not."""
        try:
            key = version_key(parse_version(version.lstrip("=").strip()))
        except ValueError:
            return None
        if self._index is None:
            object.__setattr__(self, "_index", {v.key: v for v in self.versions})
        assert self._index is not None
        return self._index.get(key)

    def servable_names(self) -> list[str]:
        return [v.version for v in self.versions if v.servable]

    def nothing_satisfies(self, reference: str) -> NoVersionSatisfies:
        """The 404 for ``reference``: what exists, and which of it is deprecated."""
        deprecated = [v.version for v in self.versions if v.status == VersionStatus.DEPRECATED]
        return NoVersionSatisfies(self.name, reference, self.servable_names(), deprecated)


@dataclass(frozen=True, slots=True)
class Resolution:
    """What a reference means: its kind and the candidates that may serve, highest first."""

    model: str
    reference: str
    kind: ReferenceKind
    candidates: tuple[VersionInfo, ...]
    normalized: str

    @property
    def best(self) -> VersionInfo:
        return self.candidates[0]

    @property
    def pinned(self) -> bool:
        """An exact version or an alias: exactly one version, never another one instead."""
        return self.kind in ("exact", "alias")

    @property
    def bypasses_policy(self) -> bool:
        """Pins, ``latest`` and ``stable``: the traffic policy's arms do not apply; ``latest``
        and ``stable`` mean their best candidate, else the highest one that is ready."""
        return self.kind not in ("default", "constraint")


def close_matches(name: str, names: Iterable[str]) -> list[str]:
    return difflib.get_close_matches(name, list(names), n=3, cutoff=0.6)


def _stable(view: ModelView) -> tuple[VersionInfo, ...]:
    return tuple(
        v for v in view.versions if v.status == VersionStatus.ACTIVE and not v.parsed.prerelease
    )


def _policy_arms(view: ModelView) -> tuple[VersionInfo, ...]:
    if view.policy is None:
        return ()
    named = {arm.version for arm in view.policy.arms}
    return tuple(v for v in view.versions if v.version in named and v.servable)


def _pin(
    view: ModelView, info: VersionInfo | None, reference: str, kind: ReferenceKind
) -> Resolution:
    if info is None:
        raise VersionNotFound(view.name, reference)
    if not info.servable:
        raise VersionNotFound(view.name, info.version, reason="is yanked")
    return Resolution(view.name, reference, kind, (info,), info.version)


def resolve(
    view: ModelView, reference: str | None, *, include_prerelease: bool = False
) -> Resolution:
    """Resolve ``reference`` against ``view``; raise a precise 4xx error when nothing fits."""
    ref = (reference or "").strip()
    if not ref:
        # A request without a version follows the policy: its arms, prereleases included.
        candidates = _policy_arms(view) or _stable(view)
        if not candidates:
            raise view.nothing_satisfies("stable")
        return Resolution(view.name, "", "default", candidates, "*")
    if ref == "latest":
        active = tuple(v for v in view.versions if v.status == VersionStatus.ACTIVE)
        if not active:
            raise view.nothing_satisfies(ref)
        return Resolution(view.name, ref, "latest", active, active[0].version)
    if ref == "stable":
        stable = _stable(view)
        if not stable:
            raise view.nothing_satisfies(ref)
        return Resolution(view.name, ref, "stable", stable, stable[0].version)
    if ref in view.aliases:
        return _pin(view, view.find(view.aliases[ref]), ref, "alias")
    if _EXACT.match(ref):
        return _pin(view, view.find(ref), ref, "exact")
    try:
        constraint = parse_constraint(ref)
    except InvalidConstraint:
        if ALIAS_PATTERN.match(ref):
            raise AliasNotFound(view.name, ref) from None
        raise
    matching = tuple(
        v
        for v in view.versions
        if v.status == VersionStatus.ACTIVE
        and constraint.allows_key(v.key, include_prerelease=include_prerelease)
    )
    if not matching:
        raise view.nothing_satisfies(ref)
    return Resolution(view.name, ref, "constraint", matching, str(constraint))


def unknown_model(name: str, known: Iterable[str]) -> ModelNotFound:
    return ModelNotFound(name, close_matches(name, known))
