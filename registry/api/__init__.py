"""The admin API under ``/admin/v1``: bearer tokens with scopes, errors as ``{"error": ...}``."""

from __future__ import annotations

from litestar import Router

from registry.api.access import AccessController
from registry.api.deps import Registry, require_scope
from registry.api.models import ModelController
from registry.api.policy import PolicyController
from registry.api.rollouts import RolloutController
from registry.api.versions import VersionController

__all__ = ["Registry", "admin_router"]

FORM_OVERHEAD = 64 * 1024


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
        ],
        guards=[require_scope],
        request_max_body_size=1024 * 1024,
        security=[{"bearer": []}],
    )
