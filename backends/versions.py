"""A worker's loaded versions and its version rule.

A worker serves exact versions only: a request names one it has loaded (build metadata
ignored), or none, and then gets the gateway's ``stable`` (the highest loaded version
without a prerelease tag). Ranges, aliases, ``stable`` and ``latest`` are the gateway's
to resolve; the worker refuses them with a 400 rather than guess.
"""

from __future__ import annotations

from typing import Any

from backends.batcher import Batcher
from backends.errors import VersionRefused
from backends.faults import FaultPolicy
from backends.limits import shown
from backends.metrics import VersionMetrics
from backends.oip import ModelMetadata, TensorMetadata
from backends.runtime import OnnxModel
from backends.signature import Signature
from backends.source import Artifact
from modelgate.core.semver import VersionKey, base_version, precedence_key, split_version

__all__ = ["LoadedVersion", "choose", "precedence", "requested_version", "stable"]


class LoadedVersion:
    """One model version in memory: session, batcher, state (loading → ready → unloading)."""

    def __init__(
        self, artifact: Artifact, model: OnnxModel, batcher: Batcher, faults: FaultPolicy
    ) -> None:
        self.model = artifact.model
        self.version = artifact.version
        self.artifact = artifact
        self.session = model
        self.signature: Signature = model.signature
        self.batcher = batcher
        self.faults = faults
        self.state = "loading"
        self.metrics: VersionMetrics = VersionMetrics()

    def metadata(self, versions: list[str]) -> ModelMetadata:
        def tensors(specs: Any) -> list[TensorMetadata]:
            return [TensorMetadata(t.name, t.datatype, list(t.shape)) for t in specs]

        return ModelMetadata(
            name=self.model,
            versions=versions,
            platform="onnx_onnxv1",
            inputs=tensors(self.signature.inputs),
            outputs=tensors(self.signature.outputs),
        )


def _prerelease(version: str) -> bool:
    return "-" in base_version(version)


def _listing(versions: dict[str, LoadedVersion]) -> str:
    shown_ = sorted((v.version for v in versions.values()), key=precedence, reverse=True)
    return "loaded: " + ", ".join(shown_)


def precedence(version: str) -> VersionKey:
    """SemVer precedence of a loaded version (build ignored), to pick the highest one."""
    parts = split_version(version)
    return precedence_key(*parts) if parts is not None else (-1, -1, -1, 0, ())


def choose(model: str, versions: dict[str, LoadedVersion], version: str | None) -> LoadedVersion:
    """The version of ``model`` a request names among ``versions`` (keyed by
    ``base_version``): ``version`` must be an exact loaded one; without one, `stable`.
    Anything else → ``VersionRefused`` naming the value and the loaded versions."""
    if version is None:
        return stable(model, versions)
    found = versions.get(base_version(version))
    if found is None:
        if split_version(version) is not None:
            what = f'version "{shown(version)}" of "{model}" is not loaded on this worker'
        else:
            what = f'"{shown(version)}" is not an exact version of "{model}"'
        raise VersionRefused(
            f"{what}; a worker serves only the exact versions it has loaded "
            f"({_listing(versions)}): ranges, aliases, stable and latest are resolved "
            "by the gateway"
        )
    return found


def stable(model: str, versions: dict[str, LoadedVersion]) -> LoadedVersion:
    """The gateway's ``stable``: the highest version without a prerelease tag, ready ones
    first (a loading one is chosen only when none is ready, and is then refused as not
    ready). Only prereleases loaded → ``VersionRefused``."""
    releases = [v for v in versions.values() if not _prerelease(v.version)]
    if not releases:
        raise VersionRefused(
            f'"{model}" has only prereleases loaded on this worker ({_listing(versions)}); '
            "name one: /versions/{version} or X-Model-Version"
        )
    ready = [v for v in releases if v.state == "ready"]
    return max(ready or releases, key=lambda v: precedence(v.version))


def requested_version(path: str | None, header: str | None) -> str | None:
    """The version a request names in its path and/or its ``X-Model-Version`` header
    (gRPC: ``model_version`` and ``x-model-version``); both given and different → 400."""
    if not header:
        return path or None
    # NOTE: build metadata names no other version (``choose`` ignores it too).
    if path and base_version(path) != base_version(header):
        raise VersionRefused(
            f'the path names version "{shown(path)}" but X-Model-Version says '
            f'"{shown(header)}"; send one, or the same in both'
        )
    return header
