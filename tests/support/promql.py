"""What the deployment's monitoring files ask of the exporters: the metric selectors and
grouping labels of a PromQL expression, and the series the gateway and the worker really
export (their own registries, every family exercised once, rendered and parsed back)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, cast

from prometheus_client import generate_latest
from prometheus_client.metrics import MetricWrapperBase

__all__ = ["Expression", "exported", "parse"]

_IDENT = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_SELECTOR = re.compile(rf"({_IDENT})?\s*\{{([^}}]*)\}}")
_MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}


@dataclass
class Expression:
    """One PromQL expression taken apart: ``selectors`` maps each metric name to its
    matchers ``(label, operator, value)``; ``grouping`` holds the labels of every
    ``by``/``on``/... clause."""

    text: str
    selectors: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)
    grouping: set[str] = field(default_factory=set)


def parse(text: str) -> Expression:
    """Take ``text`` apart (Grafana's ``$variables`` must be substituted first)."""
    out = Expression(text)
    rest = _GROUPING.sub(lambda m: _group(out, m[1]), text)
    rest = re.sub(r"\[[^\]]*\]", " ", rest)  # range selectors: [5m]

    def selector(match: re.Match[str]) -> str:
        name = match[1]
        assert name, f"a selector without a metric name in {text!r}"
        out.selectors.setdefault(name, []).extend(_MATCHER.findall(match[2]))
        return " "

    rest = _SELECTOR.sub(selector, rest)
    for match in re.finditer(rf"({_IDENT})(\s*\()?", rest):
        name, call = match[1], match[2]
        if not call and name.lower() not in _KEYWORDS:
            out.selectors.setdefault(name, [])
    return out


def _group(out: Expression, labels: str) -> str:
    out.grouping |= {label.strip() for label in labels.split(",") if label.strip()}
    return " "


_SAMPLE = re.compile(rf"^({_IDENT})(?:\{{(.*)\}})?\s+\S+")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="')


def _series(exposition: bytes, names: dict[str, set[str]]) -> None:
    """Add the series of a text exposition, named as Prometheus stores them.

    NOTE: read line by line rather than with prometheus_client's parser, which renames
    counters that lack the ``_total`` suffix (Triton's ``nv_inference_count``)."""
    for line in exposition.decode().splitlines():
        match = _SAMPLE.match(line)
        if match is not None:
            names.setdefault(match[1], set()).update(_LABEL.findall(match[2] or ""))


def _exercise(metric: MetricWrapperBase) -> None:
    # NOTE: a labelled family renders no sample until a child exists; ``_labelnames`` is
    # prometheus_client's own record of the family's labels.
    labelnames = cast(tuple[str, ...], metric._labelnames)
    child: Any = metric.labels(*(["x"] * len(labelnames))) if labelnames else metric
    for method in ("inc", "observe", "set"):
        if hasattr(child, method):
            getattr(child, method)(1)
            return


def exported() -> dict[str, set[str]]:
    """Every series name the gateway and the worker export, with its label names."""
    from backends.metrics import PrometheusMetrics
    from gateway.metrics import GatewayMetrics

    gateway = GatewayMetrics()
    gateway.watch_balancer(
        cast(Any, SimpleNamespace(panic_picks=0, ejections_total=0, ejections_suppressed=0))
    )
    for value in vars(gateway).values():
        if isinstance(value, MetricWrapperBase):
            _exercise(value)
    names: dict[str, set[str]] = {}
    _series(generate_latest(gateway.registry), names)

    worker = PrometheusMetrics()
    version = worker.version("m", "1.0.0")
    version.request()
    version.succeeded(0.01, 4, 0.001, 0.001, 0.005, 0.001)
    version.failed(503, 0.01)
    version.batch(4, 0.005)
    worker.set_gauges(
        lambda: {"in_flight": 1, "loaded": [{"model": "m", "version": "1.0.0", "queue_depth": 2}]}
    )
    _series(worker.render(), names)
    return names
