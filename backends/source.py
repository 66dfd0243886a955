"""Where a worker gets model artifacts: the registry (``backends.registry_source``) or
plain files named on the command line (benchmarks, machines without a database)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from backends.errors import LoadFailed, ModelNotLoaded
from modelgate.core.semver import base_version

__all__ = [
    "Artifact",
    "ChainSource",
    "FileSource",
    "ModelSource",
    "parse_model_ref",
]


@dataclass(frozen=True, slots=True)
class Artifact:
    """A model file ready to load, with the version string as published and its labels."""

    model: str
    version: str
    path: Path
    sha256: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)


class ModelSource(Protocol):
    async def fetch(self, model: str, version: str) -> Artifact:
        """The artifact of exactly ``model@version``; raises a ``ModelgateError`` if none."""
        ...


def parse_model_ref(text: str) -> tuple[str, str]:
    """``MODEL@VERSION`` → ``(model, version)``; raises ``ValueError`` with the reason."""
    model, sep, version = text.partition("@")
    if not sep or not model or not version or "/" in model:
        raise ValueError(f'expected MODEL@VERSION (e.g. resnet@1.2.0), got "{text}"')
    return model, version


class FileSource:
    """Models given as ``{(model, version): path}``, e.g. from ``--model-file``."""

    def __init__(self, files: Mapping[tuple[str, str], Path]) -> None:
        self._files = {(m, base_version(v)): (v, Path(p)) for (m, v), p in files.items()}

    async def fetch(self, model: str, version: str) -> Artifact:
        found = self._files.get((model, base_version(version)))
        if found is None:
            have = [f"{m}@{v}" for (m, _), (v, _) in self._files.items()]
            raise ModelNotLoaded(model, version, have)
        published, path = found
        if not path.is_file():
            raise LoadFailed(f'model file "{path}" for {model}@{published} does not exist')
        return Artifact(model, published, path)


class ChainSource:
    """Tries each source in order; the first that has ``model@version`` wins."""

    def __init__(self, sources: list[ModelSource]) -> None:
        self._sources = sources

    async def fetch(self, model: str, version: str) -> Artifact:
        if not self._sources:
            raise LoadFailed("this worker has no model source to load from")
        for source in self._sources[:-1]:
            try:
                return await source.fetch(model, version)
            except ModelNotLoaded:
                continue
        return await self._sources[-1].fetch(model, version)
