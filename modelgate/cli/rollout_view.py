"""How a rollout (the API's ``RolloutOut`` as JSON) looks to a person: the status panel that
``modelgate rollout status`` prints and ``--watch`` keeps live, one-line progress for logs,
and the table of ``rollout list``.

Pure functions of the rollout document and the current time; nothing here talks to the API.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

__all__ = [
    "ACTIVE",
    "EXIT_CODES",
    "collapse_waits",
    "list_table",
    "next_judgement_s",
    "progress_line",
    "status_view",
    "step_label",
]

#: States in which a rollout still moves (or can be resumed).
ACTIVE = frozenset({"waiting", "running", "paused"})
#: Exit code of ``rollout status --watch`` (and ``start --watch``) for each final state.
EXIT_CODES = {"promoted": 0, "rolled_back": 3, "aborted": 4}

_STATE_STYLE = {
    "waiting": "yellow",
    "running": "cyan",
    "paused": "magenta",
    "promoted": "bold green",
    "rolled_back": "bold red",
    "aborted": "red",
}
_VERDICT_STYLE = {"pass": "green", "fail": "bold red", "wait": "yellow"}


def _when(text: str | None) -> datetime | None:
    if not text:
        return None
    value = datetime.fromisoformat(text)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def step_label(r: dict[str, Any]) -> str:
    """``step 2/4 (25%)`` (the step reached and its weight, also after a rollback), or
    ``not started`` before the first step."""
    steps = r["steps"]
    if r["step"] < 0:
        return f"not started (0/{len(steps)})"
    i = min(r["step"], len(steps) - 1)
    return f"step {i + 1}/{len(steps)} ({steps[i]:g}%)"


def next_judgement_s(r: dict[str, Any], now: datetime) -> float | None:
    """Seconds until the running step is judged (0: due, judged at the next tick, or
    waiting for ``min_requests``); ``None`` when no step is being timed."""
    started = _when(r.get("step_started_at"))
    if r["state"] != "running" or started is None:
        return None
    return max(0.0, (started - now).total_seconds() + float(r["interval_s"]))


def _gates(r: dict[str, Any]) -> str:
    g = r["gates"]
    parts = [
        f"error rate ≤ {_pct(g.get('max_error_rate'))}",
        f"p99 ≤ {g.get('max_latency_ratio'):g}x baseline",
    ]
    if g.get("max_p99_ms") is not None:
        parts.append(f"p99 ≤ {g['max_p99_ms']:g} ms")
    parts.append(f"≥ {g.get('min_requests')} requests")
    return " · ".join(parts)


def _next(r: dict[str, Any], now: datetime) -> str:
    if r["state"] == "waiting":
        return "waiting for a ready worker of the candidate"
    if r["state"] == "paused":
        return "paused: `modelgate rollout resume` continues"
    due = next_judgement_s(r, now)
    if due is None:
        return ""
    last = r["history"][-1] if r["history"] else None
    if due > 0:
        return f"next judgement in {due:.0f}s"
    if last is not None and last["verdict"] == "wait" and last["step"] == r["step"]:
        have, need = last["candidate"]["requests"], r["gates"].get("min_requests")
        return f"judging: waiting for traffic ({have}/{need} candidate requests)"
    return "judging now"


def _figures(r: dict[str, Any]) -> Table | None:
    """The newest judgement's window, candidate against baseline."""
    if not r["history"]:
        return None
    last = r["history"][-1]
    table = Table("version", "requests", "errors", "error rate", "p99", title="last judged window")
    for role, name in (("candidate", r["version"]), ("baseline", r["baseline"])):
        f = last[role]
        table.add_row(
            f"{role} {name}", str(f["requests"]), str(f["errors"]), _pct(f["error_rate"]),
            _ms(f["p99_ms"]),
        )  # fmt: skip
    return table


def collapse_waits(history: list[dict[str, Any]]) -> list[tuple[dict[str, Any], int]]:
    """The judgements with each run of "wait" verdicts on one step folded into its newest,
    with the run's length (a step short of traffic is judged again and again)."""
    rows: list[tuple[dict[str, Any], int]] = []
    for j in history:
        if rows and j["verdict"] == "wait":
            last, count = rows[-1]
            if last["verdict"] == "wait" and last["step"] == j["step"]:
                rows[-1] = (j, count + 1)
                continue
        rows.append((j, 1))
    return rows


def _history(r: dict[str, Any], limit: int) -> Table:
    table = Table(title=f"judgements ({len(r['history'])})")
    for name in ("step", "weight", "verdict", "cand. err", "base err", "cand. p99", "base p99"):
        table.add_column(name, no_wrap=True)
    table.add_column("at", no_wrap=True)
    table.add_column("why (fail, wait)", ratio=1)
    for j, count in collapse_waits(r["history"])[-limit:]:
        c, b = j["candidate"], j["baseline"]
        at = _when(j.get("at"))
        verdict = j["verdict"] + (f" x{count}" if count > 1 else "")
        table.add_row(
            str(j["step"] + 1),
            f"{j['weight']:g}%",
            Text(verdict, style=_VERDICT_STYLE.get(j["verdict"], "")),
            f"{_pct(c['error_rate'])} of {c['requests']}",
            f"{_pct(b['error_rate'])} of {b['requests']}",
            _ms(c["p99_ms"]),
            _ms(b["p99_ms"]),
            at.strftime("%H:%M:%S") if at else "",
            "" if j["verdict"] == "pass" else j.get("reason") or "",
        )
    return table


def _weight_bar(r: dict[str, Any]) -> Table:
    """The candidate's weight as a bar (0-100%)."""
    grid = Table.grid(padding=(0, 1))
    grid.add_row("weight", ProgressBar(total=100, completed=float(r["weight"]), width=40),
                 f"{r['weight']:g}%")  # fmt: skip
    return grid


def status_view(r: dict[str, Any], now: datetime, *, history: int = 12) -> RenderableType:
    """The status panel: state, step and weight, gates, the last window's figures
    (candidate vs baseline error rate and p99), the verdicts, the time to the next judgement."""
    state = Text(r["state"], style=_STATE_STYLE.get(r["state"], ""))
    head = Text.assemble(
        (f"{r['model']}", "bold"), f" rollout #{r['id']}: ", (r["version"], "bold"),
        f" (candidate) vs {r['baseline']} (baseline)",
        f", alias {r['alias']}" if r.get("alias") else "",
    )  # fmt: skip
    steps = " → ".join(
        f"[bold]{w}%[/bold]" if i == r["step"] else f"{w}%" for i, w in enumerate(r["steps"])
    )
    lines: list[RenderableType] = [
        head,
        Text.assemble("state ", state, f" · {step_label(r)} · weight {r['weight']:g}%"),
        _weight_bar(r),
        Text.from_markup(f"steps {steps} · every {r['interval_s']:g}s", emoji=False),
        Text(f"gates: {_gates(r)}"),
    ]
    upcoming = _next(r, now)
    if upcoming:
        lines.append(Text(upcoming, style="italic"))
    if r.get("reason"):
        lines.append(Text(f"reason: {r['reason']}", style=_STATE_STYLE.get(r["state"], "")))
    figures = _figures(r)
    if figures is not None:
        lines.append(figures)
    if r["history"]:
        lines.append(_history(r, history))
    return Panel(Group(*lines), title="modelgate rollout", expand=False)


def progress_line(r: dict[str, Any]) -> str:
    """One plain line per change, for logs and pipelines (``--watch`` off a terminal)."""
    line = f"{r['model']} rollout #{r['id']} {r['version']}: {r['state']}, {step_label(r)}"
    if r["history"]:
        j = r["history"][-1]
        c, b = j["candidate"], j["baseline"]
        line += (
            f"; last verdict {j['verdict']} at step {j['step'] + 1}: candidate"
            f" {_pct(c['error_rate'])} errors of {c['requests']}, p99 {_ms(c['p99_ms'])};"
            f" baseline {_pct(b['error_rate'])} of {b['requests']}, p99 {_ms(b['p99_ms'])}"
        )
    if r.get("reason"):
        line += f"; reason: {r['reason']}"
    return line


def list_table(model: str, rollouts: list[dict[str, Any]]) -> Table:
    """One row per rollout, newest first; only the reason wraps (``-o json`` has the rest)."""
    table = Table(title=f"{model}: {len(rollouts)} rollouts")
    for name in ("id", "version", "baseline", "state", "step", "started"):
        table.add_column(name, no_wrap=True)
    table.add_column("reason", ratio=1)
    for r in rollouts:
        created = _when(r.get("created_at"))
        table.add_row(
            str(r["id"]), r["version"], r["baseline"],
            Text(r["state"], style=_STATE_STYLE.get(r["state"], "")),
            step_label(r), created.strftime("%m-%d %H:%M:%S") if created else "",
            r.get("reason") or "",
        )  # fmt: skip
    return table
