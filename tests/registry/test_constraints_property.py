"""Property tests: `registry.constraints` against an independent oracle, and against npm.

The oracle below desugars the generated syntax tree into comparator *strings* the way
node-semver's README ("Ranges") and `classes/range.js` spell them, then
checks a version with `semver.Version.compare` and the pre-release rule. It shares no code
with the module. When `node` and a node-semver 7.8.5 copy are installed locally, the module
is also compared with npm itself on a fixed set of ranges (nothing is downloaded).
"""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import semver
from hypothesis import given, settings
from hypothesis import strategies as st

from registry.constraints import parse_constraint, version_key

X_CHARS = ("x", "X", "*")
OPS = ("", "=", "<", "<=", ">", ">=", "~", "^")


@dataclass(frozen=True)
class Partial:
    parts: tuple[str, ...]  # digits or x characters, numbers first
    pre: str | None


@dataclass(frozen=True)
class Item:
    op: str  # one of OPS, or "-" for a hyphen range
    operand: Partial
    upper: Partial | None = None


Tree = list[list[Item]]  # OR of ANDs

# --- strategies ---------------------------------------------------------------------------

numbers = st.integers(0, 3)
prereleases = st.lists(
    st.sampled_from(["alpha", "beta", "rc", "0", "1", "2", "x-1"]), min_size=1, max_size=2
).map(".".join)
builds = st.sampled_from(["b1", "build.5", "0-x"])


@st.composite
def partials(draw: st.DrawFn) -> tuple[str, Partial]:
    size = draw(st.integers(1, 3))
    given_numbers = draw(st.integers(0, size))
    parts = tuple(str(draw(numbers)) for _ in range(given_numbers)) + tuple(
        draw(st.sampled_from(X_CHARS)) for _ in range(size - given_numbers)
    )
    pre = draw(st.none() | prereleases) if given_numbers == 3 else None
    build = draw(st.none() | builds)
    prefix = draw(st.sampled_from(["", "", "v"]))
    text = prefix + ".".join(parts) + (f"-{pre}" if pre else "") + (f"+{build}" if build else "")
    return text, Partial(parts, pre)


@st.composite
def comparator_sets(draw: st.DrawFn) -> tuple[str, list[Item]]:
    if draw(st.integers(0, 4)) == 0:
        (low_text, low), (high_text, high) = draw(partials()), draw(partials())
        return f"{low_text} - {high_text}", [Item("-", low, high)]
    texts, items = [], []
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(OPS))
        text, operand = draw(partials())
        texts.append(op + draw(st.sampled_from(["", " "]) if op else st.just("")) + text)
        items.append(Item(op, operand))
    return draw(st.sampled_from([" ", "  ", "\t"])).join(texts), items


@st.composite
def constraints(draw: st.DrawFn) -> tuple[str, Tree]:
    sets = draw(st.lists(comparator_sets(), min_size=1, max_size=3))
    separator = draw(st.sampled_from([" || ", "||", "  ||  "]))
    return separator.join(text for text, _ in sets), [items for _, items in sets]


versions = st.builds(
    semver.Version,
    numbers,
    numbers,
    numbers,
    st.none() | st.none() | prereleases,
    st.none() | builds,
)

# --- the oracle ---------------------------------------------------------------------------


def _numbers(partial: Partial) -> list[int | None]:
    given = [int(p) for p in partial.parts if p not in X_CHARS]
    return given + [None] * (3 - len(given))


def oracle_desugar(item: Item, include_prerelease: bool) -> str:
    """Comparator text for one item, spelled as in §2 / node-semver's range.js."""
    z = "-0" if include_prerelease else ""
    major, minor, patch = _numbers(item.operand)
    pre = f"-{item.operand.pre}" if item.operand.pre else ""
    if item.op == "-":
        assert item.upper is not None
        to_major, to_minor, to_patch = _numbers(item.upper)
        to_pre = f"-{item.upper.pre}" if item.upper.pre else ""
        if major is None:
            low = ""
        elif minor is None:
            low = f">={major}.0.0{z}"
        elif patch is None:
            low = f">={major}.{minor}.0{z}"
        else:
            low = f">={major}.{minor}.{patch}{pre or z}"
        if to_major is None:
            high = ""
        elif to_minor is None:
            high = f"<{to_major + 1}.0.0-0"
        elif to_patch is None:
            high = f"<{to_major}.{to_minor + 1}.0-0"
        elif to_pre:
            high = f"<={to_major}.{to_minor}.{to_patch}{to_pre}"
        elif include_prerelease:
            high = f"<{to_major}.{to_minor}.{to_patch + 1}-0"
        else:
            high = f"<={to_major}.{to_minor}.{to_patch}"
        return f"{low} {high}"
    if item.op in ("~", "^"):
        if major is None:
            return ""
        if minor is None:
            return f">={major}.0.0{z} <{major + 1}.0.0-0"
        if patch is None:
            if item.op == "^" and major != 0:
                return f">={major}.{minor}.0{z} <{major + 1}.0.0-0"
            return f">={major}.{minor}.0{z} <{major}.{minor + 1}.0-0"
        low = f">={major}.{minor}.{patch}{pre}"
        if item.op == "~" or (major == 0 and minor != 0):
            return f"{low} <{major}.{minor + 1}.0-0"
        if major != 0:
            return f"{low} <{major + 1}.0.0-0"
        return f"{low} <0.0.{patch + 1}-0"
    # primitives and x-ranges
    op = item.op
    if major is None:
        return "<0.0.0-0" if op in ("<", ">") else ""
    if patch is not None:  # npm prints `=1.2.3` as `1.2.3`
        return f"{'' if op == '=' else op}{major}.{minor}.{patch}{pre}"
    if op in ("", "="):
        if minor is None:
            return f">={major}.0.0{z} <{major + 1}.0.0-0"
        return f">={major}.{minor}.0{z} <{major}.{minor + 1}.0-0"
    if op == ">":
        return f">={major + 1}.0.0{z}" if minor is None else f">={major}.{minor + 1}.0{z}"
    if op == "<=":
        return f"<{major + 1}.0.0-0" if minor is None else f"<{major}.{minor + 1}.0-0"
    return f"{op}{major}.{minor or 0}.0{'-0' if op == '<' else z}"


def oracle_sets(tree: Tree, include_prerelease: bool) -> list[list[str]]:
    """npm's Range post-processing: drop >=0.0.0, null sets, duplicates; * absorbs ||."""
    gte0 = ">=0.0.0-0" if include_prerelease else ">=0.0.0"
    sets = []
    for items in tree:
        comparators = " ".join(oracle_desugar(i, include_prerelease) for i in items).split()
        comparators = [c for c in comparators if c != gte0]
        if "<0.0.0-0" in comparators:
            comparators = ["<0.0.0-0"]
        sets.append(list(dict.fromkeys(comparators)))
    if len(sets) > 1:
        sets = [s for s in sets if s != ["<0.0.0-0"]] or sets[:1]
        if len(sets) > 1 and [] in sets:
            sets = [[]]
    return sets


TESTS = {
    "": lambda c: c == 0,
    "<": lambda c: c < 0,
    "<=": lambda c: c <= 0,
    ">": lambda c: c > 0,
    ">=": lambda c: c >= 0,
}


def oracle_set_allows(comparators: list[str], version: semver.Version, incl: bool) -> bool:
    parsed = []
    for text in comparators:
        match = re.fullmatch(r"(<=|>=|<|>|)(.+)", text)
        assert match is not None
        parsed.append((match[1], semver.Version.parse(match[2])))
    if not all(TESTS[op](version.compare(bound)) for op, bound in parsed):
        return False
    # The pre-release rule: a tagged version needs a tagged comparator on its own tuple.
    return (
        not version.prerelease
        or incl
        or any(
            bound.prerelease and bound.to_tuple()[:3] == version.to_tuple()[:3]
            for _, bound in parsed
        )
    )


def oracle_allows(tree: Tree, version: semver.Version, include_prerelease: bool) -> bool:
    return any(
        oracle_set_allows(comparators, version, include_prerelease)
        for comparators in oracle_sets(tree, include_prerelease)
    )


def boundary_versions(tree: Tree) -> list[semver.Version]:
    """Versions at and just past every operand of the tree, where off-by-one bugs show."""
    out = []
    for item in (i for items in tree for i in items):
        for partial in filter(None, (item.operand, item.upper)):
            major, minor, patch = (n or 0 for n in _numbers(partial))
            for base in ((major, minor, patch), (major, minor, patch + 1), (major, minor + 1, 0)):
                out += [semver.Version(*base, pre) for pre in (None, "0", partial.pre) if pre != ""]
            out.append(semver.Version(major + 1, 0, 0))
    return out


# --- properties ---------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(constraints(), st.lists(versions, min_size=1, max_size=8))
def test_allows_agrees_with_the_oracle(
    constraint: tuple[str, Tree], candidates: list[semver.Version]
) -> None:
    text, tree = constraint
    parsed = parse_constraint(text)
    candidates = candidates + boundary_versions(tree)
    for include_prerelease in (False, True):
        expected = [oracle_allows(tree, v, include_prerelease) for v in candidates]
        got = [parsed.allows(v, include_prerelease=include_prerelease) for v in candidates]
        assert got == expected, (text, parsed.desugared(include_prerelease=include_prerelease))
        assert parsed.desugared(include_prerelease=include_prerelease) == " || ".join(
            " ".join(s) or "*" for s in oracle_sets(tree, include_prerelease)
        )


@settings(max_examples=200, deadline=None)
@given(constraints(), st.lists(versions, max_size=12), st.booleans())
def test_best_and_filter_agree_with_allows(
    constraint: tuple[str, Tree], candidates: list[semver.Version], include_prerelease: bool
) -> None:
    parsed = parse_constraint(constraint[0])
    allowed = [v for v in candidates if parsed.allows(v, include_prerelease=include_prerelease)]
    assert parsed.filter(candidates, include_prerelease=include_prerelease) == allowed
    best = parsed.best(candidates, include_prerelease=include_prerelease)
    if not allowed:
        assert best is None
    else:
        assert best is not None
        assert all(best.compare(v) >= 0 for v in allowed)
        assert best is next(v for v in allowed if v.compare(best) == 0)


@settings(max_examples=200, deadline=None)
@given(constraints(), st.lists(versions, min_size=1, max_size=8))
def test_printed_form_parses_to_the_same_constraint(
    constraint: tuple[str, Tree], candidates: list[semver.Version]
) -> None:
    parsed = parse_constraint(constraint[0])
    reparsed = parse_constraint(str(parsed))
    assert str(reparsed) == str(parsed)
    assert [reparsed.allows(v) for v in candidates] == [parsed.allows(v) for v in candidates]


@settings(max_examples=500)
@given(versions, versions)
def test_version_key_orders_like_semver_compare(a: semver.Version, b: semver.Version) -> None:
    expected = a.compare(b)
    assert (version_key(a) > version_key(b)) - (version_key(a) < version_key(b)) == expected
    assert version_key(str(a)) == version_key(a)


# --- differential test against node-semver 7.8.5, when it is installed locally -------------

NODE_SCRIPT = """
const semver = require(process.argv[1]);
const {ranges, versions} = JSON.parse(require("fs").readFileSync(0, "utf8"));
process.stdout.write(JSON.stringify(ranges.map(r => [false, true].map(inc => {
  const range = new semver.Range(r, {includePrerelease: inc});
  return [range.range, versions.map(v => (range.test(v) ? "1" : "0")).join("")];
}))));
"""


def _node_semver() -> tuple[str, Path] | None:
    node = shutil.which("node")
    if node is None:
        return None
    roots = [Path(node).resolve().parent.parent / "lib" / "node_modules"]
    candidates = [Path(os.environ["NODE_SEMVER_DIR"])] if "NODE_SEMVER_DIR" in os.environ else []
    candidates += [root / "semver" for root in roots]
    candidates += [root / "npm" / "node_modules" / "semver" for root in roots]
    for candidate in candidates:
        manifest = candidate / "package.json"
        if manifest.is_file() and json.loads(manifest.read_text())["version"] == "7.8.5":
            return node, candidate
    return None


def _differential_ranges() -> list[str]:
    partial_texts = [
        ".".join(parts)
        for size in (1, 2, 3)
        for parts in itertools.product(("0", "1", "2", "x"), repeat=size)
        if "x" not in parts or all(p == "x" for p in parts[parts.index("x") :])
    ] + ["1.1.1-alpha", "0.0.1-beta.1", "1.0.0-0", "0.1.0-rc.2", "2.0.0-alpha", "0.0.0-0", "*"]
    atoms = [op + p for op in OPS for p in partial_texts]
    hyphens = [f"{a} - {b}" for a in partial_texts for b in partial_texts]
    rng = random.Random(7)
    return (
        atoms
        + rng.sample(hyphens, 400)
        + [f"{rng.choice(atoms)} {rng.choice(atoms)}" for _ in range(400)]
        + [f"{rng.choice(atoms + hyphens)} || {rng.choice(atoms)}" for _ in range(400)]
        + ["* || 1.1.1-alpha", "<0.0.0-0 || 1", ">= 1.2.3", "^ 1.2.3", "v1.2.3 - 2+b"]
    )


def test_agrees_with_node_semver() -> None:
    found = _node_semver()
    if found is None:
        pytest.skip("node with a local node-semver 7.8.5 is not installed")
    node, package = found
    ranges = _differential_ranges()
    version_texts = [
        f"{a}.{b}.{c}{pre}"
        for a, b, c in itertools.product(range(3), repeat=3)
        for pre in ("", "-0", "-alpha", "-alpha.1", "-beta.2", "-rc.2")
    ]
    completed = subprocess.run(
        [node, "-e", NODE_SCRIPT, str(package)],
        input=json.dumps({"ranges": ranges, "versions": version_texts}),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    mismatches = []
    for text, npm in zip(ranges, json.loads(completed.stdout), strict=True):
        parsed = parse_constraint(text)
        for include_prerelease, (npm_range, npm_bits) in zip((False, True), npm, strict=True):
            printed = " || ".join(s or "*" for s in npm_range.split("||"))
            bits = "".join(
                "1" if parsed.allows(v, include_prerelease=include_prerelease) else "0"
                for v in version_texts
            )
            if (parsed.desugared(include_prerelease=include_prerelease), bits) != (
                printed,
                npm_bits,
            ):
                mismatches.append((text, include_prerelease, printed))
    assert mismatches == []
