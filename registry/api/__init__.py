"""The admin API under ``/admin/v1``: bearer tokens with scopes, errors as ``{"error": ...}``."""

from __future__ import annotations

from typing import Any

from litestar import Request, Router

from modelgate.core.openapi import RAISES
from registry.api.access import AccessController
from registry.api.deps import EVERY_ROUTE, Registry, require_scope
from registry.api.models import ModelController
from registry.api.policy import PolicyController
from registry.api.rollouts import RolloutController
from registry.api.versions import VersionController
from registry.api.workers import WorkerController
from registry.limits import check_params

__all__ = ["Registry", "admin_router"]

FORM_OVERHEAD = 64 * 1024


async def _check_params(request: Request[Any, Any, Any]) -> None:
    """Refuse a NUL (or lone surrogate) in any path or query parameter, on every route."""
    check_params("path", request.path_params)
    check_params("query", dict(request.query_params.dict()))


def admin_router(max_upload_bytes: int) -> Router:
    """All admin routes; publishing takes bodies up to ``max_upload_bytes`` plus form overhead."""
    # NOTE: only publishing takes large bodies; every other admin route keeps 1 MiB.
    versions = type(
        "VersionController",
        (VersionController,),
        {"request_max_body_size": max_upload_bytes + FORM_OVERHEAD},
    )
    return Router(
        path="/admin/v1",
        route_handlers=[
            ModelController,
            versions,
            PolicyController,
            RolloutController,
            AccessController,
            WorkerController,
        ],
        guards=[require_scope],
        before_request=_check_params,
        request_max_body_size=1024 * 1024,
        security=[{"bearer": []}],
        opt={RAISES: EVERY_ROUTE},
    )
