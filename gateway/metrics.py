"""Prometheus metrics of the gateway, per model / version / arm / worker, and the access log."""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["GatewayMetrics", "access_log"]

access_log = logging.getLogger("modelgate.access")

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class GatewayMetrics:
    """Owns its own registry so several apps (tests) can live in one process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
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
            "Requests that failed, by reason",
            ("model", "reason"),
            registry=self.registry,
        )
        self.retries = Counter(
            "modelgate_gateway_retries",
            "Retries to another worker",
            ("model", "version", "outcome"),
            registry=self.registry,
        )
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
