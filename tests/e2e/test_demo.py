"""``modelgate demo`` (what ``make demo`` runs) completes its tour on a clean directory,
rollout chapter included: the good candidate promoted, the faulty one rolled back by its
error-rate gate, the clients seeing (almost) none of its failures."""

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
    assert "resnet-demo rollout #1 1.2.0: promoted at step 3/3 (100%)" in out
    back = re.search(r"resnet-demo rollout #2 1\.3\.0: ROLLED BACK at step 1/3 \(10%\): (.*)", out)
    assert back is not None, out[-3000:]
    assert back.group(1).startswith("error rate")
    assert "traffic policy now: 1.2.0=100; alias prod → 1.2.0" in out
    seen = re.findall(r"failed, as the clients saw it\s+│ (\d+) of (\d+)", out)
    assert len(seen) == 2, out[-3000:]
    failed, total = map(int, seen[1])
    assert failed <= 0.01 * total  # the faulty candidate's 500s are retried on the baseline
    assert (tmp_path / "var" / "demo" / "registry.db").exists()
