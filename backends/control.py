"""Who may change what a worker serves: the repository control endpoints.

``POST /v2/repository/models/{m}[/versions/{v}]/load|unload`` need
``Authorization: Bearer <MODELGATE_WORKER_CONTROL_TOKEN>`` (401 without one, 403 with a
wrong one). With no token configured they are refused (403) unless the operator opened
them on purpose (``MODELGATE_WORKER_CONTROL=open``, for a trusted network or a laptop):
a worker listening on 0.0.0.0 must not unload its models for whoever asks.
``POST /v2/repository/index`` stays open: it shows only what model metadata, readiness and
the worker's announcements already show.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler

from backends.errors import ControlDisabled, ControlForbidden, ControlUnauthorized

__all__ = ["ControlAccess", "control_guard"]


def _digest(secret: bytes) -> bytes:
    return hashlib.sha256(secret).digest()


@dataclass(frozen=True, slots=True)
class ControlAccess:
    """The control policy: a bearer ``token``, or ``open`` (no check) when there is none."""

    token: str | None = None
    open: bool = False
    _expected: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_expected", _digest((self.token or "").encode()))

    def describe(self) -> str:
        if self.token:
            return "repository control (load/unload) needs the control token"
        if self.open:
            return "repository control (load/unload) is OPEN to anyone who can reach this worker"
        return "repository control (load/unload) is disabled: no control token is set"

    def check(self, authorization: str | None) -> None:
        """Raise unless ``authorization`` (the header's value) carries the control token.

        NOTE: the digests of the sent and the expected token are compared in constant time,
        so neither a prefix nor the token's length can be found by timing.
        """
        if not self.token:
            if self.open:
                return
            raise ControlDisabled()
        scheme, _, sent = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not sent.strip():
            raise ControlUnauthorized()
        # Header values arrive decoded as latin-1: encoding back gives the bytes sent.
        given = _digest(sent.strip().encode("latin-1", "replace"))
        if not hmac.compare_digest(given, self._expected):
            raise ControlForbidden()


def control_guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Litestar guard of the load and unload routes (the policy is in the app's state)."""
    access: ControlAccess = connection.app.state.control
    access.check(connection.headers.get("authorization"))
