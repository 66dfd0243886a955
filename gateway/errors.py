"""Errors of the gateway's data plane, rendered like every other ``ModelgateError``.

::

    ModelgateError (modelgate.core.errors)
    └── GatewayError
        ├── BadGatewayRequest       400  a header or path the gateway cannot route
        ├── Overloaded              429  the model's concurrency and queue are full
        │   └── RateLimited         429  the client's token bucket is empty
        ├── BackendUnavailable      503  the worker could not be reached or answered 503
        │   └── AttemptAborted      503  the gateway gave up an attempt on a worker gone unready
        ├── NoReadyWorker           503  no worker can take this version now
        ├── RegistryNotLoaded       503  no registry snapshot yet (the database is down)
        ├── LimiterUnavailable      503  Redis is down and rate limits fail closed
        ├── WorkerAnswered          4xx/5xx  a worker's own error answer to a forwarded call
        ├── RepositoryFailed        4xx/503  a load or unload failed on some of its workers
        └── DeadlineExceeded        504  the request's deadline passed

Registry errors raised while routing (unknown model, no version satisfies, no ready
version) pass through unchanged.
"""

from __future__ import annotations

import math

from modelgate.core.errors import ModelgateError

__all__ = [
    "AttemptAborted",
    "BackendUnavailable",
    "BadGatewayRequest",
    "DeadlineExceeded",
    "GatewayError",
    "LimiterUnavailable",
    "NoReadyWorker",
    "Overloaded",
    "RateLimited",
    "RegistryNotLoaded",
    "RepositoryFailed",
    "WorkerAnswered",
]


class GatewayError(ModelgateError):
    """An error raised by the gateway's data plane."""


class BadGatewayRequest(GatewayError):
    status_code = 400


class DeadlineExceeded(GatewayError):
    status_code = 504


class BackendUnavailable(GatewayError):
    """The worker could not be reached, dropped the connection, or answered 503.

    ``condition`` names the ``retry_on`` condition it is (`gateway.settings.RetryOn`):
    ``connect-failure``, ``reset``, ``unavailable`` (a 503), ``timeout`` (the attempt's own
    limit, not the client's deadline) or ``unready``.
    """

    status_code = 503
    headers = {"Retry-After": "1"}

    def __init__(self, message: str, condition: str = "unavailable") -> None:
        super().__init__(message)
        self.condition = condition


class AttemptAborted(BackendUnavailable):
    """The gateway abandoned an attempt in flight because probes found its worker unready,
    or the worker was ejected, and it had another worker and a retry slot for the request."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "unready")


class Overloaded(GatewayError):
    """The model's concurrency limit and queue are full: shed, with a hint when to retry."""

    status_code = 429
    headers = {"Retry-After": "1"}


class RateLimited(Overloaded):
    """429 with ``Retry-After`` naming when the client's bucket has a token again."""

    def __init__(self, client: str, retry_after_s: float) -> None:
        super().__init__(f"rate limit exceeded for {client}; retry in {retry_after_s:.2f}s")
        self.headers = {"Retry-After": str(max(1, math.ceil(retry_after_s)))}


class NoReadyWorker(GatewayError):
    """No worker can take a request for this version now (503, retry shortly)."""

    status_code = 503
    headers = {"Retry-After": "1"}

    def __init__(self, model: str, version: str, reason: str) -> None:
        super().__init__(f'no worker can serve "{model}" version {version}: {reason}')
        self.model = model
        self.version = version
        self.reason = reason


class RegistryNotLoaded(GatewayError):
    """The gateway has not read the registry once yet, so it cannot resolve anything."""

    status_code = 503
    headers = {"Retry-After": "1"}


class LimiterUnavailable(GatewayError):
    """The shared rate-limit store failed and limits fail closed."""

    status_code = 503
    headers = {"Retry-After": "1"}


class WorkerAnswered(GatewayError):
    """A worker answered a forwarded extension call (config, statistics) with an error:
    its status and its message reach the client as they were."""

    def __init__(self, worker: str, status: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status
        self.worker = worker


class RepositoryFailed(GatewayError):
    """A load or unload did not succeed on every worker it was sent to; ``failures`` maps
    each such worker to why. The status is the workers' own when every one of them refused
    with the same 4xx (the request's fault, such as a version without an artifact), else
    503: a worker-side failure, retryable."""

    def __init__(self, action: str, target: str, failures: dict[str, tuple[int, str]]) -> None:
        named = "; ".join(f"{worker}: {why}" for worker, (_, why) in sorted(failures.items()))
        super().__init__(f"{action} of {target} failed on {len(failures)} worker(s): {named}")
        self.failures = failures
        statuses = {status for status, _ in failures.values()}
        only = statuses.pop() if len(statuses) == 1 else 503
        self.status_code = only if 400 <= only < 500 and only not in (401, 403) else 503
        if self.status_code == 503:
            self.headers = {"Retry-After": "1"}
