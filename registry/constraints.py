"""Version constraints with npm node-semver 7.8.5 range semantics.

The semantics are node-semver's README ("Ranges" and "Advanced Range Syntax",
https://github.com/npm/node-semver#ranges). Parsed once (cached) into an OR of comparator
sets desugared as that section spells hyphen, x-, tilde and caret ranges; evaluated on
precomputed precedence keys. Deliberate deviations, all raising `InvalidConstraint`: empty or
blank text and empty ``||`` alternatives (npm: ``*``); ``~>``, ``~=``, ``^=`` and repeated ``v``
prefixes; a number after an x anywhere (npm 7.8.5 still reads ``^1.x.3``/``1.x.3 - 2`` as
``1.x``); a pre-release tag on an x-range (``1.2.x-beta``; npm drops it); over 256 characters.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from operator import attrgetter, itemgetter
from typing import Any, NamedTuple

import semver

from modelgate.core.semver import VersionKey, pre_key, precedence_key
from registry.errors import BadRequest
from registry.limits import BUILD_MAX, INT64_MAX, PRERELEASE_MAX

__all__ = [
    "MAX_CONSTRAINT_LENGTH",
    "Constraint",
    "InvalidConstraint",
    "InvalidVersion",
    "VersionKey",
    "parse_constraint",
    "parse_version",
    "version_key",
]

MAX_CONSTRAINT_LENGTH = 256
_FORMS = "use forms like 1.2.3, ^1.2, ~1.2.3, >=1.0 <2, 1.x, 1.2.3 - 2.0.0, a || b"
_VERSION_FORM = "expected MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD], e.g. 1.2.3 or 2.0.0-rc.1"


def _quote(text: str) -> str:
    if len(text) > MAX_CONSTRAINT_LENGTH:
        text = text[:48] + "..."
    return json.dumps(text, ensure_ascii=False)


class InvalidConstraint(BadRequest, ValueError):
    """A constraint that cannot be parsed; ``str()`` names it, says why and what is accepted."""

    def __init__(self, constraint: str, reason: str) -> None:
        self.constraint = constraint
        self.reason = reason
        super().__init__(f"invalid constraint {_quote(constraint)}: {reason}; {_FORMS}")


class InvalidVersion(BadRequest, ValueError):
    """Text that is not a strict SemVer 2.0.0 version."""

    def __init__(self, value: str, reason: str) -> None:
        self.value = value
        self.reason = reason
        super().__init__(f"invalid version {_quote(value)}: {reason}; {_VERSION_FORM}")


_PRE_ID = r"(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"
_XR = r"(0|[1-9][0-9]*|[xX*])"
_PARTIAL_RE = re.compile(
    rf"{_XR}(?:\.{_XR}(?:\.{_XR}(?:-({_PRE_ID}(?:\.{_PRE_ID})*))?)?)?"
    r"(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?"
)
_OP_RE = re.compile(r"~>|<=|>=|<|>|=|~|\^")
_OP_SPACE_RE = re.compile(r"(~>|<=|>=|<|>|=|~|\^)\s+")  # `>= 1.2`, `^ 1.2` are one comparator


def _version_problem(text: str, *, partial: bool) -> str:
    """Say what is wrong with text that failed to parse as a version (or a range operand)."""
    if partial and not text:
        return "an operator needs a version after it"
    if partial and text[0] in "<>=~^":
        return "operators cannot be combined"
    if partial and "|" in text:
        return 'alternatives are separated by "||"'
    if not partial and text[:1] in ("v", "V", "="):
        return f'a leading "{text[0]}" is not part of a version'
    main = re.split(r"[-+]", text, maxsplit=1)[0]
    parts = main.split(".")
    pre = text[len(main) + 1 :].split("+", 1)[0] if text[len(main) : len(main) + 1] == "-" else ""
    if len(parts) > 3:
        return "a version has at most three numbers, MAJOR.MINOR.PATCH"
    if any(len(p) > 1 and p[0] == "0" and p.isdigit() for p in parts):
        return "numbers cannot have leading zeros"
    if any(len(i) > 1 and i[0] == "0" and i.isdigit() for i in pre.split(".")):
        return "numeric pre-release identifiers cannot have leading zeros"
    if not partial and len(parts) < 3 and all(p.isdigit() for p in parts):
        return "a version needs all three numbers, MAJOR.MINOR.PATCH"
    if partial and pre and len(parts) < 3:
        return "a pre-release tag needs a full MAJOR.MINOR.PATCH version"
    if "," in text:
        return "comparators are separated by spaces, not commas"
    return "not a version, partial version or x-range" if partial else "not a SemVer version"


def parse_version(text: str) -> semver.Version:
    """Parse strict SemVer 2.0.0 text (no ``v`` prefix, no partials); raise `InvalidVersion`."""
    if not isinstance(text, str):
        raise TypeError(f"a version must be given as str, not {type(text).__name__}")
    return _parse_version(text)


@lru_cache(maxsize=4096)
def _parse_version(text: str) -> semver.Version:
    if len(text) > MAX_CONSTRAINT_LENGTH:
        raise InvalidVersion(text, f"a version is at most {MAX_CONSTRAINT_LENGTH} characters")
    try:
        version = semver.Version.parse(text)
    except ValueError:
        raise InvalidVersion(text, _version_problem(text, partial=False)) from None
    # NOTE: the parts are stored in columns of their own (bigint, varchar(128)): a version
    # that would not fit there is invalid here, on SQLite and PostgreSQL alike.
    if max(version.major, version.minor, version.patch) > INT64_MAX:
        raise InvalidVersion(text, f"MAJOR, MINOR and PATCH are each at most {INT64_MAX}")
    if len(version.prerelease or "") > PRERELEASE_MAX:
        raise InvalidVersion(text, f"a pre-release tag is at most {PRERELEASE_MAX} characters")
    if len(version.build or "") > BUILD_MAX:
        raise InvalidVersion(text, f"build metadata is at most {BUILD_MAX} characters")
    return version


# NOTE: python-semver's public properties cost ~70 ns each; reading the slots directly is
# what keeps a 50-version resolution within the 20 µs budget. Fall back if they move.
_parts = attrgetter("_major", "_minor", "_patch", "_prerelease")
if getattr(semver.Version, "__slots__", ())[:4] != ("_major", "_minor", "_patch", "_prerelease"):
    _parts = attrgetter("major", "minor", "patch", "prerelease")  # pragma: no cover


def _type_error(version: object) -> TypeError:
    return TypeError(f"expected semver.Version or str, not {type(version).__name__}")


def version_key(version: semver.Version | str) -> VersionKey:
    """Return a tuple that orders exactly like `semver.Version.compare` (build ignored)."""
    if isinstance(version, str):
        version = parse_version(version)
    try:
        major, minor, patch, pre = _parts(version)
    except AttributeError:
        raise _type_error(version) from None
    return precedence_key(major, minor, patch, pre)


class _Cmp(NamedTuple):
    """A primitive comparator: ``op`` (``< <= > >= =``), MAJOR.MINOR.PATCH and pre-release."""

    op: str
    nums: tuple[int, ...]
    pre: str | None = None

    def __str__(self) -> str:
        text = ".".join(map(str, self.nums)) + (f"-{self.pre}" if self.pre else "")
        return text if self.op == "=" else self.op + text


_Partial = tuple[tuple[int, ...], str | None]  # the numbers before the first x, pre-release
_Item = tuple[str, _Partial, _Partial]  # (operator, or "-" with both ends of a hyphen range)
_Interval = tuple[Any, Any, frozenset[tuple[int, ...]]]  # low <= key < high, pre-release tuples
_Sets = tuple[tuple[_Cmp, ...], ...]
_NULL = _Cmp("<", (0, 0, 0), "0")  # npm's null set: nothing sorts below 0.0.0-0
_LOWEST: Any = (-1,)
_HIGHEST: Any = (math.inf,)


def _pad(nums: tuple[int, ...]) -> tuple[int, ...]:
    return (*nums, *(0,) * (3 - len(nums)))


def _bump(nums: tuple[int, ...], i: int) -> tuple[int, ...]:
    return (*nums[:i], nums[i] + 1, *(0,) * (2 - i))


def _interval(cmps: tuple[_Cmp, ...]) -> _Interval:
    low, high = _LOWEST, _HIGHEST
    for op, nums, pre in cmps:
        key: Any = (*nums, 0, pre_key(pre)) if pre else (*nums, 1, ())
        # Sorts above `key`, below every real key greater than it: (-1,) < any identifier.
        after = (*key[:4], (*key[4], (-1,)))
        if op in (">=", "="):
            low = max(low, key)
        elif op == ">":
            low = max(low, after)
        if op == "<":
            high = min(high, key)
        elif op in ("<=", "="):
            high = min(high, after)
    return low, high, frozenset(c.nums for c in cmps if c.pre)


def _operand(text: str, token: str, body: str) -> _Partial:
    match = _PARTIAL_RE.fullmatch(body[1:] if body.startswith("v") else body)
    if match is None:
        reason = _version_problem(body, partial=True)
        raise InvalidConstraint(text, f"{reason} ({_quote(token)})")
    groups = [g for g in match.group(1, 2, 3) if g is not None]
    nums = tuple(int(g) for g in groups if g not in ("x", "X", "*"))
    if any(n > INT64_MAX for n in nums):
        reason = f"version numbers are at most {INT64_MAX}"
        raise InvalidConstraint(text, f"{reason} ({_quote(token)})")
    if any(g in ("x", "X", "*") for g in groups[: len(nums)]):
        raise InvalidConstraint(text, f"a number cannot follow an x-range ({_quote(token)})")
    if match.group(4) and len(nums) < 3:
        reason = "a pre-release tag needs a full MAJOR.MINOR.PATCH version"
        raise InvalidConstraint(text, f"{reason} ({_quote(token)})")
    return nums, match.group(4)


def _parse_set(text: str, alternative: str) -> list[_Item]:
    merged = _OP_SPACE_RE.sub(r"\1", alternative).split()
    if "-" in merged:
        if len(merged) != 3 or merged[1] != "-":
            reason = 'a hyphen range is written "A - B" and stands alone in its set'
            raise InvalidConstraint(text, f"{reason} ({_quote(alternative.strip())})")
        for side in (merged[0], merged[2]):
            if side[0] in "<>=~^":
                reason = "a hyphen range takes plain versions, without an operator"
                raise InvalidConstraint(text, f"{reason} ({_quote(side)})")
        return [("-", _operand(text, merged[0], merged[0]), _operand(text, merged[2], merged[2]))]
    items: list[_Item] = []
    for token in merged:
        match = _OP_RE.match(token)
        op = match.group() if match else ""
        if op == "~>":
            raise InvalidConstraint(text, f'"~>" is not supported, write "~" ({_quote(token)})')
        items.append((op, _operand(text, token, token[len(op) :]), ((), None)))
    return items


def _desugar(item: _Item, z: str | None) -> list[_Cmp]:
    """Primitive comparators of one item (§2 tables); ``z`` tags partial lower bounds."""
    op, (nums, pre), (top, top_pre) = item
    if op == "-":
        out = [_Cmp(">=", _pad(nums), pre or z)] if nums else []
        if 0 < len(top) < 3:
            out.append(_Cmp("<", _bump(top, len(top) - 1), "0"))
        elif top and (top_pre or z is None):
            out.append(_Cmp("<=", top, top_pre))
        elif top:  # include_prerelease: <=2.3.4 becomes <2.3.5-0
            out.append(_Cmp("<", _bump(top, 2), "0"))
        return out
    if not nums:
        return [_NULL] if op in ("<", ">") else []
    if len(nums) == 3 and op not in ("~", "^"):
        return [_Cmp(op or "=", nums, pre)]
    if op in ("", "=", "~", "^"):  # bump the part that must not change
        if len(nums) == 3:
            i = 1 if op == "~" or (not nums[0] and nums[1]) else 0 if nums[0] else 2
        else:
            i = 0 if op == "^" and nums[0] else len(nums) - 1
        lower = _Cmp(">=", _pad(nums), pre if len(nums) == 3 else z)
        return [lower, _Cmp("<", _bump(nums, i), "0")]
    if op == ">":  # >1.2 is >=1.3.0
        return [_Cmp(">=", _bump(nums, len(nums) - 1), z)]
    if op == "<=":  # <=1.2 is <1.3.0-0
        return [_Cmp("<", _bump(nums, len(nums) - 1), "0")]
    return [_Cmp(op, _pad(nums), "0" if op == "<" else z)]


def _normalise(sets: list[list[_Item]], z: str | None) -> _Sets:
    """Desugar and simplify like npm's Range: drop >=0.0.0, null sets, collapse to ``*``."""
    gte0 = _Cmp(">=", (0, 0, 0), z)
    out: list[tuple[_Cmp, ...]] = []
    for items in sets:
        cmps = [c for item in items for c in _desugar(item, z) if c != gte0]
        out.append((_NULL,) if _NULL in cmps else tuple(dict.fromkeys(cmps)))
    if len(out) > 1:
        out = [s for s in out if s != (_NULL,)] or out[:1]
        # NOTE: npm collapses `* || x` to `*`, which drops x's pre-release opt-in; kept.
        if len(out) > 1 and () in out:
            out = [()]
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Constraint:
    """A parsed, immutable constraint (equal and hashed by ``raw``); use `parse_constraint`."""

    raw: str
    # Both indexed by include_prerelease: npm desugars partial bounds differently under it.
    _sets: tuple[_Sets, _Sets] = field(compare=False, repr=False)
    _match: tuple[tuple[_Interval, ...], tuple[_Interval, ...]] = field(compare=False, repr=False)

    def __str__(self) -> str:
        return self.desugared()

    def desugared(self, *, include_prerelease: bool = False) -> str:
        """npm's desugared form, sets joined by `` || ``, ``*`` for any: ``>=1.2.0 <2.0.0-0``."""
        sets = self._sets[include_prerelease]
        return " || ".join(" ".join(map(str, s)) or "*" for s in sets)

    @property
    def is_exact(self) -> bool:
        """True for a single ``=X.Y.Z[-pre]`` comparator (``1.2.3``, ``=1.2.3``, ``v1.2.3+b``)."""
        sets = self._sets[False]
        return len(sets) == 1 and len(sets[0]) == 1 and sets[0][0].op == "="

    def allows(self, version: semver.Version | str, *, include_prerelease: bool = False) -> bool:
        """Whether ``version`` satisfies the constraint (str must be strict SemVer)."""
        return self.allows_key(version_key(version), include_prerelease=include_prerelease)

    def allows_key(self, key: VersionKey, *, include_prerelease: bool = False) -> bool:
        """`allows` for a precomputed `version_key` (the gateway keeps one per version)."""
        for low, high, pre_ok in self._match[include_prerelease]:
            if low <= key < high and (include_prerelease or key[3] or key[:3] in pre_ok):
                return True
        return False

    def filter(
        self, versions: Iterable[semver.Version | str], *, include_prerelease: bool = False
    ) -> list[semver.Version]:
        """The satisfying versions, in the given order (str items are parsed)."""
        return [version for _, version in self._matching(versions, include_prerelease)]

    def best(
        self, versions: Iterable[semver.Version | str], *, include_prerelease: bool = False
    ) -> semver.Version | None:
        """The highest satisfying version (the first of equal ones), or None."""
        found = self._matching(versions, include_prerelease)
        return max(found, key=itemgetter(0), default=(None, None))[1]

    def _matching(
        self, versions: Iterable[semver.Version | str], include_prerelease: bool
    ) -> Iterator[tuple[VersionKey, semver.Version]]:
        match = self._match[include_prerelease]
        for version in versions:
            if isinstance(version, str):
                version = parse_version(version)
            try:  # version_key(), inlined for speed
                major, minor, patch, pre = _parts(version)
            except AttributeError:
                raise _type_error(version) from None
            key = (major, minor, patch, 0, pre_key(pre)) if pre else (major, minor, patch, 1, ())
            for low, high, pre_ok in match:
                if low <= key < high and (include_prerelease or key[3] or key[:3] in pre_ok):
                    yield key, version
                    break


def parse_constraint(text: str) -> Constraint:
    """Parse an npm-style range (deviations: module docstring); cached; `InvalidConstraint`."""
    if not isinstance(text, str):
        raise TypeError(f"a constraint must be given as str, not {type(text).__name__}")
    return _parse_constraint(text)


@lru_cache(maxsize=4096)
def _parse_constraint(text: str) -> Constraint:
    if len(text) > MAX_CONSTRAINT_LENGTH:
        reason = f"it is {len(text)} characters long, at most {MAX_CONSTRAINT_LENGTH} are accepted"
        raise InvalidConstraint(text, reason)
    if not text.strip():
        raise InvalidConstraint(text, "the constraint is empty (write * to accept any version)")
    alternatives = text.split("||")
    if not all(a.strip() for a in alternatives):
        reason = 'an alternative of "||" is empty (npm reads it as *; write * if that is meant)'
        raise InvalidConstraint(text, reason)
    sets = [_parse_set(text, alternative) for alternative in alternatives]
    forms = (_normalise(sets, None), _normalise(sets, "0"))
    return Constraint(
        text, forms, (tuple(map(_interval, forms[0])), tuple(map(_interval, forms[1])))
    )
