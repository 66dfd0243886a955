"""Prometheus metrics of the gateway, per model / version / arm / worker, and the access log.

Label values stay bounded: a ``model`` label names a model of the registry, or
`UNKNOWN_MODEL` for any name a client sent that the registry does not have (so a client
cannot grow the series with made-up names); versions, arms and workers come from the
registry and discovery, never from the request.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from gateway.inbound import ACCESS_LOG
from modelgate.core.accesslog import DroppedLines

__all__ = ["UNKNOWN_MODEL", "BalancerCounters", "GatewayMetrics"]

#: The ``model`` label of requests naming no registered model (model names start with a
#: letter or digit, so it cannot clash with one).
UNKNOWN_MODEL = "_unknown"

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class GatewayMetrics:
    """Owns its own registry so several apps (tests) can live in one process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(DroppedLines(ACCESS_LOG, "modelgate_gateway_access_log_dropped"))
        labels = ("model", "version", "arm", "worker")
        self.requests = Counter(
            "modelgate_gateway_requests",
            "Requests answered",
            (*labels, "code"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "modelgate_gateway_request_seconds",
            "Time from request to response",
            labels,
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            "modelgate_gateway_errors",
            "Inference requests the gateway refused itself, without a worker's reply, by "
            "status code and error class",
            ("model", "code", "reason"),
            registry=self.registry,
        )
        self.retries = Counter(
            "modelgate_gateway_retries",
            "Retries to another worker",
            ("model", "version", "outcome"),
            registry=self.registry,
        )
        #: Also counted in ``errors``; this one says which limit refused.
        self.shed = Counter(
            "modelgate_gateway_shed",
            "Requests rejected by limits (429/503)",
            ("model", "reason"),
            registry=self.registry,
        )
        self.shadow = Counter(
            "modelgate_gateway_shadow",
            "Shadow copies sent",
            ("model", "version", "outcome"),
            registry=self.registry,
        )
        self.ejections = Counter(
            "modelgate_gateway_ejections",
            "Workers ejected as outliers",
            ("worker",),
            registry=self.registry,
        )
        self.degraded = Gauge(
            "modelgate_gateway_degraded",
            "1 while a dependency is failing",
            ("source",),
            registry=self.registry,
        )
        self.revision = Gauge(
            "modelgate_gateway_registry_revision",
            "Registry revision being served",
            registry=self.registry,
        )

        self.rollout_state = Gauge(
            "modelgate_rollout_state",
            "1 for the state each model's latest rollout is in (as this replica last read "
            "it), 0 for the other states",
            ("model", "rollout", "state"),
            registry=self.registry,
        )
        self.rollout_weight = Gauge(
            "modelgate_rollout_weight",
            "The rollout candidate's weight in percent",
            ("model", "rollout"),
            registry=self.registry,
        )
        self.rollout_judgements = Counter(
            "modelgate_rollout_judgements",
            "Judgements of rollout steps this replica made, by verdict (pass, fail, wait)",
            ("model", "verdict"),
            registry=self.registry,
        )

    def watch_balancer(self, balancer: BalancerCounters) -> None:
        """Export the balancer's own counters, read at each scrape (see `BalancerCollector`)."""
        self.registry.register(BalancerCollector(balancer))


class BalancerCounters(Protocol):
    """What `BalancerCollector` reads (`gateway.balancing.balancer.Balancer` has them)."""

    @property
    def panic_picks(self) -> int: ...

    @property
    def ejections_total(self) -> int: ...

    @property
    def ejections_suppressed(self) -> int: ...


class BalancerCollector(Collector):
    """The balancer's counters as Prometheus counters, read when ``/metrics`` is scraped.

    NOTE: a collector rather than a `Counter` incremented in the balancer keeps the
    balancer free of metrics code and its hot path free of a lock per pick.
    """

    def __init__(self, balancer: BalancerCounters) -> None:
        self.balancer = balancer

    def describe(self) -> list[CounterMetricFamily]:
        """The families `collect` yields, so the registry refuses a clashing name."""
        return list(self.collect())

    def collect(self) -> Iterator[CounterMetricFamily]:
        balancer = self.balancer
        yield CounterMetricFamily(
            "modelgate_gateway_balancer_panic_picks",
            "Worker picks that ignored ejections because too few workers were healthy",
            value=balancer.panic_picks,
        )
        yield CounterMetricFamily(
            "modelgate_gateway_balancer_ejections",
            "Ejections applied since start, decided here or received from another replica",
            value=balancer.ejections_total,
        )
        yield CounterMetricFamily(
            "modelgate_gateway_balancer_ejections_suppressed",
            "Ejections refused because max_ejected_fraction of the workers were already out",
            value=balancer.ejections_suppressed,
        )
