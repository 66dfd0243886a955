"""The artifact store's collector: removes what no version row will ever claim.

Older than the grace period (``MODELGATE_REGISTRY_ARTIFACT_GRACE_S``):

- a temp file in ``tmp/`` (an upload killed half-way, a staged file whose publish failed)
  is removed, except a staged file whose sha256 a row names while the store lacks it (the
  process died between the commit and the rename): that one is *restored* into place;
- an *orphan*, a store file no row names, is removed.

Files this process is still writing are never touched, whatever their age. The gateway
sweeps at start-up and then on a timer; ``modelgate artifacts gc [--dry-run]`` sweeps once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from registry.artifacts import STAGED_SUFFIX, ArtifactStore, storage_key
from registry.models import ModelVersion

__all__ = ["ArtifactCollector", "Sweep", "SweptFile"]

log = logging.getLogger(__name__)

Kind = Literal["temp", "orphan", "restore"]


@dataclass(frozen=True, slots=True)
class SweptFile:
    """One file the sweep removed (``temp``, ``orphan``) or moved into place (``restore``)."""

    kind: Kind
    path: Path
    size_bytes: int
    age_s: float


@dataclass
class Sweep:
    """What one sweep did, or would do under ``dry_run``; ``errors`` are files it could not
    touch (the next sweep retries them)."""

    dry_run: bool
    files: list[SweptFile] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(f.size_bytes for f in self.files if f.kind != "restore")


@dataclass(frozen=True, slots=True)
class _Candidate:
    kind: Kind
    path: Path
    size_bytes: int
    age_s: float
    key: str | None  # the storage key an orphan or a staged file stands for


def _staged_key(name: str) -> str | None:
    if not name.endswith(STAGED_SUFFIX):
        return None
    sha = name.split(".", 1)[0]
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        return None
    return storage_key(sha)


class ArtifactCollector:
    """Sweeps one `ArtifactStore` against the version rows of one database."""

    def __init__(
        self,
        store: ArtifactStore,
        sessions: async_sessionmaker[AsyncSession],
        *,
        grace_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.sessions = sessions
        self.grace_s = grace_s
        self.clock = clock
        self._task: asyncio.Task[None] | None = None

    async def sweep(self, *, dry_run: bool = False) -> Sweep:
        """One pass over ``tmp/`` and the store (see the module's docstring)."""
        result = Sweep(dry_run=dry_run)
        candidates = await asyncio.to_thread(self._scan, result)
        if not candidates:
            return result
        referenced = await self._referenced()
        for candidate in candidates:
            kind = candidate.kind
            if kind == "orphan" and candidate.key in referenced:
                continue
            # NOTE: a staged file whose row committed: restore it unless another publish of
            # the same bytes placed them meanwhile (then it is a duplicate temp file).
            if kind == "temp" and candidate.key in referenced:
                assert candidate.key is not None
                if not self.store.path(candidate.key).exists():
                    kind = "restore"
            swept = SweptFile(kind, candidate.path, candidate.size_bytes, candidate.age_s)
            if not dry_run and not await self._apply(swept, candidate.key, result):
                continue
            result.files.append(swept)
        return result

    def _scan(self, result: Sweep) -> list[_Candidate]:
        now = self.clock()
        found: list[_Candidate] = []

        def visit(path: Path, kind: Kind, key: str | None) -> None:
            if path in self.store.active:
                return
            try:
                stat = path.stat()
            except FileNotFoundError:
                return
            except OSError as exc:
                result.errors.append(f"{path}: {os.strerror(exc.errno or 0)}")
                return
            age = now - stat.st_mtime
            if age >= self.grace_s:
                found.append(_Candidate(kind, path, stat.st_size, age, key))

        tmp = self.store.tmp_dir
        if tmp.is_dir():
            for path in sorted(tmp.iterdir()):
                visit(path, "temp", _staged_key(path.name))
        shards = self.store.root / "sha256"
        if shards.is_dir():
            for shard in sorted(shards.iterdir()):
                for path in sorted(shard.iterdir()) if shard.is_dir() else ():
                    visit(path, "orphan", f"sha256/{shard.name}/{path.name}")
        return found

    async def _referenced(self, key: str | None = None) -> set[str]:
        query = select(ModelVersion.storage_key).where(ModelVersion.storage_key.is_not(None))
        if key is not None:
            query = query.where(ModelVersion.storage_key == key)
        async with self.sessions() as session:
            keys = (await session.execute(query.distinct())).scalars().all()
        return {k for k in keys if k}

    async def _apply(self, swept: SweptFile, key: str | None, result: Sweep) -> bool:
        try:
            if swept.kind == "restore":
                assert key is not None
                final = self.store.path(key)
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(swept.path, final)
                log.warning("artifact store: restored %s from %s", key, swept.path.name)
                return True
            if swept.kind == "orphan" and key is not None and await self._referenced(key):
                return False  # NOTE: a publish of these bytes committed since the scan
            if self.clock() - swept.path.stat().st_mtime < self.grace_s:
                return False  # written (or placed) again since the scan
            swept.path.unlink()
            log.info("artifact store: removed %s %s", swept.kind, swept.path)
            return True
        except FileNotFoundError:
            return False
        except OSError as exc:
            result.errors.append(f"{swept.path}: {os.strerror(exc.errno or 0)}")
            return False

    async def start(self, interval_s: float) -> None:
        """Sweep now and then every ``interval_s`` (0: only now), in the background."""
        self._task = asyncio.create_task(self._run(interval_s), name="artifact-gc")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self, interval_s: float) -> None:
        while True:
            try:
                swept = await self.sweep()
                if swept.files or swept.errors:
                    log.info(
                        "artifact store: swept %d files (%d bytes), %d errors",
                        len(swept.files),
                        swept.bytes,
                        len(swept.errors),
                    )
            except Exception as exc:  # NOTE: a database or disk outage must not end the timer
                log.warning("artifact store: sweep failed: %s", exc)
            if interval_s <= 0:
                return
            await asyncio.sleep(interval_s)
