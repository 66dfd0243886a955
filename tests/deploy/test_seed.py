"""``modelgate seed`` (compose's one-shot ``seed`` service) publishes the generated demo model
and makes an admin token on a fresh registry, and changes nothing when run again."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from registry.artifacts import ArtifactStore
from registry.catalog import CatalogService
from registry.db import make_engine, make_sessionmaker, upgrade_to_head
from registry.tokens import TokenService
from tests.support.net import ROOT


def _seed(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-m", "modelgate", "seed", "--version", "1.0.0", "--version", "1.1.0"]
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


async def test_seed_publishes_once_and_a_second_run_changes_nothing(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}"
    await asyncio.to_thread(upgrade_to_head, url)
    env = {**os.environ, "MODELGATE_DATABASE_URL": url,
           "MODELGATE_ARTIFACT_ROOT": str(tmp_path / "artifacts")}  # fmt: skip
    first = await asyncio.to_thread(_seed, env)
    assert first.returncode == 0, first.stderr
    token = first.stdout.strip()
    assert token.startswith("mg_"), first.stdout
    again = await asyncio.to_thread(_seed, env)
    assert again.returncode == 0, again.stderr
    assert again.stdout == ""
    assert "resnet-demo@1.1.0 exists (active); left as it is" in again.stderr
    engine = make_engine(url)
    try:
        sessions = make_sessionmaker(engine)
        versions = await CatalogService(sessions).list_versions(
            "resnet-demo", status=None, constraint=None, include_prerelease=True, offset=0, limit=10
        )
        rows = {v.version: v for v in versions.items}
        assert sorted(rows) == ["1.0.0", "1.1.0"]
        store = ArtifactStore(tmp_path / "artifacts")
        for row in rows.values():
            assert store.verified_path(row.storage_key, row.sha256).is_file()
        principal = await TokenService(sessions).authenticate(token)
        assert principal.scopes == frozenset({"admin"})
        assert [t.name for t in await TokenService(sessions).list()] == ["seed-admin"]
    finally:
        await engine.dispose()
