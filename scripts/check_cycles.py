"""Fail when any project module imports, directly or through others, itself.

Every import counts: module level, inside functions, under ``TYPE_CHECKING``. A
function-level import is still a dependency and does not hide a cycle. An import names
the module it spells: ``import a.b`` and ``from a.b import c`` depend on ``a.b`` (or on
``a.b.c`` when that is a module); a package's ``__init__`` running first is Python's
business, not an edge. Usage: ``python scripts/check_cycles.py [package ...]`` (default:
the project's packages). Exit status 1, with one cycle printed per tangle, when any exists.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

PACKAGES = ("modelgate", "registry", "gateway", "backends", "migrations")


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _known(target: str, known: set[str]) -> str | None:
    """``target`` or its nearest enclosing project module (``a.b.attr`` → ``a.b``)."""
    while target and target not in known:
        target = target.rpartition(".")[0]
    return target or None


def _targets(node: ast.Import | ast.ImportFrom, package: str, known: set[str]) -> Iterator[str]:
    if isinstance(node, ast.Import):
        for alias in node.names:
            if (found := _known(alias.name, known)) is not None:
                yield found
        return
    base = node.module or ""
    if node.level:
        parts = package.split(".")
        if node.level > len(parts):
            return
        anchor = parts[: len(parts) - node.level + 1]
        base = ".".join([*anchor, base] if base else anchor)
    for alias in node.names:
        submodule = f"{base}.{alias.name}" if base else alias.name
        found = submodule if submodule in known else _known(base, known)
        if found is not None:
            yield found


def imports_of(path: Path, name: str, known: set[str]) -> set[str]:
    """The project modules ``name`` imports anywhere in its source."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.update(t for t in _targets(node, package, known) if t != name)
    return found


def tangles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def cycle_in(graph: dict[str, set[str]], members: list[str]) -> list[str]:
    """One shortest cycle through the first of ``members`` (first == last), by BFS."""
    inside = set(members)
    start = members[0]
    parent: dict[str, str] = {}
    queue = [start]
    for node in queue:
        for nxt in sorted(graph[node] & inside):
            if nxt == start:
                path = [node]
                while path[-1] != start:
                    path.append(parent[path[-1]])
                return [start, *reversed(path[:-1]), start]
            if nxt not in parent:
                parent[nxt] = node
                queue.append(nxt)
    raise AssertionError(f"no cycle through {start}")


def main(argv: list[str]) -> int:
    root = Path(__file__).resolve().parent.parent
    packages = argv or list(PACKAGES)
    files = {module_name(p, root): p for pkg in packages for p in (root / pkg).rglob("*.py")}
    known = set(files)
    graph = {name: imports_of(path, name, known) for name, path in files.items()}
    found = tangles(graph)
    for members in found:
        print("import cycle: " + " -> ".join(cycle_in(graph, members)), file=sys.stderr)
    if found:
        return 1
    print(f"no import cycles among {len(files)} modules", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
