"""``modelgate demo`` (what ``make demo`` runs) completes its tour on a clean directory."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.support.net import free_ports


def test_demo_tour(tmp_path: Path) -> None:
    port = free_ports(3)  # the gateway's, and the two workers' after it
    result = subprocess.run(
        [sys.executable, "-m", "modelgate", "demo", "--no-keep", "--port", str(port)],
        cwd=tmp_path, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert re.search(r"│ \^1\.0\s+│ 1\.1\.0", out)
    canary = re.search(r"version 2\.0\.0\s+│ (\d+)", out)
    assert canary is not None
    assert 15 <= int(canary.group(1)) <= 90  # about 10% of 500
    assert "always 1.1.0" in out
    assert (tmp_path / "var" / "demo" / "registry.db").exists()
