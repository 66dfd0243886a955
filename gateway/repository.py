"""Triton's model repository extension for the whole fleet: index, load, unload (no HTTP types).

The HTTP routes (`gateway.oip`, behind an admin token) and the gRPC service call the same
core, `FleetRepository`. The registry is the repository: the index lists every version it
knows, READY where some worker has it loaded and warm. A load or an unload is placed on
modelgate workers (never on external servers, which the gateway does not manage) by each
worker's own control route (`POST /v2/repository/models/{m}/versions/{v}/load|unload`,
``Authorization: Bearer <worker control token>``), all of them at once:

* the version is the path's or ``parameters["version"]``, any reference resolved against
  the registry (not ready-aware: placing a version is how it becomes ready); a load
  without one loads ``stable``, an unload without one unloads every version of the model;
* the workers are ``parameters["workers"]`` (comma-separated ids), else every announced
  modelgate worker;
* the answer is ``{}`` when every one of them succeeded (an unload of a version a worker
  does not have succeeds there), else `RepositoryFailed`, naming each worker and why.

NOTE: this replica's balancer learns the outcome at once (`Balancer.mark_ready` after a
load, `mark_unready` before an unload, undone if it failed), as probes teach it, so a
client that loads and then infers through the same gateway is served without waiting for
the worker's next announcement; every other replica learns it from that announcement.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from gateway.errors import (
    BackendUnavailable,
    BadGatewayRequest,
    DeadlineExceeded,
    NoReadyWorker,
    RegistryNotLoaded,
    RepositoryFailed,
)
from gateway.extensions import error_text
from gateway.forward import Forwarder
from gateway.routing import RoutingTable
from gateway.settings import GatewaySettings
from registry.snapshot import RegistrySnapshot

__all__ = ["PARAMETERS", "FleetRepository"]

log = logging.getLogger("modelgate.gateway.repository")

#: The ``parameters`` a load or unload accepts (``unload_dependents``, which tritonclient
#: sends, is accepted and has no effect: a modelgate model has no dependents).
PARAMETERS = frozenset({"version", "workers", "unload_dependents"})
_TOKEN_HINT = {
    False: "the gateway has no worker control token: set MODELGATE_GATEWAY_WORKER_CONTROL_TOKEN "
    "to the workers' MODELGATE_WORKER_CONTROL_TOKEN",
    True: "the gateway's MODELGATE_GATEWAY_WORKER_CONTROL_TOKEN is not this worker's "
    "MODELGATE_WORKER_CONTROL_TOKEN",
}


def _text(parameters: Mapping[str, Any], name: str) -> str | None:
    value = parameters.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise BadGatewayRequest(f'parameter "{name}" must be a non-empty string, not {value!r}')
    return value.strip()


class FleetRepository:
    """The registry's versions as a Triton model repository, placed on the fleet's workers."""

    def __init__(
        self, table: RoutingTable, forwarder: Forwarder, settings: GatewaySettings
    ) -> None:
        self.table = table
        self.forwarder = forwarder
        self.settings = settings

    def _snapshot(self) -> RegistrySnapshot:
        snapshot = self.table.snapshot
        if snapshot is None:
            raise RegistryNotLoaded("the gateway has not loaded the registry yet; retry shortly")
        return snapshot

    def index(self, *, ready_only: bool = False) -> list[dict[str, Any]]:
        """Every version the registry knows (models by name, versions highest first):
        ``{"name", "version", "state": "READY"}`` when some worker has it loaded and warm,
        else ``"UNAVAILABLE"`` with a ``reason``; only the READY ones when ``ready_only``."""
        snapshot = self._snapshot()
        has_ready = self.table.balancer.has_ready
        out: list[dict[str, Any]] = []
        for name in sorted(snapshot.models):
            for info in snapshot.models[name].versions:
                if has_ready(name, info.version):
                    out.append({"name": name, "version": info.version, "state": "READY"})
                elif not ready_only:
                    out.append(
                        {
                            "name": name,
                            "version": info.version,
                            "state": "UNAVAILABLE",
                            "reason": "not loaded on any worker",
                        }
                    )
        return out

    async def load(
        self,
        model: str,
        reference: str | None,
        parameters: Mapping[str, Any],
        *,
        actor: str = "",
    ) -> dict[str, Any]:
        """Load the version ``reference`` (or ``parameters["version"]``, else ``stable``)
        resolves to on the chosen workers; ``{}`` when all of them have it ready."""
        version = self._version(model, reference, parameters) or self._resolve(model, "stable")
        workers = self._workers(parameters)
        if not workers:
            raise NoReadyWorker(model, version, "no modelgate worker is announced to load it on")
        log.info("load of %s@%s on %s %s", model, version, ", ".join(workers), actor)
        path = f"/v2/repository/models/{model}/versions/{version}/load"
        answers = await asyncio.gather(*(self._control(w, path) for w in workers))
        failures = {w: a for w, a in zip(workers, answers, strict=True) if a is not None}
        balancer = self.table.balancer
        for worker in workers:
            if worker not in failures:
                balancer.mark_ready(worker, model, version)
        if failures:
            raise RepositoryFailed("load", f"{model}@{version}", failures)
        return {}

    async def unload(
        self,
        model: str,
        reference: str | None,
        parameters: Mapping[str, Any],
        *,
        actor: str = "",
    ) -> dict[str, Any]:
        """Unload the version ``reference`` (or ``parameters["version"]``) resolves to, or
        every version of ``model``, from the chosen workers; ``{}`` when none of them has
        it any more."""
        version = self._version(model, reference, parameters)
        workers = self._workers(parameters)
        target = f"{model}@{version}" if version else f"every version of {model}"
        log.info("unload of %s from %s %s", target, ", ".join(workers) or "no worker", actor)
        suffix = f"/versions/{version}/unload" if version else "/unload"
        balancer = self.table.balancer
        # NOTE: the balancer's view, not the announcements: a version loaded a moment ago
        # through this gateway may be ready here before its worker announced it.
        versions = (
            [version] if version else [v.version for v in self._snapshot().view(model).versions]
        )
        withdrawn: dict[str, list[str]] = {w: [] for w in workers}
        for v in versions:
            for worker in set(balancer.serving(model, v)) & set(workers):
                withdrawn[worker].append(v)
                balancer.mark_unready(worker, model, v)
        path = f"/v2/repository/models/{model}{suffix}"
        answers = await asyncio.gather(*(self._control(w, path, missing_ok=True) for w in workers))
        failures = {w: a for w, a in zip(workers, answers, strict=True) if a is not None}
        for worker in failures:
            for v in withdrawn[worker]:
                balancer.mark_ready(worker, model, v)
        if failures:
            raise RepositoryFailed("unload", target, failures)
        return {}

    def _version(
        self, model: str, reference: str | None, parameters: Mapping[str, Any]
    ) -> str | None:
        """The concrete version the call names, or None when it names none."""
        unknown = sorted(set(parameters) - PARAMETERS)
        if unknown:
            raise BadGatewayRequest(
                f"unsupported repository parameter(s) {', '.join(map(repr, unknown))}; "
                f"accepted: {', '.join(sorted(PARAMETERS))}"
            )
        given = _text(parameters, "version")
        if given is not None and reference is not None and given != reference.strip():
            raise BadGatewayRequest(
                f'the version is given twice: "{reference}" in the path and "{given}" in the '
                f"parameters; send one"
            )
        named = reference if reference is not None else given
        return self._resolve(model, named) if named is not None else None

    def _resolve(self, model: str, reference: str) -> str:
        return self._snapshot().resolve(model, reference).best.version

    def _workers(self, parameters: Mapping[str, Any]) -> list[str]:
        """The modelgate workers named by ``parameters["workers"]``, else all announced."""
        known = self.table.workers
        ours = sorted(w for w, info in known.items() if not info.external)
        named = _text(parameters, "workers")
        if named is None:
            return ours
        chosen = list(dict.fromkeys(part.strip() for part in named.split(",") if part.strip()))
        for worker in chosen:
            if worker not in known:
                raise BadGatewayRequest(
                    f'unknown worker "{worker}" (announced: {", ".join(ours) or "none"})'
                )
            if known[worker].external:
                raise BadGatewayRequest(
                    f'worker "{worker}" is an external server; the gateway loads and unloads '
                    f"only on modelgate workers ({', '.join(ours) or 'none announced'})"
                )
        return chosen

    async def _control(
        self, worker: str, path: str, *, missing_ok: bool = False
    ) -> tuple[int, str] | None:
        """POST a control route on ``worker``: None when it succeeded (or, ``missing_ok``,
        answered 404: it had nothing to unload), else its status and why."""
        token = self.settings.worker_control_token
        secret = token.get_secret_value().strip() if token is not None else ""
        headers = {"authorization": f"Bearer {secret}"} if secret else {}
        url = self.table.urls.get(worker)
        if not url:
            return 503, "it serves no HTTP"
        try:
            reply = await self.forwarder.send(
                "POST",
                url + path,
                body=b"",
                headers=headers,
                timeout_s=self.settings.repository_timeout_s,
            )
        except (BackendUnavailable, DeadlineExceeded) as exc:
            return 503, exc.message
        if reply.status == 200 or (missing_ok and reply.status == 404):
            return None
        why = f"answered {reply.status}: {error_text(reply)}"
        if reply.status in (401, 403):
            why += f" ({_TOKEN_HINT[bool(secret)]})"
        return reply.status, why
