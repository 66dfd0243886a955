"""SemVer 2.0.0 precedence as a sortable tuple: the one ordering every package uses.

`registry.constraints` builds the key from parsed versions on the resolution hot path;
the worker orders the version strings it has loaded; both call `precedence_key`.
"""

from __future__ import annotations

from functools import lru_cache

__all__ = ["VersionKey", "base_version", "pre_key", "precedence_key", "split_version"]

#: ``(major, minor, patch, 1, ())`` for a release, ``(major, minor, patch, 0, ids)`` for a
#: pre-release, each id ``(0, n, "")`` if numeric else ``(1, 0, text)``: numeric ids sort
#: before alphanumeric ones, and a release after all its pre-releases. Build is ignored.
VersionKey = tuple[int, int, int, int, tuple[tuple[int, int, str], ...]]


def base_version(version: str) -> str:
    """The version without build metadata: ``1.2.0+b7`` and ``1.2.0`` name one version."""
    return version.split("+", 1)[0]


@lru_cache(maxsize=4096)
def pre_key(pre: str) -> tuple[tuple[int, int, str], ...]:
    """The precedence of a pre-release tag (``rc.1`` → ``((1, 0, "rc"), (0, 1, ""))``)."""
    return tuple((0, int(i), "") if i.isdigit() else (1, 0, i) for i in pre.split("."))


def precedence_key(major: int, minor: int, patch: int, pre: str | None) -> VersionKey:
    """The sortable key of ``major.minor.patch[-pre]``."""
    return (major, minor, patch, 0, pre_key(pre)) if pre else (major, minor, patch, 1, ())


def split_version(version: str) -> tuple[int, int, int, str] | None:
    """``MAJOR.MINOR.PATCH[-PRE][+BUILD]`` → ``(major, minor, patch, pre)``, else ``None``.

    Lenient (no leading-zero or identifier checks): for text that a registry has already
    validated, such as the versions a worker was asked to load."""
    core, _, pre = base_version(version).partition("-")
    parts = core.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        return None
    return int(parts[0]), int(parts[1]), int(parts[2]), pre
