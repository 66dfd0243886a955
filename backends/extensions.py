"""Triton's model configuration and statistics extensions on the worker's HTTP API.

``GET /v2/models/{m}[/versions/{v}]/config`` answers the version's ``ModelConfig`` and
``GET /v2/models[/{m}[/versions/{v}]]/stats`` ``{"model_stats": [...]}``, both as Triton
writes them (`backends.triton.triton_json`). A version is named as for inference: an exact
loaded version in the path or ``X-Model-Version`` (`DataPlane.get`).
"""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.params import FromPath

from backends._http import plane_of, version_of
from backends.triton import triton_json

__all__ = ["ROUTES"]


def _config(request: Request[Any, Any, Any], model: str, version: str | None) -> dict[str, Any]:
    plane = plane_of(request)
    return triton_json(plane.model_config(model, version_of(request, version)))


@get("/v2/models/{model:str}/config")
async def model_config(request: Request[Any, Any, Any], model: FromPath[str]) -> dict[str, Any]:
    return _config(request, model, None)


@get("/v2/models/{model:str}/versions/{version:str}/config")
async def model_version_config(
    request: Request[Any, Any, Any], model: FromPath[str], version: FromPath[str]
) -> dict[str, Any]:
    return _config(request, model, version)


def _stats(
    request: Request[Any, Any, Any], model: str | None, version: str | None
) -> dict[str, Any]:
    plane = plane_of(request)
    named = version_of(request, version) if model is not None else None
    return triton_json(plane.model_statistics(model, named))


@get("/v2/models/stats")
async def all_statistics(request: Request[Any, Any, Any]) -> dict[str, Any]:
    return _stats(request, None, None)


@get("/v2/models/{model:str}/stats")
async def model_statistics(request: Request[Any, Any, Any], model: FromPath[str]) -> dict[str, Any]:
    return _stats(request, model, None)


@get("/v2/models/{model:str}/versions/{version:str}/stats")
async def model_version_statistics(
    request: Request[Any, Any, Any], model: FromPath[str], version: FromPath[str]
) -> dict[str, Any]:
    return _stats(request, model, version)


ROUTES = [
    model_config,
    model_version_config,
    all_statistics,
    model_statistics,
    model_version_statistics,
]
