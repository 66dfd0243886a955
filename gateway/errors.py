"""Errors of the gateway's data plane, rendered like every other ``ModelgateError``."""

from __future__ import annotations

from registry.errors import ModelgateError

__all__ = [
    "BackendUnavailable",
    "BadGatewayRequest",
    "DeadlineExceeded",
    "GatewayError",
    "Overloaded",
]


class GatewayError(ModelgateError):
    """An error raised by the gateway's data plane."""


class BadGatewayRequest(GatewayError):
    status_code = 400


class DeadlineExceeded(GatewayError):
    status_code = 504


class BackendUnavailable(GatewayError):
    """The worker could not be reached, dropped the connection, or answered 503."""

    status_code = 503
    headers = {"Retry-After": "1"}


class Overloaded(GatewayError):
    """The model's concurrency limit and queue are full: shed, with a hint when to retry."""

    status_code = 429
    headers = {"Retry-After": "1"}
