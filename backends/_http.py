"""What every worker HTTP handler takes from a request: the data plane and the version."""

from __future__ import annotations

from typing import Any

from litestar import Request

from backends.dataplane import DataPlane

__all__ = ["plane_of", "version_of"]


def plane_of(request: Request[Any, Any, Any]) -> DataPlane:
    plane: DataPlane = request.app.state.plane
    return plane


def version_of(request: Request[Any, Any, Any], path: str | None) -> str | None:
    """The version a request names in its path and ``X-Model-Version`` (400 if they differ)."""
    return DataPlane.requested_version(path, request.headers.get("x-model-version"))
