"""``modelgate rollout``: stepwise canary rollouts with metric gates, on the admin API's
``/admin/v1/models/{m}/rollouts`` routes (DESIGN.md "Rollouts").

``start MODEL VERSION`` creates one (options not given take the API's defaults); ``status
MODEL [ID]`` shows the newest (or that) rollout, ``--watch`` live until it ends, exiting 0
when promoted, 3 when rolled back, 4 when aborted (1 for an API error); ``list``, and
``pause|resume|promote|abort MODEL [ID]`` (default: the model's active rollout). With ``-o
json`` every command prints the API's answer; ``--watch`` prints one JSON line per change.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from datetime import UTC, datetime
from typing import Any

import click
from rich.console import Console
from rich.live import Live

from modelgate.cli.http import Unreachable, admin_path, api_call
from modelgate.cli.output import emit_json, show, stdout_console, wait_progress, wants_json
from modelgate.cli.rollout_view import (
    ACTIVE,
    EXIT_CODES,
    list_table,
    progress_line,
    status_view,
    step_label,
)

__all__ = ["RolloutTimeout", "follow", "rollout"]

#: How long ``--watch`` keeps retrying a gateway that does not answer (a replica restarting).
UNREACHABLE_GRACE_S = 30.0


def _path(model: str, rollout_id: int | None = None, verb: str | None = None) -> str:
    rest = [str(rollout_id)] if rollout_id is not None else []
    return admin_path("models", model, "rollouts", *rest, *([verb] if verb else []))


def _steps(text: str) -> list[int]:
    try:
        steps = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(
            f'"{text}" is not a list of whole percentages such as 10,25,50,100'
        ) from None
    if not steps:
        raise click.BadParameter("give at least one step, e.g. 10,25,50,100")
    return steps


def _newest(ctx: click.Context, model: str) -> dict[str, Any]:
    rollouts: list[dict[str, Any]] = api_call(ctx, "GET", _path(model))
    if not rollouts:
        raise click.ClickException(f'model "{model}" has no rollouts')
    return rollouts[0]


def _active_id(ctx: click.Context, model: str) -> int:
    rollouts: list[dict[str, Any]] = api_call(ctx, "GET", _path(model))
    for r in rollouts:
        if r["state"] in ACTIVE:
            return int(r["id"])
    newest = f" (newest: #{rollouts[0]['id']}, {rollouts[0]['state']})" if rollouts else ""
    raise click.ClickException(f'model "{model}" has no active rollout{newest}')


class RolloutTimeout(click.ClickException):
    """``--timeout`` passed with the rollout still active (exit code 1)."""


def _now() -> datetime:
    return datetime.now(UTC)


@click.group()
def rollout() -> None:
    """Stepwise canary rollouts: start, status [--watch], list, pause, resume, promote, abort.

    Their tables have no extra columns: -o wide shows what -o table does."""


@rollout.command("start")
@click.argument("model")
@click.argument("version")
@click.option("--steps", default=None, help="candidate weights in %, ascending [10,25,50,100]")
@click.option("--interval", type=float, default=None, help="seconds per step before judging [30]")
@click.option("--max-error-rate", type=float, default=None, help="gate: a fraction [0.01]")
@click.option("--max-latency-ratio", type=float, default=None, help="gate: p99 / baseline p99 [2]")
@click.option("--max-p99-ms", type=float, default=None, help="gate: absolute p99 bound [none]")
@click.option("--min-requests", type=int, default=None, help="candidate attempts per step [100]")
@click.option("--waiting-timeout", type=float, default=None, help="abort if never ready [300 s]")
@click.option("--alias", default=None, help="an alias to move to VERSION on promotion")
@click.option("--baseline", default=None, help="what the candidate is judged against [serving]")
@click.option("--watch", is_flag=True, help="then follow it live, as `rollout status --watch`")
@click.pass_context
def start(
    ctx: click.Context,
    model: str,
    version: str,
    steps: str | None,
    interval: float | None,
    max_error_rate: float | None,
    max_latency_ratio: float | None,
    max_p99_ms: float | None,
    min_requests: int | None,
    waiting_timeout: float | None,
    alias: str | None,
    baseline: str | None,
    watch: bool,
) -> None:
    """Start rolling MODEL out to VERSION, step by step, judged by the gates."""
    gates = {
        k: v
        for k, v in {
            "max_error_rate": max_error_rate,
            "max_latency_ratio": max_latency_ratio,
            "max_p99_ms": max_p99_ms,
            "min_requests": min_requests,
            "waiting_timeout_s": waiting_timeout,
        }.items()
        if v is not None
    }
    body: dict[str, Any] = {"version": version}
    if steps is not None:
        body["steps"] = _steps(steps)
    if interval is not None:
        body["interval_s"] = interval
    if gates:
        body["gates"] = gates
    if alias is not None:
        body["alias"] = alias
    if baseline is not None:
        body["baseline"] = baseline
    out = api_call(ctx, "POST", _path(model), json=body)
    started = (
        f"started {model} rollout #{out['id']}: {out['version']} against {out['baseline']},"
        f" steps {', '.join(f'{w}%' for w in out['steps'])}, every {out['interval_s']:g}s"
        f" ({out['state']})"
    )
    show(ctx, out, lambda _wide: started)
    if watch:
        ctx.exit(_watch(ctx, model, int(out["id"]), poll_s=1.0))


@rollout.command("status")
@click.argument("model")
@click.argument("rollout_id", type=int, required=False)
@click.option("--watch", is_flag=True, help="follow live until it ends; exit 0/3/4 (see --help)")
@click.option("--poll", type=click.FloatRange(min=0.1), default=1.0, help="seconds between reads")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=None,
    help="--watch: give up (exit 1) after this many seconds, the rollout going on",
)
@click.pass_context
def status(
    ctx: click.Context,
    model: str,
    rollout_id: int | None,
    watch: bool,
    poll: float,
    timeout: float | None,
) -> None:
    """The newest rollout of MODEL (or ROLLOUT_ID): step, weight, gates, figures, verdicts.

    With --watch it stays live until the rollout ends and exits 0 when it was promoted,
    3 when it was rolled back, 4 when it was aborted."""
    r = api_call(ctx, "GET", _path(model, rollout_id)) if rollout_id else _newest(ctx, model)
    if watch:
        ctx.exit(_watch(ctx, model, int(r["id"]), poll_s=poll, first=r, timeout_s=timeout))
    show(ctx, r, lambda _wide: status_view(r, _now()))


def _watch(
    ctx: click.Context,
    model: str,
    rollout_id: int,
    *,
    poll_s: float,
    first: dict[str, Any] | None = None,
    timeout_s: float | None = None,
) -> int:
    """Follow the rollout until it is no longer active; return its exit code."""
    final = follow(
        lambda: api_call(ctx, "GET", _path(model, rollout_id)),
        first,
        console=stdout_console(),
        poll_s=poll_s,
        as_json=wants_json(ctx),
        transient=(Unreachable,),
        timeout_s=timeout_s,
    )
    return EXIT_CODES.get(final["state"], 1)


def _bar_text(r: dict[str, Any]) -> str:
    return f"{r['model']} #{r['id']} {r['version']}: {r['state']}, {step_label(r)}"


def _no_bar(_done: float, _text: str) -> None:
    """The progress callback where the live panel (on stdout) shows the progress."""


def follow(
    fetch: Callable[[], dict[str, Any]],
    first: dict[str, Any] | None = None,
    *,
    console: Console,
    poll_s: float = 1.0,
    as_json: bool = False,
    transient: tuple[type[Exception], ...] = (),
    timeout_s: float | None = None,
) -> dict[str, Any]:
    """Poll ``fetch`` (one rollout document) every ``poll_s`` until the rollout is no longer
    active and return the last document. A terminal gets the live panel, anything else one
    line (with ``as_json``, one JSON document) per change; a final line names the outcome.
    ``transient`` errors of ``fetch`` are retried for `UNREACHABLE_GRACE_S`; after
    ``timeout_s`` (when given) with the rollout still active, `RolloutTimeout`."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    live = console.is_terminal and not as_json
    r = first if first is not None else fetch()
    seen: tuple[Any, ...] | None = None
    failing_since: float | None = None
    view = Live(status_view(r, _now()), console=console, auto_refresh=False) if live else None
    if view is not None:
        view.start()
    # NOTE: off a terminal stdout carries lines (or JSON); a terminal on stderr gets a bar.
    bar = wait_progress(_bar_text(r), 100) if view is None else nullcontext(_no_bar)
    try:
        with bar as advance:
            while True:
                mark = (r["state"], r["step"], r["weight"], len(r["history"]), r.get("reason"))
                advance(float(r["weight"]), _bar_text(r))
                if view is not None:
                    view.update(status_view(r, _now()), refresh=True)
                elif mark != seen and as_json:
                    emit_json(r)
                elif mark != seen:
                    console.print(progress_line(r), highlight=False, soft_wrap=True)
                seen = mark
                if r["state"] not in ACTIVE:
                    break
                if deadline is not None and time.monotonic() > deadline:
                    raise RolloutTimeout(
                        f"{r['model']} rollout #{r['id']} is still {r['state']} at"
                        f" {step_label(r)} after {timeout_s:g}s"
                    )
                time.sleep(poll_s)
                try:
                    r = fetch()
                    failing_since = None
                except transient:
                    failing_since = failing_since or time.monotonic()
                    if time.monotonic() - failing_since > UNREACHABLE_GRACE_S:
                        raise
    finally:
        if view is not None:
            view.stop()
    if not as_json:
        verdict = {"promoted": "promoted", "rolled_back": "ROLLED BACK", "aborted": "ABORTED"}
        console.print(
            f"{r['model']} rollout #{r['id']} {r['version']}:"
            f" {verdict.get(r['state'], r['state'])} at {step_label(r)}"
            + (f": {r['reason']}" if r.get("reason") else ""),
            highlight=False,
            soft_wrap=True,
        )
    return r


@rollout.command("list")
@click.argument("model")
@click.pass_context
def list_(ctx: click.Context, model: str) -> None:
    """MODEL's rollouts, newest first."""
    rollouts = api_call(ctx, "GET", _path(model))
    show(ctx, rollouts, lambda _wide: list_table(model, rollouts))


def _operator_verb(verb: str, summary: str, force: str | None = None) -> None:
    """Register ``rollout VERB MODEL [ID]``; ``force`` (its help) adds ``--force``."""

    @click.argument("model")
    @click.argument("rollout_id", type=int, required=False)
    @click.pass_context
    def command(ctx: click.Context, /, model: str, rollout_id: int | None, **flags: bool) -> None:
        target = rollout_id if rollout_id is not None else _active_id(ctx, model)
        params = {"force": "true"} if flags.get("force") else None
        out = api_call(ctx, "POST", _path(model, target, verb), params=params)
        text = f"{model} rollout #{out['id']} {out['version']}: {out['state']}, {step_label(out)}"
        show(ctx, out, lambda _wide: text)

    if force is not None:
        command = click.option("--force", is_flag=True, help=force)(command)
    rollout.command(verb, help=f"{summary} (default: MODEL's active rollout).")(command)


_operator_verb("pause", "Hold the rollout at its step")
_operator_verb("resume", "Continue a paused rollout")
_operator_verb(
    "promote",
    "Skip to 100% now: one arm on the candidate, the alias moved",
    force="even if the candidate has no ready worker on the gateway (else a 409)",
)
_operator_verb("abort", "Stop now and send all traffic back to the baseline")
