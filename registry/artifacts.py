"""Content-addressed artifact store on a filesystem path shared by the gateway and workers.

An artifact lives at ``<root>/sha256/<aa>/<hex>``; its storage key is ``sha256/<aa>/<hex>``.
Writes go to a temporary file first and are renamed into place, so a reader never sees a
partial artifact and two uploads of the same bytes converge on one file.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from registry.errors import ArtifactError, ArtifactTooLarge, ChecksumMismatch

__all__ = ["ArtifactStore", "StoredArtifact", "sha256_file"]

CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class StoredArtifact:
    storage_key: str
    sha256: str
    size_bytes: int
    path: Path


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class ArtifactStore:
    """Stores and finds artifacts by their sha256."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

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

    async def ingest(
        self, chunks: AsyncIterator[bytes], *, limit: int, expected_sha256: str | None = None
    ) -> StoredArtifact:
        """Write a stream into the store, hashing as it goes; enforce the size limit."""
        staging = self.root / "tmp"
        staging.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        fd, tmp_name = tempfile.mkstemp(dir=staging, prefix="upload-")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as handle:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > limit:
                        raise ArtifactTooLarge(limit)
                    digest.update(chunk)
                    handle.write(chunk)
            sha = digest.hexdigest()
            if size == 0:
                raise ArtifactError("artifact is empty")
            if expected_sha256 is not None and sha != expected_sha256:
                raise ChecksumMismatch(expected_sha256, sha)
            key = f"sha256/{sha[:2]}/{sha}"
            final = self.path(key)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
            return StoredArtifact(key, sha, size, final)
        finally:
            tmp.unlink(missing_ok=True)
