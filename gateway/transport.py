"""How one attempt of an inference request reaches a worker: the data plane's only
protocol-specific piece.

`GatewayDataPlane` (resolution, policy, balancing, retries, rollouts, limits, shadows,
metrics) is the same for every protocol; it hands each attempt to a `Transport`, which
sends the request's bytes to one worker and returns its answer as a `Reply` whose
``status`` is an HTTP status (a gRPC code is mapped by `modelgate.core.proto.status`), so
that the core judges every protocol's answers alike: below 500 an answer (a client's bad
input never counts against the worker), 503 unavailable and retryable, any other 5xx a
failure. Transport failures are raised, never returned: `BackendUnavailable` (with its
``retry_on`` condition), `AttemptAborted` once ``abort`` fired, `DeadlineExceeded` when
``timeout_s`` ran out.

`HttpTransport` is OIP v2 REST over the `Forwarder`; the gRPC one is
`gateway.grpc.transport.GrpcTransport`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import Protocol

from gateway.forward import Abort, Forwarder, Reply
from gateway.routing import RoutingTable

__all__ = ["FORWARDED", "HttpTransport", "Transport"]

#: The request headers an HTTP attempt passes on to the worker.
FORWARDED = (
    "content-type",
    "inference-header-content-length",
    "content-encoding",
    "accept-encoding",
)


class Transport(Protocol):
    """One protocol's way to a worker (see the module docstring for the contract)."""

    #: The protocol's name in messages ("HTTP", "gRPC").
    name: str
    #: The request headers (lower-case names) passed on to the worker.
    forwarded: tuple[str, ...]

    @property
    def targets(self) -> Mapping[str, str]:
        """Worker id → the address this transport sends to (replaced with the worker set)."""
        ...

    @property
    def unreachable(self) -> frozenset[str]:
        """Workers this transport cannot reach: never picked for its requests."""
        ...

    def send(
        self,
        worker: str,
        model: str,
        version: str,
        headers: Mapping[str, str],
        body: bytes,
        timeout_s: float,
        abort: Abort | None = None,
    ) -> Awaitable[Reply]:
        """Send one inference request for ``model``@``version`` (the gateway's names; the
        transport asks `RoutingTable.remote` for the worker's) to ``worker``."""
        ...


class HttpTransport:
    """OIP v2 REST: ``POST {url}/v2/models/{m}/versions/{v}/infer`` with the client's body."""

    name: str = "HTTP"
    forwarded: tuple[str, ...] = FORWARDED

    def __init__(self, table: RoutingTable, forwarder: Forwarder) -> None:
        self.table = table
        self.forwarder = forwarder

    @property
    def targets(self) -> Mapping[str, str]:
        return self.table.urls

    @property
    def unreachable(self) -> frozenset[str]:
        return self.table.without_http

    def send(
        self,
        worker: str,
        model: str,
        version: str,
        headers: Mapping[str, str],
        body: bytes,
        timeout_s: float,
        abort: Abort | None = None,
    ) -> Awaitable[Reply]:
        # NOTE: returns the forwarder's coroutine rather than awaiting it: one coroutine
        # frame less per attempt on the hot path.
        url = self.table.urls[worker] + self.table.model_path(worker, model, version) + "/infer"
        return self.forwarder.send(
            "POST", url, body=body, headers=headers, timeout_s=timeout_s, abort=abort
        )
