"""Per-version worker metrics: Triton's counters, and modelgate's Prometheus families.

The data plane records through ``VersionMetrics`` handles made once per loaded version
(and kept when a version is unloaded and loaded again), so the request path does no
label lookups. The base ``VersionMetrics`` keeps Triton's per-version counters in plain
integers: they back the statistics extension (`backends.triton`) and the
``nv_inference_*`` families that ``PrometheusMetrics`` renders beside modelgate's own.
``PrometheusMetrics`` owns its own registry (several workers can live in one test
process); it imports ``prometheus_client`` only when constructed, so the worker core runs
where that package is absent.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

__all__ = ["Duration", "Metrics", "PrometheusMetrics", "VersionMetrics", "failure_reason"]

_LATENCY = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
_BATCH = (1, 2, 4, 8, 16, 32, 64, 128, 256)
#: Triton's failure reasons (the ``reason`` label of ``nv_inference_request_failure``).
REASONS = ("REJECTED", "CANCELED", "BACKEND", "OTHER")


def failure_reason(status: int) -> str:
    """Triton's reason for a failed request answered with ``status``: the worker refused
    it (queue full, draining: 503), the model failed (5xx), or anything else (bad input)."""
    if status == 503:
        return "REJECTED"
    return "BACKEND" if status >= 500 else "OTHER"


class Duration:
    """A count and a cumulative duration in nanoseconds (Triton's ``StatisticDuration``)."""

    __slots__ = ("count", "ns")

    def __init__(self) -> None:
        self.count = 0
        self.ns = 0

    def add(self, seconds: float) -> None:
        self.count += 1
        self.ns += int(seconds * 1e9)


class VersionMetrics:
    """Recorders for one model version. The base class keeps Triton's counters only.

    Per request: ``request()`` when it reaches the version, then ``succeeded(...)`` or
    ``failed(...)``; per model execution: ``batch(size, seconds)``. Counts follow Triton:
    ``inference_count`` counts rows (a batch-8 request is 8 inferences, a request to a
    model without batching is 1), ``execution_count`` counts model runs, and each request
    of a batch is charged the whole batch's compute time.
    """

    def __init__(self) -> None:
        self.success = Duration()
        self.fail = Duration()
        self.queue = Duration()
        self.compute_input = Duration()
        self.compute_infer = Duration()
        self.compute_output = Duration()
        self.failures = dict.fromkeys(REASONS, 0)
        self.inference_count = 0
        self.execution_count = 0
        self.last_inference_ms = 0
        #: batch size → executions of that size and their compute time.
        self.batches: dict[int, Duration] = {}

    def request(self) -> None: ...

    def succeeded(self, total_s: float, inferences: int, queue_s: float, input_s: float,
                  infer_s: float, output_s: float) -> None:  # fmt: skip
        """A request answered 200: its timings (end to end, queue, decode, its batch's
        compute, encode) and how many inferences (rows) it carried."""
        self.success.add(total_s)
        self.queue.add(queue_s)
        self.compute_input.add(input_s)
        self.compute_infer.add(infer_s)
        self.compute_output.add(output_s)
        self.inference_count += inferences
        self.last_inference_ms = time.time_ns() // 1_000_000

    def failed(self, status: int, total_s: float) -> None:
        """A request that reached this version and was answered with an error ``status``."""
        self.fail.add(total_s)
        self.failures[failure_reason(status)] += 1
        self.last_inference_ms = time.time_ns() // 1_000_000

    def cancelled(self, total_s: float) -> None:
        """A request its client gave up on (a cancelled gRPC call): a Triton failure with
        reason CANCELED; modelgate's own failures count answered errors only."""
        self.fail.add(total_s)
        self.failures["CANCELED"] += 1
        self.last_inference_ms = time.time_ns() // 1_000_000

    def batch(self, size: int, seconds: float) -> None:
        """One successful model execution of ``size`` rows (1 without batching)."""
        self.execution_count += 1
        found = self.batches.get(size)
        if found is None:
            found = self.batches[size] = Duration()
        found.add(seconds)


class Metrics:
    """Metrics of a worker; the base class keeps Triton's counters and renders nothing.

    ``version`` hands out one ``VersionMetrics`` per model version for the life of the
    process, so counters stay monotonic across an unload and a reload.
    """

    content_type = "text/plain; version=0.0.4; charset=utf-8"

    def __init__(self) -> None:
        self.versions: dict[tuple[str, str], VersionMetrics] = {}

    def version(self, model: str, version: str) -> VersionMetrics:
        found = self.versions.get((model, version))
        if found is None:
            found = self.versions[(model, version)] = self._make(model, version)
        return found

    def _make(self, model: str, version: str) -> VersionMetrics:
        return VersionMetrics()

    def render(self) -> bytes:
        return b""

    def set_gauges(self, sample: Callable[[], dict[str, Any]]) -> None:
        """Give the gauges a callback sampled at scrape time."""


class _PromVersion(VersionMetrics):
    def __init__(self, families: dict[str, Any], model: str, version: str) -> None:
        super().__init__()
        labels = {"model": model, "version": version}
        self._requests = families["requests"].labels(**labels)
        self._failures = families["failures"]
        self._labels = labels
        self._failure_children: dict[int, Any] = {}
        self._queue = families["queue"].labels(**labels)
        self._latency = families["latency"].labels(**labels)
        self._compute = families["compute"].labels(**labels)
        self._batch = families["batch"].labels(**labels)

    def request(self) -> None:
        self._requests.inc()

    def succeeded(self, total_s: float, inferences: int, queue_s: float, input_s: float,
                  infer_s: float, output_s: float) -> None:  # fmt: skip
        super().succeeded(total_s, inferences, queue_s, input_s, infer_s, output_s)
        self._queue.observe(queue_s)
        self._latency.observe(total_s)

    def failed(self, status: int, total_s: float) -> None:
        super().failed(status, total_s)
        child = self._failure_children.get(status)
        if child is None:
            child = self._failures.labels(code=str(status), **self._labels)
            self._failure_children[status] = child
        child.inc()
        self._latency.observe(total_s)

    def batch(self, size: int, seconds: float) -> None:
        super().batch(size, seconds)
        self._batch.observe(size)
        self._compute.observe(seconds)


#: Triton's counters: (name, help, value of a version's metrics). Durations in microseconds.
_TRITON: tuple[tuple[str, str, Callable[[VersionMetrics], int]], ...] = (
    ("nv_inference_request_success", "Successful inference requests (a batch counts once)",
     lambda m: m.success.count),
    ("nv_inference_count", "Inferences performed (a batch of n counts n)",
     lambda m: m.inference_count),
    ("nv_inference_exec_count", "Model executions (batches) performed",
     lambda m: m.execution_count),
    ("nv_inference_request_duration_us",
     "Cumulative end-to-end duration of successful requests in microseconds",
     lambda m: m.success.ns // 1000),
    ("nv_inference_queue_duration_us",
     "Cumulative time requests waited in the batching queue in microseconds",
     lambda m: m.queue.ns // 1000),
    ("nv_inference_compute_input_duration_us",
     "Cumulative time spent decoding request inputs in microseconds",
     lambda m: m.compute_input.ns // 1000),
    ("nv_inference_compute_infer_duration_us",
     "Cumulative time requests spent executing the model in microseconds",
     lambda m: m.compute_infer.ns // 1000),
    ("nv_inference_compute_output_duration_us",
     "Cumulative time spent encoding responses in microseconds",
     lambda m: m.compute_output.ns // 1000),
)  # fmt: skip


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def triton_exposition(versions: dict[tuple[str, str], VersionMetrics]) -> bytes:
    """Triton's ``nv_inference_*`` counters in the Prometheus text format, as Triton
    writes them: counters named without ``_total``, labelled ``model`` and ``version``, and
    ``nv_inference_request_failure`` also by ``reason`` (every reason, zeros included).

    NOTE: written by hand, not through ``prometheus_client``, which renames every counter
    to ``<name>_total``; Triton's dashboards and alerts query the bare names.
    """
    labels = {key: f'model="{_label(key[0])}",version="{_label(key[1])}"' for key in versions}
    lines: list[str] = []
    for name, text, value in _TRITON[:1]:
        lines += _family(name, text, [(labels[k], value(m)) for k, m in versions.items()])
    failures = [(f'{labels[k]},reason="{reason}"', count)
                for k, m in versions.items() for reason, count in m.failures.items()]  # fmt: skip
    lines += _family("nv_inference_request_failure", "Failed inference requests", failures)
    for name, text, value in _TRITON[1:]:
        lines += _family(name, text, [(labels[k], value(m)) for k, m in versions.items()])
    return ("\n".join(lines) + "\n").encode() if lines else b""


def _family(name: str, text: str, samples: list[tuple[str, int]]) -> list[str]:
    head = [f"# HELP {name} {text}", f"# TYPE {name} counter"]
    return head + [f"{name}{{{labels}}} {value}" for labels, value in samples]


class PrometheusMetrics(Metrics):
    """Prometheus families labelled by model and version, in a registry of their own,
    followed by Triton's ``nv_inference_*`` counters (`triton_exposition`)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
        from prometheus_client.exposition import CONTENT_TYPE_LATEST

        from backends.observe import WORKER_ACCESS
        from modelgate.core.accesslog import DroppedLines

        super().__init__()
        self.content_type = CONTENT_TYPE_LATEST
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(DroppedLines(WORKER_ACCESS, "modelgate_worker_access_log_dropped"))
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
                "Rows per executed batch (1 for a model run without batching)",
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

    def _make(self, model: str, version: str) -> VersionMetrics:
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
        return generate_latest(self.registry) + triton_exposition(self.versions)
