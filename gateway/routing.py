"""The in-memory routing table: resolve → split → balance, with no I/O on the request path.

It holds the current registry snapshot and the balancer's view of the workers; both are
replaced whole (a reference swap) when the registry revision moves or workers change.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from gateway.balancing.balancer import Balancer, WorkerInfo
from gateway.errors import RegistryNotLoaded
from registry.errors import NoReadyVersion
from registry.resolution import Resolution
from registry.snapshot import RegistrySnapshot
from registry.traffic import Choice, choose

__all__ = ["Route", "RoutingTable"]


@dataclass(frozen=True, slots=True)
class Route:
    """Where one request goes, and what to say about it in ``X-Route``."""

    model: str
    version: str
    route: str
    resolution: Resolution
    choice: Choice
    shadow: str | None


class RoutingTable:
    """Swappable snapshot plus balancer; `route` costs a few dict lookups and a hash."""

    def __init__(self, balancer: Balancer, *, rng: Callable[[], float] = random.random) -> None:
        self.balancer = balancer
        self.snapshot: RegistrySnapshot | None = None
        self.rng = rng
        #: Worker id → OIP REST base URL, replaced with the worker set ("" for a worker
        #: that serves only gRPC).
        self.urls: dict[str, str] = {}
        #: Worker id → gRPC target (``host:port``), for the workers that serve gRPC.
        self.grpc_urls: dict[str, str] = {}
        #: The workers that serve no HTTP, and those that serve no gRPC: never candidates
        #: for a request over that protocol (`gateway.transport.Transport.unreachable`).
        self.without_http: frozenset[str] = frozenset()
        self.without_grpc: frozenset[str] = frozenset()
        #: Worker id → its announcement (`WorkerInfo`), replaced with the worker set.
        self.workers: Mapping[str, WorkerInfo] = {}
        #: Worker id → its (model, version) → (model, version) name map (`WorkerInfo.remote`).
        self._remote: dict[str, Mapping[tuple[str, str], tuple[str, str]]] = {}
        #: Ids of the external OIP servers (`WorkerInfo.external`), whose answers name the
        #: models by their own names (`gateway.external`).
        self.external: frozenset[str] = frozenset()
        #: (model, candidate) → baseline, for each active rollout of the snapshot: where the
        #: data plane retries a candidate attempt that failed.
        self.baselines: dict[tuple[str, str], str] = {}
        #: (model, version) of both versions of each active rollout: the attempts the data
        #: plane counts for the rollout gates (nothing is counted without a rollout).
        self.counted: frozenset[tuple[str, str]] = frozenset()

    def install(self, snapshot: RegistrySnapshot) -> None:
        rollouts = snapshot.rollouts.items()
        self.baselines = {(m, r.candidate): r.baseline for m, r in rollouts}
        self.counted = frozenset(
            pair for m, r in rollouts for pair in ((m, r.candidate), (m, r.baseline))
        )
        self.snapshot = snapshot

    def workers_changed(self, workers: Mapping[str, WorkerInfo]) -> None:
        self.workers = dict(workers)
        self.urls = {worker_id: info.url for worker_id, info in workers.items()}
        self.grpc_urls = {w: info.grpc_url for w, info in workers.items() if info.grpc_url}
        self.without_http = frozenset(w for w, info in workers.items() if not info.url)
        self.without_grpc = frozenset(w for w in workers if w not in self.grpc_urls)
        self._remote = {w: info.remote for w, info in workers.items() if info.remote}
        self.external = frozenset(w for w, info in workers.items() if info.external)
        self.balancer.update(workers)

    def remote(self, worker: str, model: str, version: str) -> tuple[str, str]:
        """The names ``worker`` knows ``model``@``version`` by (itself unless it is an
        external server registered with other names)."""
        names = self._remote.get(worker)
        if names is None:
            return model, version
        return names.get((model, version), (model, version))

    def _unready(self, exc: NoReadyVersion, resolution: Resolution) -> NoReadyVersion:
        """``exc`` naming the workers that serve a candidate but that probes find unready."""
        found = [
            f"{c.version} on {', '.join(ids)}"
            for c in resolution.candidates
            if (ids := self.balancer.unready_on(resolution.model, c.version))
        ]
        if not found:
            return exc
        return NoReadyVersion(f"{exc.message}; probes find it not ready: {'; '.join(found)}")

    def model_path(self, worker: str, model: str, version: str) -> str:
        """``/v2/models/{m}/versions/{v}`` under the names ``worker`` knows them by (`remote`);
        without ``/versions/{v}`` when an external server's remote version is empty."""
        model, version = self.remote(worker, model, version)
        if not version:
            return f"/v2/models/{model}"
        return f"/v2/models/{model}/versions/{version}"

    @property
    def ready(self) -> bool:
        return self.snapshot is not None

    def _snapshot(self) -> RegistrySnapshot:
        if self.snapshot is None:
            raise RegistryNotLoaded("the gateway has not loaded the registry yet; retry shortly")
        return self.snapshot

    def sticky_header(self, model: str) -> str | None:
        """The header whose value keeps a client on one arm (per policy; lower-case)."""
        view = self.snapshot.models.get(model) if self.snapshot is not None else None
        if view is None or view.policy is None:
            return None
        return view.policy.sticky_header.lower()

    def resolve(self, model: str, reference: str | None) -> Resolution:
        return self._snapshot().resolve(model, reference)

    def route(self, model: str, reference: str | None, route_key: str | None) -> Route:
        """Choose the version (ready-aware) and maybe a shadow; raises a 4xx/503 error."""
        snapshot = self._snapshot()
        resolution = snapshot.resolve(model, reference)
        policy = snapshot.models[model].policy
        has_ready = self.balancer.has_ready
        try:
            choice = choose(resolution, policy, route_key, lambda v: has_ready(model, v))
        except NoReadyVersion as exc:
            raise self._unready(exc, resolution) from None
        shadow = None
        if (
            policy is not None
            and policy.shadow is not None
            and policy.shadow.version != choice.version
            and self.rng() < policy.shadow.fraction
            and has_ready(model, policy.shadow.version)
        ):
            shadow = policy.shadow.version
        return Route(model, choice.version, choice.route, resolution, choice, shadow)
