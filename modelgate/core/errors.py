"""The error base every modelgate package extends, and the errors the kernel itself raises.

::

    ModelgateError                    status_code picks the HTTP status (500 by default)
    ├── BodyTooLarge             413  a request body over the configured limit
    ├── ClientDisconnected       400  the client left before the whole body arrived
    ├── registry.errors.RegistryError   the registry's rules and services
    ├── gateway.errors.GatewayError     the gateway's data plane
    └── backends.errors.BackendError    the worker

One exception handler (`modelgate.core.rendering`) renders every one of them as
``{"error": "..."}`` with its status and headers.
"""

from __future__ import annotations

__all__ = ["BodyTooLarge", "ClientDisconnected", "ModelgateError"]


class ModelgateError(Exception):
    """Base of every error modelgate answers to a client; ``status_code`` picks the HTTP status
    and ``headers`` (``Retry-After``, ``WWW-Authenticate``) go out with it."""

    status_code = 500
    headers: dict[str, str] | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BodyTooLarge(ModelgateError):
    status_code = 413

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"request body of {size} bytes is larger than the limit of {limit} bytes")


class ClientDisconnected(ModelgateError):
    """The client went away before the whole request body arrived."""

    status_code = 400
