"""Publishing a version: stream the artifact into the store, read its signature, record it.

The cheap checks (model exists, version valid and new) run before any byte is stored. The
database's unique key settles a race between two publishes of the same version.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx

from registry.artifacts import CHUNK, ArtifactStore, StoredArtifact
from registry.catalog import CatalogService
from registry.errors import ArtifactError, BadRequest
from registry.schemas import PublishByUri, VersionOut
from registry.settings import RegistrySettings
from registry.signature import read_signature

__all__ = ["Publisher"]


class Publisher:
    """Turns an upload or a URI into a published version."""

    def __init__(self, settings: RegistrySettings, store: ArtifactStore, catalog: CatalogService):
        self.settings = settings
        self.store = store
        self.catalog = catalog

    async def upload(
        self,
        actor: str,
        model: str,
        version: str,
        chunks: AsyncIterator[bytes],
        *,
        filename: str,
        priority: int = 0,
        labels: dict[str, str] | None = None,
        description: str = "",
    ) -> VersionOut:
        await self.catalog.check_publishable(model, version)
        stored = await self.store.ingest(chunks, limit=self.settings.max_artifact_bytes)
        return await self._record(
            actor, model, version, stored, f"upload:{filename}", priority, labels, description
        )

    async def from_uri(self, actor: str, model: str, data: PublishByUri) -> VersionOut:
        await self.catalog.check_publishable(model, data.version)
        stored = await self.store.ingest(
            self._fetch(data.artifact_uri),
            limit=self.settings.max_artifact_bytes,
            expected_sha256=data.sha256,
        )
        return await self._record(
            actor,
            model,
            data.version,
            stored,
            data.artifact_uri,
            data.priority,
            data.labels,
            data.description,
        )

    async def _record(
        self,
        actor: str,
        model: str,
        version: str,
        stored: StoredArtifact,
        uri: str,
        priority: int,
        labels: dict[str, str] | None,
        description: str,
    ) -> VersionOut:
        signature = await asyncio.to_thread(read_signature, stored.path)
        return await self.catalog.publish(
            actor,
            model,
            version,
            artifact=stored,
            artifact_uri=uri,
            signature=signature,
            priority=priority,
            labels=labels,
            description=description,
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
        with resolved.open("rb") as handle:
            while chunk := await asyncio.to_thread(handle.read, CHUNK):
                yield chunk

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
