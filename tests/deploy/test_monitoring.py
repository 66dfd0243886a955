"""deploy/grafana/modelgate.json and deploy/prometheus/alerts.yml: promtool accepts the
rules and their unit tests pass; the dashboard is a well-formed Grafana dashboard whose
every expression parses (promtool, as recording rules); and every metric, label and
enumerated label value they use is one the gateway and worker really export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from registry.models import RolloutState
from tests.support.promql import Expression, exported, parse
from tests.support.validators import ROOT, run, tool

DASHBOARD = ROOT / "deploy" / "grafana" / "modelgate.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
ALERT_TESTS = ROOT / "deploy" / "prometheus" / "alerts.test.yml"
#: Grafana's variables, as the dashboard's queries see them.
VARIABLES = {"$__rate_interval": "5m", "$model": ".*"}
PANEL_TYPES = {"row", "timeseries", "stat", "state-timeline"}
#: Labels Prometheus itself gives every scraped series.
TARGET_LABELS = {"instance", "job"}


@pytest.fixture(scope="module")
def series() -> dict[str, set[str]]:
    return exported()


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def _panel_exprs(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            text = target["expr"]
            for name, value in VARIABLES.items():
                text = text.replace(name, value)
            out.append((f"panel {panel['id']} ({panel['title']}) {target['refId']}", text))
    return out


def _alert_exprs() -> list[tuple[str, str]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [(rule["alert"], rule["expr"]) for group in groups for rule in group["rules"]]


def _error_classes() -> set[str]:
    import gateway.errors
    import registry.errors
    from modelgate.core.errors import ModelgateError

    assert gateway.errors  # imported for their subclasses of ModelgateError
    assert registry.errors
    found: set[str] = set()
    todo = [ModelgateError]
    while todo:
        cls = todo.pop()
        found.add(cls.__name__)
        todo += cls.__subclasses__()
    return found


def _check(where: str, expression: Expression, series: dict[str, set[str]]) -> None:
    assert expression.selectors, f"{where}: no metric in {expression.text!r}"
    labels = set(TARGET_LABELS)
    for name, matchers in expression.selectors.items():
        assert name in series, f"{where}: {name} is not exported (have {sorted(series)})"
        labels |= series[name]
        for label, _op, value in matchers:
            assert label in series[name], f"{where}: {name} has no label {label!r}"
            if name == "modelgate_rollout_state" and label == "state":
                assert value in {str(s) for s in RolloutState}, f"{where}: state {value!r}"
            if name == "modelgate_gateway_errors_total" and label == "reason":
                wrong = set(value.split("|")) - _error_classes()
                assert not wrong, f"{where}: no error class {wrong} (reason is the class name)"
    missing = expression.grouping - labels
    assert not missing, f"{where}: grouped by {missing}, which none of its metrics has"


def test_promtool_checks_the_alert_rules() -> None:
    out = run([tool("promtool"), "check", "rules", ALERTS])
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 5 rules found" in out.stdout


def test_the_alert_rules_unit_tests_pass() -> None:
    out = run([tool("promtool"), "test", "rules", ALERT_TESTS])
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_the_alerts_cover_what_an_operator_is_paged_for() -> None:
    alerts = dict(_alert_exprs())
    assert set(alerts) == {
        "ModelgateVersionErrorRate", "ModelgateLatencyP99High", "ModelgateNoReadyWorker",
        "ModelgateGatewayDegraded", "ModelgateRolloutRolledBack",
    }  # fmt: skip
    assert "version" in parse(alerts["ModelgateVersionErrorRate"]).grouping
    assert "histogram_quantile(0.99" in alerts["ModelgateLatencyP99High"]


def test_every_alert_uses_exported_metrics_and_labels(series: dict[str, set[str]]) -> None:
    for where, text in _alert_exprs():
        _check(where, parse(text), series)


def test_every_dashboard_query_uses_exported_metrics_and_labels(
    dashboard: dict[str, Any], series: dict[str, set[str]]
) -> None:
    exprs = _panel_exprs(dashboard)
    assert len(exprs) >= 15
    for where, text in exprs:
        _check(where, parse(text), series)
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"]
            assert query == variable["definition"]
            metric, label = query.removeprefix("label_values(").rstrip(")").split(", ")
            assert label in series[metric], query


def test_every_dashboard_query_parses(dashboard: dict[str, Any], tmp_path: Path) -> None:
    """promtool parses each query, given to it as a recording rule."""
    rules = [{"record": f"dashboard:q{i}", "expr": text}
             for i, (_, text) in enumerate(_panel_exprs(dashboard))]  # fmt: skip
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    out = run([tool("promtool"), "check", "rules", path])
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_dashboard_is_well_formed(dashboard: dict[str, Any]) -> None:
    assert dashboard["title"]
    assert 0 < len(dashboard["uid"]) <= 40
    assert isinstance(dashboard["schemaVersion"], int)
    assert dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        assert panel["type"] in PANEL_TYPES, panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] >= 0
        assert grid["w"] > 0
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        here = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"])
                for y in range(grid["y"], grid["y"] + grid["h"])}  # fmt: skip
        assert not here & cells, f"panel {panel['title']!r} overlaps another"
        cells |= here
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        refs = [t["refId"] for t in panel["targets"]]
        assert refs
        assert len(refs) == len(set(refs)), panel["title"]


def test_the_dashboard_shows_what_the_issue_asks_for(dashboard: dict[str, Any]) -> None:
    parsed = [parse(text) for _, text in _panel_exprs(dashboard)]

    def shown(metric: str, *, by: frozenset[str] = frozenset(), matcher: str | None = None) -> bool:
        return any(
            metric in e.selectors and by <= e.grouping
            and (matcher is None or any(m[0] == matcher for m in e.selectors[metric]))
            for e in parsed
        )  # fmt: skip

    version_arm = frozenset({"version", "arm"})
    assert shown("modelgate_gateway_requests_total", by=version_arm)
    assert shown("modelgate_gateway_requests_total", by=version_arm, matcher="code")  # errors
    assert shown("modelgate_gateway_request_seconds_bucket", by=version_arm | {"le"})
    assert shown("modelgate_gateway_shed_total", by=frozenset({"reason"}))
    assert shown("modelgate_gateway_ejections_total", by=frozenset({"worker"}))
    assert shown("modelgate_rollout_weight")
    assert shown("modelgate_rollout_state", by=frozenset({"state"}))
    assert shown("modelgate_worker_batch_size_bucket", by=frozenset({"le"}))
