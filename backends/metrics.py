"""Per-version worker metrics: a no-op base and the Prometheus implementation.

The data plane records through ``VersionMetrics`` handles made once per loaded version,
so the request path does no label lookups. ``PrometheusMetrics`` owns its own registry
(several workers can live in one test process); it imports ``prometheus_client`` only
when constructed, so the worker core runs where that package is absent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["Metrics", "PrometheusMetrics", "VersionMetrics"]

_LATENCY = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
_BATCH = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class VersionMetrics:
    """Recorders for one model version; the base class records nothing."""

    def request(self) -> None: ...

    def failure(self, status: int) -> None: ...

    def queued(self, seconds: float) -> None: ...

    def latency(self, seconds: float) -> None: ...

    def batch(self, rows: int, seconds: float) -> None: ...


class Metrics:
    """Metrics of a worker; the base class records nothing and renders an empty page."""

    content_type = "text/plain; version=0.0.4; charset=utf-8"

    def version(self, model: str, version: str) -> VersionMetrics:
        return VersionMetrics()

    def render(self) -> bytes:
        return b""

    def set_gauges(self, sample: Callable[[], dict[str, Any]]) -> None:
        """Give the gauges a callback sampled at scrape time."""


class _PromVersion(VersionMetrics):
    def __init__(self, families: dict[str, Any], model: str, version: str) -> None:
        labels = {"model": model, "version": version}
        self._requests = families["requests"].labels(**labels)
        self._failures = families["failures"]
        self._labels = labels
        self._queue = families["queue"].labels(**labels)
        self._latency = families["latency"].labels(**labels)
        self._compute = families["compute"].labels(**labels)
        self._batch = families["batch"].labels(**labels)

    def request(self) -> None:
        self._requests.inc()

    def failure(self, status: int) -> None:
        self._failures.labels(code=str(status), **self._labels).inc()

    def queued(self, seconds: float) -> None:
        self._queue.observe(seconds)

    def latency(self, seconds: float) -> None:
        self._latency.observe(seconds)

    def batch(self, rows: int, seconds: float) -> None:
        self._batch.observe(rows)
        self._compute.observe(seconds)


class PrometheusMetrics(Metrics):
    """Prometheus families labelled by model and version, in a registry of their own."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
        from prometheus_client.exposition import CONTENT_TYPE_LATEST

        self.content_type = CONTENT_TYPE_LATEST
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ("model", "version")
        r = self.registry
        self._families: dict[str, Any] = {
            "requests": Counter(
                "modelgate_worker_requests", "Inference requests received", labels, registry=r
            ),
            "failures": Counter(
                "modelgate_worker_failures",
                "Inference requests answered with an error, by HTTP status",
                (*labels, "code"),
                registry=r,
            ),
            "queue": Histogram(
                "modelgate_worker_queue_seconds",
                "Time a request waited in the batching queue",
                labels,
                buckets=_LATENCY,
                registry=r,
            ),
            "latency": Histogram(
                "modelgate_worker_request_seconds",
                "Time from body received to response encoded",
                labels,
                buckets=_LATENCY,
                registry=r,
            ),
            "compute": Histogram(
                "modelgate_worker_compute_seconds",
                "Time one batch spent running in ONNX Runtime",
                labels,
                buckets=_LATENCY,
                registry=r,
            ),
            "batch": Histogram(
                "modelgate_worker_batch_size",
                "Rows per executed batch",
                labels,
                buckets=_BATCH,
                registry=r,
            ),
        }
        self._in_flight = Gauge("modelgate_worker_in_flight", "Requests in flight", registry=r)
        self._queue_depth = Gauge(
            "modelgate_worker_queue_depth", "Requests waiting to run", labels, registry=r
        )
        self._sample: Callable[[], dict[str, Any]] | None = None

    def version(self, model: str, version: str) -> VersionMetrics:
        return _PromVersion(self._families, model, version)

    def set_gauges(self, sample: Callable[[], dict[str, Any]]) -> None:
        self._sample = sample

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        if self._sample is not None:
            state = self._sample()
            self._in_flight.set(state["in_flight"])
            for item in state["loaded"]:
                self._queue_depth.labels(item["model"], item["version"]).set(item["queue_depth"])
        return generate_latest(self.registry)
