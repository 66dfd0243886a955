"""The worker's transport-free core: loaded versions, load/unload, inference, drain.

Litestar handlers in ``backends.app`` only parse the path and headers, call this object
and render. Everything here runs on the event loop except model loading, warm-up and
inference, which run on threads.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from backends.batcher import Batcher, BatchPolicy
from backends.codec import DecodedRequest, decode_request, encode_response
from backends.errors import (
    BackendError,
    Draining,
    LoadFailed,
    ModelNotLoaded,
    ModelNotReady,
    PayloadTooLarge,
)
from backends.faults import FaultPolicy
from backends.limits import RequestLimits
from backends.metrics import Metrics
from backends.observe import Served
from backends.oip import ModelMetadata, ServerMetadata
from backends.runtime import OnnxModel, RuntimeOptions, synthetic_inputs
from backends.source import Artifact, ModelSource
from backends.triton import model_config, statistics
from backends.versions import LoadedVersion, choose, precedence
from modelgate.core import tracing
from modelgate.core.proto import inference_pb2 as pb
from modelgate.core.semver import base_version

__all__ = [
    "DataPlane",
    "Decode",
    "Encode",
    "InferOutcome",
    "LoadedVersion",
    "Outputs",
    "WorkerOptions",
    "precedence",
]

log = logging.getLogger("modelgate.worker")

SERVER_NAME = "modelgate-worker"
SERVER_VERSION = "0.1.0"
EXTENSIONS = ["binary_tensor_data", "model_repository", "model_configuration", "statistics"]


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """Everything the data plane needs to know; built from ``WorkerSettings`` by the CLI."""

    worker_id: str = "worker"
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)
    batch: BatchPolicy = field(default_factory=BatchPolicy)
    faults: FaultPolicy = field(default_factory=FaultPolicy)
    max_body_bytes: int = 64 * 1024 * 1024
    warmup: bool = True
    drain_timeout_s: float = 30.0
    fault_seed: int | None = None


@dataclass(frozen=True, slots=True)
class InferOutcome:
    """An encoded response: ``header_length`` is set when binary tensors follow the JSON."""

    body: bytes
    header_length: int | None
    model: str
    version: str


#: A transport's request decoder, given the worker's limits.
Decode = Callable[[RequestLimits], DecodedRequest]
#: Named output arrays, each with whether the client asked for it in binary.
Outputs = list[tuple[str, np.ndarray, bool]]
T = TypeVar("T")
#: A transport's response encoder: the version that ran, the request, its outputs.
Encode = Callable[[LoadedVersion, DecodedRequest, Outputs], T]


def _encode_rest(target: LoadedVersion, request: DecodedRequest, outputs: Outputs) -> InferOutcome:
    encoded, length = encode_response(
        model_name=target.model,
        model_version=target.version,
        request_id=request.id,
        outputs=outputs,
    )
    return InferOutcome(encoded, length, target.model, target.version)


class DataPlane:
    """Loaded versions of this worker and the operations on them."""

    def __init__(
        self,
        options: WorkerOptions,
        *,
        source: ModelSource | None = None,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.options = options
        #: NOTE: no encoding carries more than one element per byte of the body.
        self.limits = RequestLimits(max_elements=options.max_body_bytes)
        self.source = source
        self.metrics = metrics or Metrics()
        self.metrics.set_gauges(self.snapshot)
        self._clock = clock
        self._rng = random.Random(options.fault_seed)
        self._models: dict[str, dict[str, LoadedVersion]] = {}
        self._loading: dict[tuple[str, str], asyncio.Future[LoadedVersion]] = {}
        self.state = "starting"
        self.in_flight = 0
        self.device = "cpu"
        self.changed = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        #: Spans of requests and batches (`modelgate.core.tracing`); None: tracing is off.
        self.tracer = tracing.tracer("modelgate.worker")

    # -- state -------------------------------------------------------------------------

    @property
    def live(self) -> bool:
        return self.state != "stopped"

    @property
    def ready(self) -> bool:
        """Serving, and every version it holds is warm."""
        return self.state == "ready" and all(
            v.state == "ready" for versions in self._models.values() for v in versions.values()
        )

    @property
    def draining(self) -> bool:
        return self.state in ("draining", "stopped")

    def _set_state(self, state: str) -> None:
        self.state = state
        self.changed.set()

    def mark_started(self) -> None:
        """The start-up loads are done: the worker may report ready."""
        if self.state == "starting":
            self._set_state("ready")

    def loaded(self) -> list[LoadedVersion]:
        return [v for versions in self._models.values() for v in versions.values()]

    def snapshot(self) -> dict[str, Any]:
        """State for announcements and gauges."""
        loaded = [
            {
                "model": v.model,
                "version": v.version,
                "ready": v.state == "ready",
                "queue_depth": v.batcher.queue_depth,
            }
            for v in self.loaded()
        ]
        return {
            "state": self.state,
            "in_flight": self.in_flight,
            "queue_depth": sum(item["queue_depth"] for item in loaded),
            "capacity": self.options.batch.max_queue_size,
            "device": self.device,
            "loaded": loaded,
        }

    def _names(self) -> list[str]:
        return [f"{v.model}@{v.version}" for v in self.loaded()]

    # -- lookup ------------------------------------------------------------------------

    def get(self, model: str, version: str | None) -> LoadedVersion:
        """The loaded version a request names, by the worker's version rule
        (`backends.versions.choose`): an exact loaded version, else the ``stable`` one.

        Raises ``ModelNotLoaded`` (404) for a model with nothing loaded and
        ``VersionRefused`` (400) for anything but an exact loaded version.
        """
        versions = self._models.get(model)
        if not versions:
            raise ModelNotLoaded(model, version, self._names())
        return choose(model, versions, version)

    def server_metadata(self) -> ServerMetadata:
        return ServerMetadata(name=SERVER_NAME, version=SERVER_VERSION, extensions=EXTENSIONS)

    def model_metadata(self, model: str, version: str | None) -> ModelMetadata:
        found = self.get(model, version)
        versions = sorted(
            (v.version for v in self._models[model].values()), key=precedence, reverse=True
        )
        return found.metadata(versions)

    def model_ready(self, model: str, version: str | None) -> LoadedVersion:
        found = self.get(model, version)
        if found.state != "ready" or self.draining:
            raise ModelNotReady(model, found.version, "draining" if self.draining else found.state)
        return found

    # -- inference ---------------------------------------------------------------------

    async def infer(
        self,
        model: str,
        version: str | None,
        body: bytes,
        header_length: str | None,
        served: Served | None = None,
    ) -> InferOutcome:
        """Decode, validate, batch, run and encode one REST request (`backends.codec`)."""

        def decode(limits: RequestLimits) -> DecodedRequest:
            if len(body) > self.options.max_body_bytes:
                raise PayloadTooLarge(len(body), self.options.max_body_bytes)
            return decode_request(body, header_length, limits)

        return await self.run(model, version, decode, _encode_rest, served)

    async def run(
        self,
        model: str,
        version: str | None,
        decode: Decode,
        encode: Encode[T],
        served: Served | None = None,
    ) -> T:
        """One inference request of any transport: ``decode`` it (under this worker's
        limits), check it against the model's signature, apply faults, batch, run, and
        ``encode`` the requested outputs.

        Draining, readiness, in-flight accounting, metrics and the access line
        (`backends.observe`; ``served`` carries its request id and span) are the same for
        every transport; any exception from ``decode`` or ``encode`` counts as a failure.
        """
        arrived = self._clock()
        if served is None:
            served = Served.start(self.tracer, None, None, "http", model)
        status = 500
        try:
            if self.draining:
                raise Draining()
            target = self.model_ready(model, version)
            served.version = target.version
            result = await self._served(target, decode, encode, served)
            status = 200
            return result
        except BackendError as exc:
            status = exc.status_code
            raise
        except asyncio.CancelledError:
            status = 499  # the client (the gateway) gave up: nginx's code for it
            raise
        finally:
            served.finish(model, status, self._clock() - arrived)

    async def _served(
        self, target: LoadedVersion, decode: Decode, encode: Encode[T], served: Served
    ) -> T:
        started = self._clock()
        self.in_flight += 1
        self._idle.clear()
        target.metrics.request()
        try:
            return await self._run(target, decode, encode, started, served)
        except Exception as exc:
            status = exc.status_code if isinstance(exc, BackendError) else 500
            target.metrics.failed(status, self._clock() - started)
            raise
        except asyncio.CancelledError:
            target.metrics.cancelled(self._clock() - started)
            raise
        finally:
            self.in_flight -= 1
            if self.in_flight == 0:
                self._idle.set()

    async def _run(
        self,
        target: LoadedVersion,
        decode: Decode,
        encode: Encode[T],
        started: float,
        served: Served,
    ) -> T:
        request = decode(self.limits)
        target.signature.check(target.model, request.inputs)
        names = request.outputs
        if names is None:
            names = [t.name for t in target.signature.outputs]
        else:
            target.signature.check_outputs(target.model, names)
        if target.faults.active:
            await target.faults.apply(self._rng, target.model, target.version)
        decoded = self._clock()
        result = await target.batcher.submit(request.inputs, served.span)
        served.batch_size = result.batch_size
        encoding = self._clock()
        outputs = [(n, result.outputs[n], request.wants_binary(n)) for n in names]
        response = encode(target, request, outputs)
        done = self._clock()
        target.metrics.succeeded(done - started, result.inferences, result.queue_s,
                                 decoded - started, result.compute_s, done - encoding)  # fmt: skip
        return response

    # -- Triton extensions -------------------------------------------------------------

    def model_config(self, model: str, version: str | None) -> pb.ModelConfig:
        """Triton's configuration of the version a request names (`get`'s rule)."""
        found = self.get(model, version)
        batching = found.batcher.batchable
        return model_config(found.model, found.signature, self.options.batch, batching=batching)

    def model_statistics(
        self, model: str | None, version: str | None
    ) -> pb.ModelStatisticsResponse:
        """Triton's statistics: of every loaded version (no ``model``), of every version of
        ``model`` (no ``version``), or of one exact loaded version."""
        if model is None:
            targets = self.loaded()
        elif version is None:
            targets = list(self._models.get(model, {}).values())
            if not targets:
                raise ModelNotLoaded(model, None, self._names())
        else:
            targets = [self.get(model, version)]
        targets.sort(key=lambda v: (v.model, precedence(v.version)))
        return statistics((v.model, v.version, v.metrics) for v in targets)

    # -- load / unload -----------------------------------------------------------------

    async def load(self, model: str, version: str) -> LoadedVersion:
        """Fetch ``model@version`` from the source, load and warm it; idempotent."""
        if self.source is None:
            raise LoadFailed("this worker has no model source to load from")
        existing = self._models.get(model, {}).get(base_version(version))
        if existing is not None:
            return existing
        key = (model, base_version(version))
        pending = self._loading.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[LoadedVersion] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            artifact = await self.source.fetch(model, version)
            loaded = await self.load_artifact(artifact)
            future.set_result(loaded)
            return loaded
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # NOTE: marks it retrieved when no one else awaits it
            raise
        finally:
            del self._loading[key]

    async def load_artifact(self, artifact: Artifact) -> LoadedVersion:
        """Load a model file into a session, warm it up, then make it ready."""
        if self.draining:
            raise Draining()
        key = base_version(artifact.version)
        if key in self._models.get(artifact.model, {}):
            raise LoadFailed(f"{artifact.model}@{artifact.version} is already loaded")
        faults = self.options.faults.with_labels(artifact.labels)
        session = await asyncio.to_thread(OnnxModel, artifact.path, self.options.runtime)
        self.device = session.device
        batchable = session.signature.batchable
        if self.options.warmup:
            batchable = await asyncio.to_thread(self._warm_up, session, artifact)
        metrics = self.metrics.version(artifact.model, artifact.version)
        batcher = Batcher(
            session.run,
            self.options.batch,
            model=artifact.model,
            version=artifact.version,
            batchable=batchable,
            on_batch=metrics.batch,
            tracer=self.tracer,
        )
        loaded = LoadedVersion(artifact, session, batcher, faults)
        loaded.metrics = metrics
        batcher.start()
        loaded.state = "ready"
        self._models.setdefault(artifact.model, {})[key] = loaded
        self.changed.set()
        log.info(
            "loaded %s@%s on %s (batching %s)",
            artifact.model,
            artifact.version,
            session.device,
            f"up to {self.options.batch.max_batch_size}" if batcher.batchable else "off",
        )
        return loaded

    def _warm_up(self, session: OnnxModel, artifact: Artifact) -> bool:
        """Run a synthetic full batch and a single row; whether outputs follow the batch.

        A model whose synthetic inputs fail (fixed-value shape constraints the signature
        does not show) is still served, unbatched; the failure is logged.
        """
        signature = session.signature
        sizes = [self.options.batch.max_batch_size, 1] if signature.batchable else [1]
        aligned = signature.batchable
        for size in dict.fromkeys(sizes):
            try:
                outputs = session.run(synthetic_inputs(signature, size))
            except BackendError as exc:
                log.warning("warm-up of %s@%s failed: %s", artifact.model, artifact.version, exc)
                return False
            if any(a.ndim == 0 or a.shape[0] != size for a in outputs.values()):
                aligned = False
        return aligned

    async def unload(self, model: str, version: str | None = None) -> list[str]:
        """Unload one version (or all of a model's): queued requests finish first."""
        versions = self._models.get(model)
        found = None if version is None or not versions else versions.get(base_version(version))
        if not versions or (version is not None and found is None):
            raise ModelNotLoaded(model, version, self._names())
        targets = [found] if found is not None else list(versions.values())
        for target in targets:
            target.state = "unloading"
            del versions[base_version(target.version)]
        if not versions:
            del self._models[model]
        self.changed.set()
        for target in targets:
            await target.batcher.close()
            log.info("unloaded %s@%s", target.model, target.version)
        return [t.version for t in targets]

    # -- shutdown ----------------------------------------------------------------------

    def begin_drain(self) -> None:
        """Refuse new requests from now on (503); in-flight ones continue."""
        if not self.draining:
            log.info("draining: %d requests in flight", self.in_flight)
            self._set_state("draining")

    async def drain(self, timeout_s: float | None = None) -> bool:
        """Refuse new requests and wait for in-flight ones; ``False`` if the timeout hit."""
        self.begin_drain()
        timeout = self.options.drain_timeout_s if timeout_s is None else timeout_s
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            log.warning("drain timed out with %d requests in flight", self.in_flight)
            return False
        return True

    async def close(self) -> None:
        """Stop every batcher (after its queue empties) and mark the worker stopped."""
        self.begin_drain()
        for target in self.loaded():
            await target.batcher.close()
        self._set_state("stopped")
