"""Publishing a version: stage the artifact, check it, record it, then place it.

The cheap checks (model exists, version valid and new) run before any byte is stored. The
artifact is staged in the store's ``tmp/`` (hashed as it streams), its ONNX signature is read
in a thread without decoding its tensors, the row commits, and only then does the file enter
the store; whatever fails on the way (a junk upload, a lost race, a rejected commit) removes
the staged file.
The database's unique key settles a race between two publishes of the same version.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx

from registry.artifacts import CHUNK, ArtifactStore, StagedArtifact
from registry.catalog import CatalogService
from registry.errors import ArtifactError, BadRequest
from registry.schemas import PublishByUri, PublishExternal, VersionOut
from registry.settings import RegistrySettings
from registry.signature import read_signature

__all__ = ["Publisher"]

log = logging.getLogger(__name__)


class Publisher:
    """Turns an upload or a URI into a published version."""

    def __init__(self, settings: RegistrySettings, store: ArtifactStore, catalog: CatalogService):
        self.settings = settings
        self.store = store
        self.catalog = catalog

    async def precheck(self, model: str, version: str) -> None:
        """Fail fast, before any byte is staged: unknown model, bad or duplicate version."""
        await self.catalog.check_publishable(model, version)

    async def publish_staged(
        self,
        actor: str,
        model: str,
        version: str,
        staged: StagedArtifact,
        *,
        uri: str,
        priority: int = 0,
        labels: dict[str, str] | None = None,
        description: str = "",
    ) -> VersionOut:
        """Check and record a staged artifact; it is placed in the store once the row has
        committed and discarded on any failure (the caller may discard it again)."""
        try:
            await self.precheck(model, version)
            started = time.monotonic()
            # NOTE: read_signature reads only the model's framing and small fields, so it
            # holds the GIL for milliseconds, never for the whole model as onnx.load would.
            signature = await asyncio.to_thread(read_signature, staged.tmp)
            checked = time.monotonic()
            out = await self.catalog.publish(
                actor,
                model,
                version,
                artifact=staged.artifact,
                artifact_uri=uri,
                signature=signature,
                priority=priority,
                labels=labels,
                description=description,
            )
        except BaseException:
            self.store.discard(staged)
            raise
        self.store.claim(staged)
        # NOTE: a crash (or a failed rename) right here leaves a row without its file; the
        # staged file is named by its sha256, so the collector moves it into place.
        await asyncio.to_thread(self.store.place, staged)
        log.info(
            "published %s@%s: %d bytes, sha256 %s; ONNX check %.2f s, commit %.2f s",
            model,
            out.version,
            staged.artifact.size_bytes,
            staged.artifact.sha256[:12],
            checked - started,
            time.monotonic() - checked,
        )
        return out

    async def from_uri(self, actor: str, model: str, data: PublishByUri) -> VersionOut:
        await self.precheck(model, data.version)
        staged = await self.store.stage(
            self._fetch(data.artifact_uri),
            limit=self.settings.max_artifact_bytes,
            expected_sha256=data.sha256,
        )
        return await self.publish_staged(
            actor,
            model,
            data.version,
            staged,
            uri=data.artifact_uri,
            priority=data.priority,
            labels=data.labels,
            description=data.description,
        )

    async def external(self, actor: str, model: str, data: PublishExternal) -> VersionOut:
        """A version with no artifact, served by external OIP servers only."""
        return await self.catalog.publish(
            actor,
            model,
            data.version,
            artifact=None,
            artifact_uri="",
            signature={},
            priority=data.priority,
            labels=data.labels,
            description=data.description,
            runtime=data.runtime,
        )

    def _fetch(self, uri: str) -> AsyncIterator[bytes]:
        parts = urlsplit(uri)
        if parts.scheme == "file":
            return self._read_file(Path(unquote(parts.path)))
        if parts.scheme in ("http", "https"):
            if parts.hostname not in self.settings.fetch_allowed_hosts:
                allowed = ", ".join(self.settings.fetch_allowed_hosts) or "none configured"
                raise BadRequest(
                    f'artifact_uri host "{parts.hostname}" is not allowed (allowed: {allowed}; '
                    f"set MODELGATE_REGISTRY_FETCH_ALLOWED_HOSTS)"
                )
            return self._download(uri)
        raise BadRequest(
            f'artifact_uri "{uri}" has an unsupported scheme; use file:// or http(s)://'
        )

    async def _read_file(self, path: Path) -> AsyncIterator[bytes]:
        roots = [Path(r).resolve() for r in self.settings.import_roots]
        resolved = path.resolve()
        if not any(resolved == r or r in resolved.parents for r in roots):
            shown = ", ".join(str(r) for r in roots) or "none configured"
            raise BadRequest(
                f'artifact_uri path "{path}" is outside the import roots ({shown}; '
                f"set MODELGATE_REGISTRY_IMPORT_ROOTS)"
            )
        if not resolved.is_file():
            raise ArtifactError(f'artifact_uri path "{path}" is not a readable file')
        try:
            with resolved.open("rb") as handle:
                while chunk := await asyncio.to_thread(handle.read, CHUNK):
                    yield chunk
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise ArtifactError(f'artifact_uri path "{path}" cannot be read: {reason}') from None

    async def _download(self, uri: str) -> AsyncIterator[bytes]:
        timeout = httpx.Timeout(self.settings.fetch_timeout_s)
        try:
            async with (
                httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client,
                client.stream("GET", uri) as response,
            ):
                if response.status_code != 200:
                    raise ArtifactError(f'fetching "{uri}" answered HTTP {response.status_code}')
                async for chunk in response.aiter_bytes(CHUNK):
                    yield chunk
        except httpx.HTTPError as exc:
            raise ArtifactError(f'fetching "{uri}" failed: {exc}') from None
