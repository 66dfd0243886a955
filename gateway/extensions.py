"""Triton's model configuration and statistics extensions, for the whole fleet (no HTTP types).

The HTTP routes (`gateway.oip`) and the gRPC service call the same core, `TritonExtensions`:
inputs are a model, a version reference and nothing else; outputs are Triton-shaped dicts;
failures are `ModelgateError` subclasses (rendered by the transport).

* `TritonExtensions.config`: the reference is resolved as model metadata is (ready-aware,
  the version the gateway would serve), and one worker serving that version answers;
  ``name`` is the model the client asked for (an external server may know it by another).
* `TritonExtensions.statistics`: Triton's statistics shape per version, summed over every
  worker that serves it (`merge_stats`). Each worker is asked concurrently, bounded by
  ``extension_timeout_s``; one that fails to answer is left out of the sum and named in a
  warning, never a 500. A listing (every model, or every version of one) holds the versions
  some worker serves; a version the registry knows but no worker serves is not listed,
  as Triton lists only the models it has loaded (and a client reading ``model_stats``
  for a model it just loaded finds it there). Asked for by name, such a version is the
  503 that its metadata and config are too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from gateway.errors import BackendUnavailable, DeadlineExceeded, RegistryNotLoaded, WorkerAnswered
from gateway.forward import Forwarder, Reply
from gateway.routing import RoutingTable
from gateway.settings import GatewaySettings

__all__ = ["Served", "TritonExtensions", "error_text", "merge_stats", "zero_stats"]

log = logging.getLogger("modelgate.gateway.extensions")

#: The `$inference_stats` durations of Triton's statistics extension.
INFERENCE_DURATIONS = (
    "success",
    "fail",
    "queue",
    "compute_input",
    "compute_infer",
    "compute_output",
    "cache_hit",
)
#: The per batch size durations of a `$batch_stat`.
BATCH_DURATIONS = ("compute_input", "compute_infer", "compute_output")
#: Fields whose values are a moment, not an amount: the fleet's is the latest one.
LATEST = frozenset({"last_inference"})
#: Fields that name what is counted (a batch's size), kept as they are.
IDENTITY = frozenset({"batch_size"})


@dataclass(frozen=True, slots=True)
class Served:
    """A worker's answer for one resolved version: the document, the concrete version and
    the worker that answered (``X-Model-Version`` and ``X-Backend`` over HTTP)."""

    doc: dict[str, Any]
    version: str
    worker: str


def zero_stats(model: str, version: str) -> dict[str, Any]:
    """A `$model_stat` with nothing counted yet: what the fleet's sum starts from."""
    zero = {"count": 0, "ns": 0}
    return {
        "name": model,
        "version": version,
        "last_inference": 0,
        "inference_count": 0,
        "execution_count": 0,
        "inference_stats": {name: dict(zero) for name in INFERENCE_DURATIONS},
        "batch_stats": [],
    }


def merge_stats(total: dict[str, Any], part: Mapping[str, Any]) -> dict[str, Any]:
    """Add one worker's `$model_stat` into ``total`` (in place; returned): counts and ``ns``
    add up, ``last_inference`` is the latest, ``batch_stats`` add up per ``batch_size``
    (which stays as it is).

    NOTE: generic over nested objects, so fields a newer worker adds (Triton's
    ``response_stats`` per key, say) add up too; strings (``name``, ``version``) and lists
    other than ``batch_stats`` keep the total's value.
    """
    for key, value in part.items():
        current = total.get(key)
        if key == "batch_stats" and isinstance(value, list):
            total[key] = _merge_batches(current if isinstance(current, list) else [], value)
        elif isinstance(value, bool | str) or key in IDENTITY:
            total.setdefault(key, value)
        elif isinstance(value, int | float):
            if not isinstance(current, int | float):
                total[key] = value
            elif key in LATEST:
                total[key] = max(current, value)
            else:
                total[key] = current + value
        elif isinstance(value, Mapping):
            total[key] = merge_stats(current if isinstance(current, dict) else {}, value)
        elif key not in total:
            total[key] = value
    return total


def _merge_batches(total: list[Any], part: Iterable[Any]) -> list[Any]:
    by_size = {b.get("batch_size"): b for b in total if isinstance(b, dict)}
    for batch in part:
        if not isinstance(batch, Mapping):
            continue
        size = batch.get("batch_size")
        if size in by_size:
            merge_stats(by_size[size], batch)
        else:
            by_size[size] = merge_stats({}, batch)
    return sorted(by_size.values(), key=lambda b: b.get("batch_size") or 0)


def _json(body: bytes) -> Any:
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError:
        return None


def error_text(reply: Reply) -> str:
    """What a worker's error answer says: its ``{"error": ...}``, else the body's start."""
    doc = _json(reply.body)
    if isinstance(doc, dict) and isinstance(doc.get("error"), str):
        return str(doc["error"])
    return reply.body[:200].decode("utf-8", "replace")


def _decode(reply: Reply, worker: str, what: str) -> dict[str, Any]:
    """The JSON object a worker answered with; its error answer as `WorkerAnswered`."""
    if reply.status != 200:
        message = f"worker {worker} answered {reply.status} for {what}: {error_text(reply)}"
        raise WorkerAnswered(worker, reply.status, message)
    doc = _json(reply.body)
    if not isinstance(doc, dict):
        raise BackendUnavailable(f"worker {worker} answered {what} with no JSON object", "reset")
    return doc


class TritonExtensions:
    """Model configuration and statistics, read from the workers the routing table knows."""

    def __init__(
        self, table: RoutingTable, forwarder: Forwarder, settings: GatewaySettings
    ) -> None:
        self.table = table
        self.forwarder = forwarder
        self.settings = settings

    async def _get(self, worker: str, model: str, version: str, suffix: str) -> dict[str, Any]:
        """GET ``/v2/models/{m}[/versions/{v}]{suffix}`` on ``worker`` by the names it knows
        the version by (`RoutingTable.model_path`); raises `BackendUnavailable`,
        `DeadlineExceeded` or `WorkerAnswered`."""
        url = self.table.urls.get(worker)
        if not url:
            raise BackendUnavailable(f"worker {worker} serves no HTTP", "connect-failure")
        reply = await self.forwarder.send(
            "GET",
            url + self.table.model_path(worker, model, version) + suffix,
            body=None,
            headers={},
            timeout_s=self.settings.extension_timeout_s,
        )
        return _decode(reply, worker, f"{model}@{version}{suffix}")

    async def config(self, model: str, reference: str | None) -> Served:
        """Triton's model configuration of the version the gateway serves ``reference``
        with (a pin, an alias, a range, ``stable``, ...), from one worker that serves it."""
        route = self.table.route(model, reference, None)
        # NOTE: asked over HTTP, so a server registered for gRPC only is not a candidate.
        exclude = set(self.table.without_http)
        worker = self.table.balancer.pick(model, route.version, exclude=exclude)
        doc = await self._get(worker, model, route.version, "/config")
        doc["name"] = model
        return Served(doc, route.version, worker)

    async def statistics(
        self, model: str | None = None, reference: str | None = None
    ) -> dict[str, Any]:
        """``{"model_stats": [...]}``: every model's served versions (``model`` None), every
        served version of ``model`` (``reference`` None), or the one version the gateway
        serves ``reference`` with; each summed over the workers that serve it."""
        versions = self._versions(model, reference)
        balancer = self.table.balancer
        http = self.table.without_http
        asks = [(m, v, w) for m, v in versions for w in balancer.serving(m, v) if w not in http]
        answers = await asyncio.gather(*(self._worker_stats(m, v, w) for m, v, w in asks))
        totals: dict[tuple[str, str], dict[str, Any]] = {}
        failed: dict[tuple[str, str], list[str]] = {}
        for (m, v, worker), answer in zip(asks, answers, strict=True):
            if isinstance(answer, str):
                failed.setdefault((m, v), []).append(f"{worker} ({answer})")
                continue
            total = totals.setdefault((m, v), zero_stats(m, v))
            for entry in answer:
                merge_stats(total, entry)
        if reference is not None and model is not None and not totals:
            (only,) = versions
            why = "; ".join(failed.get(only, [])) or "no worker serves it"
            raise BackendUnavailable(
                f"no worker answered for the statistics of {model}@{only[1]}: {why}"
            )
        return {"model_stats": [totals[key] for key in versions if key in totals]}

    def _versions(self, model: str | None, reference: str | None) -> list[tuple[str, str]]:
        """The (model, version) pairs asked for, in the registry's order (models by name,
        versions highest first); a listing holds only those some worker serves."""
        if model is not None and reference is not None:
            return [(model, self.table.route(model, reference, None).version)]
        snapshot = self.table.snapshot
        if snapshot is None:
            raise RegistryNotLoaded("the gateway has not loaded the registry yet; retry shortly")
        names = [model] if model is not None else sorted(snapshot.models)
        has_ready = self.table.balancer.has_ready
        return [
            (name, info.version)
            for name in names
            for info in snapshot.view(name).versions
            if has_ready(name, info.version)
        ]

    async def _worker_stats(self, model: str, version: str, worker: str) -> list[Any] | str:
        """One worker's `$model_stat` entries for the version, renamed to the gateway's
        names; or why it gave none (logged)."""
        try:
            doc = await self._get(worker, model, version, "/stats")
        except (BackendUnavailable, DeadlineExceeded, WorkerAnswered) as exc:
            log.warning(
                "statistics of %s@%s leave out worker %s: %s", model, version, worker, exc.message
            )
            return exc.message
        entries = doc.get("model_stats")
        if not isinstance(entries, list):
            why = "its answer has no model_stats list"
            log.warning("statistics of %s@%s leave out worker %s: %s", model, version, worker, why)
            return why
        _, remote_version = self.table.remote(worker, model, version)
        return [
            {**entry, "name": model, "version": version}
            for entry in entries
            # NOTE: a server registered without a remote version is asked for its model's
            # statistics, whatever versions it names.
            if isinstance(entry, dict)
            and (not remote_version or entry.get("version", remote_version) == remote_version)
        ]
