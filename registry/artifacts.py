"""Content-addressed artifact store on a filesystem path shared by the gateway and workers.

An artifact lives at ``<root>/sha256/<aa>/<hex>``; its storage key is ``sha256/<aa>/<hex>``.
An upload is *staged* first: streamed into ``<root>/tmp``, hashed as it arrives, its size
limit enforced while it streams, with the writes and the hashing in a thread so the event
loop keeps serving. A staged file enters the store only by `ArtifactStore.place`, which a
publisher calls after the version row has committed; anything else `ArtifactStore.discard`s
it. So a reader never sees a partial artifact, a store file always has a row (but for a
crash between the commit and the rename, which the collector rolls forward), and two
uploads of the same bytes converge on one file.

Every filesystem failure of the store leaves as `registry.errors.storage_error` (507/503).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from registry.errors import ArtifactError, ArtifactTooLarge, ChecksumMismatch, storage_error

__all__ = [
    "CHUNK",
    "STAGED_SUFFIX",
    "ArtifactStore",
    "StagedArtifact",
    "Staging",
    "StoredArtifact",
    "sha256_file",
    "storage_key",
]

#: Bytes handed to the writer thread at once: big enough that the thread hop is cheap,
#: small enough that memory stays bounded and no step holds the loop for long.
CHUNK = 1 << 20
#: A fully written, hashed upload waiting for its row: ``tmp/<sha256>.<random>.staged``.
STAGED_SUFFIX = ".staged"


def storage_key(sha256: str) -> str:
    return f"sha256/{sha256[:2]}/{sha256}"


@dataclass(frozen=True, slots=True)
class StoredArtifact:
    storage_key: str
    sha256: str
    size_bytes: int
    path: Path


@dataclass(frozen=True, slots=True)
class StagedArtifact:
    """A complete, hashed upload in ``tmp/``; ``artifact`` says where `place` will put it."""

    tmp: Path
    artifact: StoredArtifact


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class _TempFile:
    """The blocking half of a staging: runs in a worker thread, one block at a time."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.digest = hashlib.sha256()

    def write_block(self, block: bytes | bytearray) -> None:
        # NOTE: hashlib and file writes release the GIL for big buffers, so this overlaps
        # with the event loop instead of stalling it.
        self.digest.update(block)
        self.handle.write(block)

    def finish(self) -> str:
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        return self.digest.hexdigest()


class Staging:
    """One upload being written to ``tmp/``: `write` chunks as they arrive, then `finish`.

    Memory is bounded by `CHUNK`: bytes are buffered up to it and then written and hashed
    in a thread. More than ``limit`` bytes raise `ArtifactTooLarge` (413) at once."""

    def __init__(self, store: ArtifactStore, tmp: Path, handle: BinaryIO, limit: int) -> None:
        self.store = store
        self.tmp = tmp
        self.limit = limit
        self.size = 0
        self._file = _TempFile(handle)
        self._buffer = bytearray()

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        self.size += len(data)
        if self.size > self.limit:
            raise ArtifactTooLarge(self.limit)
        self._buffer += data
        if len(self._buffer) >= CHUNK:
            await self._flush()

    async def _flush(self) -> None:
        # NOTE: the buffer itself goes to the thread (no copy); a fresh one takes its place.
        block, self._buffer = self._buffer, bytearray()
        with self.store.translated():
            await asyncio.to_thread(self._file.write_block, block)

    async def finish(self, expected_sha256: str | None = None) -> StagedArtifact:
        """Flush, fsync and hash; 400 when empty or not ``expected_sha256``."""
        if self._buffer:
            await self._flush()
        with self.store.translated():
            sha = await asyncio.to_thread(self._file.finish)
        if self.size == 0:
            raise ArtifactError("artifact is empty")
        if expected_sha256 is not None and sha != expected_sha256:
            raise ChecksumMismatch(expected_sha256, sha)
        staged = self.store.tmp_dir / f"{sha}.{secrets.token_hex(4)}{STAGED_SUFFIX}"
        with self.store.translated():
            os.replace(self.tmp, staged)
        self.store.active.discard(self.tmp)
        self.store.active.add(staged)
        self.tmp = staged
        key = storage_key(sha)
        return StagedArtifact(staged, StoredArtifact(key, sha, self.size, self.store.path(key)))

    def abort(self) -> None:
        """Close and remove the temp file (idempotent)."""
        if not self._file.handle.closed:
            self._file.handle.close()
        self.store.remove_temp(self.tmp)


class ArtifactStore:
    """Stores and finds artifacts by their sha256."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.tmp_dir = self.root / "tmp"
        #: Temp files this process is writing or about to place; the collector skips them.
        self.active: set[Path] = set()
        #: Staged files whose row has committed: `discard` leaves them (`place` moves them,
        #: or the collector once a failed `place` has left one behind).
        self.claimed: set[Path] = set()

    @contextmanager
    def translated(self) -> Iterator[None]:
        """Turn the filesystem's errors into `registry.errors.StorageError` (507/503)."""
        try:
            yield
        except OSError as exc:
            raise storage_error(exc, self.root) from exc

    def path(self, storage_key: str) -> Path:
        """The local path of a stored artifact (which may not exist)."""
        path = (self.root / storage_key).resolve()
        if self.root not in path.parents:
            raise ArtifactError(f'storage key "{storage_key}" is outside the artifact store')
        return path

    def verified_path(self, storage_key: str, sha256: str) -> Path:
        """The path of a stored artifact after checking its bytes still hash to ``sha256``."""
        path = self.path(storage_key)
        if not path.is_file():
            raise ArtifactError(f'artifact "{storage_key}" is missing from {self.root}')
        actual = sha256_file(path)
        if actual != sha256:
            raise ChecksumMismatch(sha256, actual)
        return path

    def open_staging(self, *, limit: int) -> Staging:
        """A new temp file under ``tmp/``; the caller must `finish` or `Staging.abort` it."""
        with self.translated():
            self.tmp_dir.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=self.tmp_dir, prefix="upload-")
        tmp = Path(name)
        self.active.add(tmp)
        return Staging(self, tmp, os.fdopen(fd, "wb"), limit)

    async def stage(
        self, chunks: AsyncIterator[bytes], *, limit: int, expected_sha256: str | None = None
    ) -> StagedArtifact:
        """Stage a whole stream; on any error nothing is left behind."""
        staging = self.open_staging(limit=limit)
        try:
            async for chunk in chunks:
                await staging.write(chunk)
            return await staging.finish(expected_sha256)
        except BaseException:
            staging.abort()
            raise

    def claim(self, staged: StagedArtifact) -> None:
        """Its row has committed: from now on the file is never discarded, only placed."""
        self.claimed.add(staged.tmp)

    def place(self, staged: StagedArtifact) -> StoredArtifact:
        """Move a staged file into the store (call once its row has committed)."""
        final = staged.artifact.path
        try:
            with self.translated():
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staged.tmp, final)
                # NOTE: a fresh mtime: the collector counts an orphan's age from it, and
                # the upload may have ended long ago.
                os.utime(final)
            self.claimed.discard(staged.tmp)
        finally:
            # NOTE: a staged file that could not be placed stays claimed and is left for
            # the collector, which moves it into place once it is older than the grace.
            self.active.discard(staged.tmp)
        return staged.artifact

    def discard(self, staged: StagedArtifact) -> None:
        """Remove a staged file that will not be placed (idempotent; a claimed one stays)."""
        if staged.tmp not in self.claimed:
            self.remove_temp(staged.tmp)

    def remove_temp(self, tmp: Path) -> None:
        # NOTE: cleanup must not hide the error that caused it; a file it cannot remove
        # (read-only store) is the collector's to retry.
        with suppress(OSError):
            tmp.unlink(missing_ok=True)
        self.active.discard(tmp)

    async def ingest(
        self, chunks: AsyncIterator[bytes], *, limit: int, expected_sha256: str | None = None
    ) -> StoredArtifact:
        """Stage and place at once, for callers that write the row themselves (tests and
        tools); until that row exists the collector may count the file an orphan."""
        staged = await self.stage(chunks, limit=limit, expected_sha256=expected_sha256)
        return await asyncio.to_thread(self.place, staged)
