"""Table tests for `registry.constraints`: npm's range semantics as vectors.

The vectors were taken from the team's reference on npm ranges (node-semver 7.8.5's README,
"Ranges", and its test fixtures); its section numbers survive in the names below: §2 the
desugaring tables, §6 the worked rows (ids keep their numbers), §7 invalid input.
Desugared forms are compared with `str(constraint)`, which prints what node-semver 7.8.5
prints (`Range.range`) with sets joined by " || " and the any-set printed as "*"; npm
drops a `>=0.0.0` lower bound, so where §2 writes `>=0.0.0 <0.1.0-0` the printed form is
`<0.1.0-0` (as in §6 rows 8-11).
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import semver

from registry.constraints import (
    MAX_CONSTRAINT_LENGTH,
    Constraint,
    InvalidConstraint,
    InvalidVersion,
    parse_constraint,
    parse_version,
    version_key,
)

V = semver.Version.parse

# §6: (row, range, version, include_prerelease, expected, npm desugaring)
SECTION_6 = [
    (1, "^1.2.3", "1.9.9", False, True, ">=1.2.3 <2.0.0-0"),
    (2, "^1.2.3", "2.0.0", False, False, ">=1.2.3 <2.0.0-0"),
    (3, "^1.2.3", "1.2.2", False, False, ">=1.2.3 <2.0.0-0"),
    (4, "^0.2.3", "0.2.9", False, True, ">=0.2.3 <0.3.0-0"),
    (5, "^0.2.3", "0.3.0", False, False, ">=0.2.3 <0.3.0-0"),
    (6, "^0.0.3", "0.0.3", False, True, ">=0.0.3 <0.0.4-0"),
    (7, "^0.0.3", "0.0.4", False, False, ">=0.0.3 <0.0.4-0"),
    (8, "^0.0", "0.0.9", False, True, "<0.1.0-0"),
    (9, "^0.0", "0.1.0", False, False, "<0.1.0-0"),
    (10, "^0.x", "0.9.0", False, True, "<1.0.0-0"),
    (11, "^0", "0.99.99", False, True, "<1.0.0-0"),
    (12, "^1.2.x", "1.9.0", False, True, ">=1.2.0 <2.0.0-0"),
    (13, "~1.2.3", "1.2.9", False, True, ">=1.2.3 <1.3.0-0"),
    (14, "~1.2.3", "1.3.0", False, False, ">=1.2.3 <1.3.0-0"),
    (15, "~1", "1.9.0", False, True, ">=1.0.0 <2.0.0-0"),
    (16, "~0.0.1", "0.0.5", False, True, ">=0.0.1 <0.1.0-0"),
    (17, "^0.0.1", "0.0.5", False, False, ">=0.0.1 <0.0.2-0"),
    (18, "~1.2.3-beta.2", "1.2.3-beta.4", False, True, ">=1.2.3-beta.2 <1.3.0-0"),
    (19, "~1.2.3-beta.2", "1.2.4-beta.2", False, False, ">=1.2.3-beta.2 <1.3.0-0"),
    (20, "^1.2.3-beta.2", "1.2.3-beta.1", False, False, ">=1.2.3-beta.2 <2.0.0-0"),
    (21, "^1.2.3-beta.2", "1.5.0", False, True, ">=1.2.3-beta.2 <2.0.0-0"),
    (22, "^0.0.3-beta", "0.0.3-pr.2", False, True, ">=0.0.3-beta <0.0.4-0"),
    (23, "^0.0.3-beta", "0.0.4", False, False, ">=0.0.3-beta <0.0.4-0"),
    (24, "^1.2.3", "1.5.0-rc.1", False, False, ">=1.2.3 <2.0.0-0"),
    (25, "^1.2.3", "1.5.0-rc.1", True, True, ">=1.2.3 <2.0.0-0"),
    (26, "^1.2.3", "2.0.0-rc.1", True, False, ">=1.2.3 <2.0.0-0"),
]


@pytest.mark.parametrize(
    ("text", "version", "include_prerelease", "expected", "desugared"),
    [row[1:] for row in SECTION_6],
    ids=[str(row[0]) for row in SECTION_6],
)
def test_section_6_vectors(
    text: str, version: str, include_prerelease: bool, expected: bool, desugared: str
) -> None:
    constraint = parse_constraint(text)
    assert constraint.allows(version, include_prerelease=include_prerelease) is expected
    assert constraint.allows(V(version), include_prerelease=include_prerelease) is expected
    assert str(constraint) == desugared


# §2 desugaring tables: (input, printed form, a version inside, a version outside).
SECTION_2 = [
    # X-ranges and partial versions
    ("*", "*", "0.0.0", "1.0.0-rc.1"),
    ("x", "*", "9.9.9", "0.0.1-alpha"),
    ("1", ">=1.0.0 <2.0.0-0", "1.5.0", "2.0.0"),
    ("1.x", ">=1.0.0 <2.0.0-0", "1.0.0", "0.9.9"),
    ("1.x.x", ">=1.0.0 <2.0.0-0", "1.9.9", "2.0.0-0"),
    ("1.*", ">=1.0.0 <2.0.0-0", "1.2.3", "2.0.0"),
    ("1.2", ">=1.2.0 <1.3.0-0", "1.2.9", "1.3.0"),
    ("1.2.x", ">=1.2.0 <1.3.0-0", "1.2.0", "1.1.9"),
    ("=1.2", ">=1.2.0 <1.3.0-0", "1.2.5", "1.3.0"),
    (">1", ">=2.0.0", "2.0.0", "1.9.9"),
    (">1.2", ">=1.3.0", "1.3.0", "1.2.9"),
    (">=1.2", ">=1.2.0", "1.2.0", "1.1.9"),
    ("<1", "<1.0.0-0", "0.9.9", "1.0.0"),
    ("<1.2", "<1.2.0-0", "1.1.9", "1.2.0"),
    ("<=1", "<2.0.0-0", "1.9.9", "2.0.0"),
    ("<=1.2", "<1.3.0-0", "1.2.9", "1.3.0"),
    (">*", "<0.0.0-0", None, "0.0.0"),
    ("<*", "<0.0.0-0", None, "9.9.9"),
    # Tilde
    ("~1.2.3", ">=1.2.3 <1.3.0-0", "1.2.9", "1.3.0"),
    ("~1.2", ">=1.2.0 <1.3.0-0", "1.2.0", "1.3.0"),
    ("~1", ">=1.0.0 <2.0.0-0", "1.9.0", "2.0.0"),
    ("~0.2.3", ">=0.2.3 <0.3.0-0", "0.2.9", "0.3.0"),
    ("~0.0.1", ">=0.0.1 <0.1.0-0", "0.0.9", "0.1.0"),
    ("~1.2.3-beta.2", ">=1.2.3-beta.2 <1.3.0-0", "1.2.3-beta.4", "1.2.4-beta.2"),
    # Caret
    ("^1.2.3", ">=1.2.3 <2.0.0-0", "1.9.9", "2.0.0"),
    ("^0.2.3", ">=0.2.3 <0.3.0-0", "0.2.9", "0.3.0"),
    ("^0.0.3", ">=0.0.3 <0.0.4-0", "0.0.3", "0.0.4"),
    ("^1.2.x", ">=1.2.0 <2.0.0-0", "1.9.0", "1.1.9"),
    ("^1.2", ">=1.2.0 <2.0.0-0", "1.2.0", "2.0.0"),
    ("^0.0.x", "<0.1.0-0", "0.0.9", "0.1.0"),  # §2 writes >=0.0.0 <0.1.0-0
    ("^0.0", "<0.1.0-0", "0.0.0", "0.1.0"),  # §2 writes >=0.0.0 <0.1.0-0
    ("^1.x", ">=1.0.0 <2.0.0-0", "1.0.0", "2.0.0"),
    ("^1", ">=1.0.0 <2.0.0-0", "1.9.9", "0.9.9"),
    ("^0.x", "<1.0.0-0", "0.99.99", "1.0.0"),  # §2 writes >=0.0.0 <1.0.0-0
    ("^0", "<1.0.0-0", "0.0.0", "1.0.0"),  # §2 writes >=0.0.0 <1.0.0-0
    ("^1.2.3-beta.2", ">=1.2.3-beta.2 <2.0.0-0", "1.2.3-beta.3", "1.2.3-beta.1"),
    ("^0.0.3-beta", ">=0.0.3-beta <0.0.4-0", "0.0.3-pr.2", "0.0.4"),
    # Hyphen ranges
    ("1.2.3 - 2.3.4", ">=1.2.3 <=2.3.4", "2.3.4", "2.3.5"),
    ("1.2 - 2.3.4", ">=1.2.0 <=2.3.4", "1.2.0", "1.1.9"),
    ("1.2.3 - 2.3", ">=1.2.3 <2.4.0-0", "2.3.9", "2.4.0"),
    ("1.2.3 - 2", ">=1.2.3 <3.0.0-0", "2.9.9", "3.0.0"),
    ("1.2.3 - *", ">=1.2.3", "9.0.0", "1.2.2"),
    ("* - 1.2", "<1.3.0-0", "0.0.0", "1.3.0"),
    # || and comparator sets
    (">=1.2.7 <1.3.0", ">=1.2.7 <1.3.0", "1.2.7", "1.3.0"),
    ("1.2.7 || >=1.2.9 <2.0.0", "1.2.7 || >=1.2.9 <2.0.0", "1.2.9", "1.2.8"),
    (">=1.0.0 <1.0.0", ">=1.0.0 <1.0.0", None, "1.0.0"),
]


@pytest.mark.parametrize(("text", "desugared", "inside", "outside"), SECTION_2, ids=repr)
def test_section_2_desugaring(text: str, desugared: str, inside: str | None, outside: str) -> None:
    constraint = parse_constraint(text)
    assert str(constraint) == desugared
    assert constraint.raw == text
    if inside is not None:
        assert constraint.allows(inside)
    assert not constraint.allows(outside)


def test_hole_between_alternatives() -> None:
    constraint = parse_constraint("1.2.7 || >=1.2.9 <2.0.0")
    assert [constraint.allows(v) for v in ("1.2.7", "1.2.8", "1.2.9", "2.0.0")] == [
        True,
        False,
        True,
        False,
    ]


@pytest.mark.parametrize(
    ("text", "include_prerelease"),
    [(">*", False), (">*", True), ("<*", False), ("<*", True), (">=1.0.0 <1.0.0", True)],
)
def test_null_and_contradictory_sets_match_nothing(text: str, include_prerelease: bool) -> None:
    versions = ["0.0.0-0", "0.0.0", "1.0.0-rc.1", "1.0.0", "99.0.0"]
    assert parse_constraint(text).filter(versions, include_prerelease=include_prerelease) == []


# §2 "The pre-release exclusion rule": (range, version, expected)
PRERELEASE_RULE = [
    (">1.2.3-alpha.3", "1.2.3-alpha.7", True),
    (">1.2.3-alpha.3", "3.4.5-alpha.9", False),
    (">1.2.3-alpha.3", "3.4.5", True),
    ("~1.2.3-beta.2", "1.2.3-beta.4", True),
    ("~1.2.3-beta.2", "1.2.4-beta.2", False),
    ("<1.2.3", "1.2.3-beta", False),
    ("^1.2.3", "1.5.0-rc.1", False),
]


@pytest.mark.parametrize(("text", "version", "expected"), PRERELEASE_RULE, ids=repr)
def test_prerelease_exclusion_rule(text: str, version: str, expected: bool) -> None:
    assert parse_constraint(text).allows(version) is expected


# §2 "includePrerelease": (range, version, expected with / without the option)
INCLUDE_PRERELEASE = [
    ("*", "0.0.0-alpha", True, False),
    ("*", "5.0.0-rc.1", True, False),
    ("^1.2", "1.2.0-beta", True, False),
    ("1.2.x", "1.2.0-beta", True, False),
    ("~1.2", "1.2.0-beta", True, False),  # since 7.8.5
    ("^1.2.3", "1.2.3-rc.1", False, False),  # full versions keep their exact lower bound
    ("^0.0.3", "0.0.3-alpha", False, False),  # since 7.8.3
    ("^1.2.3", "1.5.0-rc.1", True, False),
    ("^1.2.3", "2.0.0-rc.1", False, False),  # upper bounds stay at -0
    ("1.2.3 - 2.3.4", "1.2.3-alpha", True, False),  # >=1.2.3-0
    ("1.2.3 - 2.3.4", "2.3.4-rc.1", True, False),
    ("1.2.3 - 2.3.4", "2.3.5-0", False, False),  # <2.3.5-0
    ("<1.2.3", "1.2.3-beta", True, False),
]


@pytest.mark.parametrize(("text", "version", "with_option", "without"), INCLUDE_PRERELEASE)
def test_include_prerelease(text: str, version: str, with_option: bool, without: bool) -> None:
    constraint = parse_constraint(text)
    assert constraint.allows(version, include_prerelease=True) is with_option
    assert constraint.allows(version) is without


@pytest.mark.parametrize(
    ("text", "desugared"),
    [
        ("*", "*"),
        ("^1.2", ">=1.2.0-0 <2.0.0-0"),
        ("1.2.x", ">=1.2.0-0 <1.3.0-0"),
        ("~1.2", ">=1.2.0-0 <1.3.0-0"),
        ("^1.2.3", ">=1.2.3 <2.0.0-0"),
        ("^0.0.3", ">=0.0.3 <0.0.4-0"),
        ("1.2.3 - 2.3.4", ">=1.2.3-0 <2.3.5-0"),
    ],
)
def test_include_prerelease_desugaring(text: str, desugared: str) -> None:
    assert parse_constraint(text).desugared(include_prerelease=True) == desugared


# §7 and the deliberate deviations: (text, a fragment the message must contain)
INVALID = [
    ("1.2.3.4", "at most three numbers"),
    (">=abc", "not a version"),
    ("1.x.3", "a number cannot follow an x-range"),
    ("01.2.3", "leading zeros"),
    ("^1.2.3 ||", "empty"),
    ("||", "empty"),
    ("a || || b", "empty"),
    ("~", "needs a version"),
    ("^", "needs a version"),
    (">1.2.3 - 2", "without an operator"),
    ("1.2.3 - >2", "without an operator"),
    ("~>1.2.3", '"~>" is not supported'),
    ("", "write * to accept any version"),
    ("  \t ", "write * to accept any version"),
    ("^1.x.3", "a number cannot follow an x-range"),
    ("1.2.x-beta", "needs a full MAJOR.MINOR.PATCH"),
    ("1.2-beta", "needs a full MAJOR.MINOR.PATCH"),
    ("1.2.3-01", "leading zeros"),
    ("~=1.2", "operators cannot be combined"),
    ("==1.2.3", "operators cannot be combined"),
    (">=1.2, <2", "not commas"),
    ("1 | 2", '"||"'),
    ("1.2.3 - 2 - 3", "hyphen range"),
    ("1.2.3 - 2 >1", "hyphen range"),
    ("1.2.3 -", "hyphen range"),
    ("1.2.3-", "not a version"),
    (">=", "needs a version"),
    ("V1.2.3", "not a version"),
]


@pytest.mark.parametrize(("text", "fragment"), INVALID, ids=repr)
def test_invalid_constraints(text: str, fragment: str) -> None:
    with pytest.raises(InvalidConstraint) as caught:
        parse_constraint(text)
    message = str(caught.value)
    assert message.startswith(f"invalid constraint {json.dumps(text)}: ")
    assert fragment in message
    assert message.endswith(
        "; use forms like 1.2.3, ^1.2, ~1.2.3, >=1.0 <2, 1.x, 1.2.3 - 2.0.0, a || b"
    )
    assert caught.value.constraint == text
    assert isinstance(caught.value, ValueError)


def test_error_message_matches_the_documented_example() -> None:
    with pytest.raises(InvalidConstraint) as caught:
        parse_constraint("1.x.3")
    assert str(caught.value) == (
        'invalid constraint "1.x.3": a number cannot follow an x-range ("1.x.3"); '
        "use forms like 1.2.3, ^1.2, ~1.2.3, >=1.0 <2, 1.x, 1.2.3 - 2.0.0, a || b"
    )
    assert caught.value.reason == 'a number cannot follow an x-range ("1.x.3")'


def test_length_is_bounded() -> None:
    at_limit = " || ".join(["1.2.3"] * 28).ljust(MAX_CONSTRAINT_LENGTH)
    assert len(at_limit) == MAX_CONSTRAINT_LENGTH
    assert parse_constraint(at_limit).allows("1.2.3")
    too_long = at_limit + "0"
    with pytest.raises(InvalidConstraint, match="257 characters long, at most 256") as caught:
        parse_constraint(too_long)
    assert caught.value.constraint == too_long


@pytest.mark.parametrize(
    ("text", "desugared"),
    [
        ("1.2.3 - 1.2.3", ">=1.2.3 <=1.2.3"),  # §7: matches only 1.2.3
        (" ^ 1.2.3", ">=1.2.3 <2.0.0-0"),  # §7
        ("^ 1.2.3", ">=1.2.3 <2.0.0-0"),
        (">= 1.2.3", ">=1.2.3"),
        ("~ 1.2.3", ">=1.2.3 <1.3.0-0"),
        ("< 2  >=\t1", "<2.0.0-0 >=1.0.0"),
        ("v1.2.3", "1.2.3"),
        ("=1.2.3", "1.2.3"),
        ("=v1.2.3", "1.2.3"),
        ("^v1.2.3", ">=1.2.3 <2.0.0-0"),
        ("v1.2.3 - v2", ">=1.2.3 <3.0.0-0"),
        ("1.2.3+build.7", "1.2.3"),
        ("^1.2.3+build", ">=1.2.3 <2.0.0-0"),
        ("1.2.3||2", "1.2.3 || >=2.0.0 <3.0.0-0"),
        ("* || 1.2.3-beta", "*"),  # npm collapses a range with an any-set to *
        ("<0.0.0-0 || 1.2.3", "1.2.3"),  # null sets are dropped when others exist
        (">=0.0.0", "*"),
        ("1.2.3 1.2.3", "1.2.3"),
        ("~* ^x >=*", "*"),
    ],
)
def test_accepted_spellings(text: str, desugared: str) -> None:
    assert str(parse_constraint(text)) == desugared


def test_hyphen_range_of_one_version() -> None:
    constraint = parse_constraint("1.2.3 - 1.2.3")
    assert constraint.filter(["1.2.2", "1.2.3-rc.1", "1.2.3", "1.2.3+b", "1.2.4"]) == [
        V("1.2.3"),
        V("1.2.3+b"),
    ]


def test_build_metadata_is_ignored() -> None:
    assert parse_constraint("1.2.3+abc").allows("1.2.3+xyz")
    assert parse_constraint("<=1.2.3").allows(V("1.2.3+build.9"))
    assert not parse_constraint(">1.2.3").allows("1.2.3+build.9")


def test_star_or_prerelease_collapse_keeps_npm_behaviour() -> None:
    # npm turns `* || 1.2.3-beta` into `*`, so the pre-release opt-in is lost.
    assert not parse_constraint("* || 1.2.3-beta").allows("1.2.3-beta")
    assert parse_constraint("1.x || 1.2.3-beta").allows("1.2.3-beta")


@pytest.mark.parametrize(
    ("text", "exact"),
    [
        ("1.2.3", True),
        ("=1.2.3", True),
        ("v1.2.3+build", True),
        ("1.2.3-rc.1", True),
        ("1.2", False),
        ("1.2.3 - 1.2.3", False),
        (">=1.2.3", False),
        ("^1.2.3", False),
        ("1.2.3 || 1.2.4", False),
        ("*", False),
    ],
)
def test_is_exact(text: str, exact: bool) -> None:
    assert parse_constraint(text).is_exact is exact


# `best` and `filter`
VERSIONS = ["0.9.0", "1.0.0", "1.2.0-rc.1", "1.2.0", "1.3.0-beta.1", "1.4.2", "2.0.0-rc.1", "2.0.0"]


@pytest.mark.parametrize(
    ("text", "include_prerelease", "expected"),
    [
        ("^1.0", False, "1.4.2"),
        ("^1.0", True, "1.4.2"),
        ("~1.3", False, None),
        ("~1.3", True, "1.3.0-beta.1"),
        ("~1.3.0-beta.0", False, "1.3.0-beta.1"),
        (">=1.2.0-rc.0 <1.2.0", False, "1.2.0-rc.1"),
        ("^2.0.0-rc.0", False, "2.0.0"),
        (">=2.0.0-rc.1 <2.0.0", False, "2.0.0-rc.1"),
        ("*", False, "2.0.0"),
        ("<2", True, "1.4.2"),
        ("<=2.0.0 >1.4.2", False, "2.0.0"),
        ("<=2.0.0 >1.4.2", True, "2.0.0"),
        ("<2.0.0 >1.4.2", False, None),
        ("<2.0.0 >1.4.2", True, "2.0.0-rc.1"),  # unlike <2 (<2.0.0-0)
        (">=3", False, None),
        ("0.9.0 || 1.0.0", False, "1.0.0"),
    ],
)
def test_best(text: str, include_prerelease: bool, expected: str | None) -> None:
    constraint = parse_constraint(text)
    parsed = [V(v) for v in VERSIONS]
    for candidates in (VERSIONS, parsed, list(reversed(parsed)), iter(parsed)):
        best = constraint.best(candidates, include_prerelease=include_prerelease)
        assert best == (None if expected is None else V(expected))


def test_best_of_nothing_and_of_equal_versions() -> None:
    assert parse_constraint("*").best([]) is None
    first, second = V("1.0.0+a"), V("1.0.0+b")
    assert parse_constraint("1").best([first, second]) is first
    assert parse_constraint("1").best([second, first]) is second


def test_best_returns_the_given_object_or_a_parsed_version() -> None:
    version = V("1.4.2")
    assert parse_constraint("^1").best([V("1.0.0"), version]) is version
    assert parse_constraint("^1").best(["1.0.0", "1.4.2+b"]) == V("1.4.2")


def test_filter_keeps_the_given_order() -> None:
    constraint = parse_constraint(">=1.0.0 <2 || 0.9.0")
    assert constraint.filter(list(reversed(VERSIONS))) == [
        V("1.4.2"),
        V("1.2.0"),
        V("1.0.0"),
        V("0.9.0"),
    ]
    assert constraint.filter(VERSIONS, include_prerelease=True) == [
        V(v) for v in ("0.9.0", "1.0.0", "1.2.0-rc.1", "1.2.0", "1.3.0-beta.1", "1.4.2")
    ]


# The Constraint object
def test_parse_is_cached_and_constraint_is_immutable() -> None:
    constraint = parse_constraint("^1.2")
    assert parse_constraint("^1.2") is constraint
    with pytest.raises(dataclasses.FrozenInstanceError):
        constraint.raw = "^2"  # type: ignore[misc]
    assert constraint == Constraint("^1.2", constraint._sets, constraint._match)
    assert constraint != parse_constraint("^1.2.0")  # equality is by raw text
    assert hash(constraint) == hash(parse_constraint("^1.2"))
    assert repr(constraint) == "Constraint(raw='^1.2')"


def test_non_strings_are_type_errors() -> None:
    with pytest.raises(TypeError, match="str"):
        parse_constraint(1.2)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="str"):
        parse_version(b"1.2.3")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"semver\.Version or str"):
        parse_constraint("*").allows((1, 2, 3))  # type: ignore[arg-type]


def test_allows_rejects_invalid_version_text() -> None:
    with pytest.raises(InvalidVersion, match=r'"v1\.2\.3"'):
        parse_constraint("*").allows("v1.2.3")


# Versions: §1 precedence and §7 version rows
def test_parse_version() -> None:
    assert parse_version("2.0.0-rc.1+build.5") == semver.Version(2, 0, 0, "rc.1", "build.5")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("v1.2.3", 'a leading "v" is not part of a version'),  # §7
        ("01.2.3", "leading zeros"),  # §7
        ("1.2", "all three numbers"),
        ("1.2.3.4", "at most three numbers"),
        ("1.2.3-01", "leading zeros"),
        ("=1.2.3", 'a leading "="'),
        ("1.x.3", "not a SemVer version"),
        ("", "not a SemVer version"),
        ("1" * 300, "at most 256 characters"),
    ],
)
def test_invalid_versions(text: str, fragment: str) -> None:
    with pytest.raises(InvalidVersion) as caught:
        parse_version(text)
    assert fragment in str(caught.value)
    assert str(caught.value).endswith(
        "expected MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD], e.g. 1.2.3 or 2.0.0-rc.1"
    )
    assert caught.value.value == text
    assert isinstance(caught.value, ValueError)


def test_version_key_orders_like_the_spec() -> None:
    ordered = [
        "1.0.0-1",
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0-rc.2",
        "1.0.0-rc.10",
        "1.0.0",
        "1.0.1-0",
        "1.0.1",
        "1.10.0",
        "2.0.0",
    ]
    assert sorted(reversed(ordered), key=version_key) == ordered
    assert version_key("1.0.0+a") == version_key(V("1.0.0+b")) == version_key("1.0.0")
    assert version_key(semver.Version(1, 0, 0, "")) == version_key("1.0.0")
