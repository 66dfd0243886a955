"""``modelgate rollout`` against a fake admin API (httpx.MockTransport): what each command
sends, how it renders, and how ``--watch`` ends. The live stack runs the same commands in
tests/e2e/test_rollout_scripts.py."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result
from rich.console import Console

from modelgate.cli import http, rollout
from modelgate.cli.main import main
from modelgate.cli.rollout_view import collapse_waits, next_judgement_s, status_view

NOW = datetime.now(UTC)


def judgement(step: int, weight: float, verdict: str, **candidate: Any) -> dict[str, Any]:
    figures = {"requests": 200, "errors": 0, "error_rate": 0.0, "p99_ms": 4.0}
    return {
        "step": step,
        "weight": weight,
        "verdict": verdict,
        "at": NOW.isoformat(),
        "candidate": {**figures, **candidate},
        "baseline": {"requests": 1800, "errors": 2, "error_rate": 0.0011, "p99_ms": 3.5},
        "reason": f"step {step + 1} {verdict}",
    }


def doc(**changes: Any) -> dict[str, Any]:
    r: dict[str, Any] = {
        "id": 7, "model": "resnet", "version": "1.3.0", "baseline": "1.2.0", "alias": "prod",
        "state": "running", "step": 1, "weight": 25.0, "steps": [10, 25, 50, 100],
        "interval_s": 30.0, "history": [judgement(0, 10, "pass")], "reason": None,
        "gates": {"max_error_rate": 0.01, "max_latency_ratio": 2.0, "max_p99_ms": None,
                  "min_requests": 100, "waiting_timeout_s": 300.0},
        "lease_holder": "gw-1", "step_started_at": (NOW - timedelta(seconds=12)).isoformat(),
        "created_at": NOW.isoformat(), "updated_at": NOW.isoformat(), "created_by": "alice",
    }  # fmt: skip
    r.update(changes)
    return r


class FakeApi:
    """Answers the rollout routes: GET of one rollout walks through ``sequence`` (the last
    one repeats); every request is kept in ``seen``; ``failures[n]`` is what the n-th
    request (from 0) gets instead: an exception raised, or a response."""

    def __init__(self, sequence: list[dict[str, Any]], listing: list[dict[str, Any]]) -> None:
        self.sequence, self.listing = sequence, listing
        self.seen: list[httpx.Request] = []
        self.failures: dict[int, Exception | httpx.Response] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        failure = self.failures.get(len(self.seen) - 1)
        if failure is not None:
            if isinstance(failure, Exception):
                raise failure
            return failure
        path = request.url.path.removeprefix("/admin/v1/models/resnet/rollouts")
        if request.method == "POST" and path == "":
            return httpx.Response(201, json=doc(state="waiting", step=-1, weight=0, history=[]))
        if request.method == "GET" and path == "":
            return httpx.Response(200, json=self.listing)
        if request.method == "GET":
            r = self.sequence.pop(0) if len(self.sequence) > 1 else self.sequence[0]
            return httpx.Response(200, json=r)
        verb = path.rsplit("/", 1)[-1]
        return httpx.Response(200, json=doc(state={"pause": "paused"}.get(verb, "running")))


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Callable[..., FakeApi]:
    monkeypatch.setattr(rollout.time, "sleep", lambda _s: None)  # NOTE: the CLI's poll pause
    monkeypatch.setattr(rollout, "_now", lambda: NOW)  # the documents' times are from NOW
    monkeypatch.setattr(rollout, "stdout_console", lambda: Console(width=200))  # unwrapped

    def install(
        sequence: list[dict[str, Any]] | None = None, listing: list[dict[str, Any]] | None = None
    ) -> FakeApi:
        fake = FakeApi(sequence or [doc()], listing if listing is not None else [doc()])
        transport = httpx.MockTransport(fake)
        monkeypatch.setattr(
            http,
            "make_client",
            lambda s: httpx.Client(base_url=s.url, transport=transport),
        )
        return fake

    return install


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, [*args, "--url", "http://gw"])


def test_start_sends_what_was_given_and_leaves_the_rest_to_the_api(
    api: Callable[..., FakeApi],
) -> None:
    fake = api()
    out = cli("rollout", "start", "resnet", "1.3.0", "--steps", "5,50,100", "--interval", "10",
              "--max-error-rate", "0.02", "--min-requests", "50", "--alias", "prod")  # fmt: skip
    assert out.exit_code == 0, out.output
    (request,) = fake.seen
    assert request.method == "POST"
    assert json.loads(request.content) == {
        "version": "1.3.0",
        "steps": [5, 50, 100],
        "interval_s": 10.0,
        "gates": {"max_error_rate": 0.02, "min_requests": 50},
        "alias": "prod",
    }
    assert "started resnet rollout #7: 1.3.0 against 1.2.0" in out.output

    fake.seen.clear()
    assert cli("rollout", "start", "resnet", "1.3.0").exit_code == 0
    assert json.loads(fake.seen[0].content) == {"version": "1.3.0"}


def test_start_refuses_steps_that_are_not_numbers_before_calling(
    api: Callable[..., FakeApi],
) -> None:
    fake = api()
    out = cli("rollout", "start", "resnet", "1.3.0", "--steps", "10,half,100")
    assert out.exit_code == 2
    assert '"10,half,100" is not a list of whole percentages' in out.output
    assert fake.seen == []


def test_api_errors_are_shown_with_their_status(api: Callable[..., FakeApi]) -> None:
    fake = api()
    message = 'model "resnet" already has an active rollout: #7 (1.3.0, running)'
    fake.failures[0] = httpx.Response(409, json={"error": message})
    out = cli("rollout", "start", "resnet", "1.4.0")
    assert out.exit_code == 1
    assert f"[409] {message}" in out.output


def test_status_shows_step_weight_figures_verdicts_and_next_judgement(
    api: Callable[..., FakeApi],
) -> None:
    api(listing=[doc(history=[judgement(0, 10, "pass"), judgement(1, 25, "wait", requests=40)])])
    out = cli("rollout", "status", "resnet")
    assert out.exit_code == 0, out.output
    text = out.output
    assert "resnet rollout #7: 1.3.0 (candidate) vs 1.2.0 (baseline), alias prod" in text
    assert "state running · step 2/4 (25%) · weight 25%" in text
    assert "gates: error rate ≤ 1.0% · p99 ≤ 2x baseline · ≥ 100 requests" in text
    assert "next judgement in 18s" in text
    assert "candidate 1.3.0" in text
    assert "baseline 1.2.0" in text
    assert "0.1%" in text  # the baseline's error rate
    assert "3.5 ms" in text  # the baseline's p99
    assert "pass" in text
    assert "wait" in text


def test_next_judgement_counts_down_then_names_the_traffic_it_waits_for() -> None:
    r = doc(history=[judgement(1, 25, "wait", requests=40)])
    started = datetime.fromisoformat(r["step_started_at"])
    assert next_judgement_s(r, started + timedelta(seconds=5)) == pytest.approx(25.0)
    assert next_judgement_s(r, started + timedelta(seconds=50)) == 0.0
    assert next_judgement_s(doc(state="paused"), NOW) is None
    console = Console(file=io.StringIO(), width=160)
    console.print(status_view(r, started + timedelta(seconds=50)))
    assert "waiting for traffic (40/100 candidate requests)" in console.file.getvalue()  # type: ignore[attr-defined]


def test_watch_follows_to_promotion_and_exits_0(api: Callable[..., FakeApi]) -> None:
    promoted = doc(state="promoted", step=3, weight=100.0, history=[judgement(i, w, "pass")
                   for i, w in enumerate((10, 25, 50, 100))])  # fmt: skip
    api(sequence=[doc(), doc(), doc(step=2, weight=50.0), promoted], listing=[doc()])
    out = cli("rollout", "status", "resnet", "--watch")
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert sum("running, step 2/4 (25%)" in line for line in lines) == 1  # once per change
    assert any("running, step 3/4 (50%)" in line for line in lines)
    assert lines[-1] == "resnet rollout #7 1.3.0: promoted at step 4/4 (100%)"


def test_watch_exits_3_on_rollback_with_the_reason(api: Callable[..., FakeApi]) -> None:
    reason = "error rate 15.4% > 1.0% over 230 requests at step 1 (10%)"
    failed = judgement(0, 10, "fail", requests=230, errors=35, error_rate=0.154)
    back = doc(state="rolled_back", step=0, weight=0.0, history=[failed], reason=reason)
    api(sequence=[doc(step=0, weight=10.0, history=[]), back], listing=[doc()])
    out = cli("rollout", "status", "resnet", "7", "--watch")
    assert out.exit_code == 3, out.output
    assert f"ROLLED BACK at step 1/4 (10%): {reason}" in out.output
    assert "candidate 15.4% errors of 230" in out.output


def test_watch_exits_4_when_aborted_and_prints_ndjson_with_o_json(
    api: Callable[..., FakeApi],
) -> None:
    api(sequence=[doc(), doc(state="paused"), doc(state="aborted", reason="aborted by bob")])
    out = cli("-o", "json", "rollout", "status", "resnet", "--watch")
    assert out.exit_code == 4, out.output
    states = [json.loads(line)["state"] for line in out.output.splitlines()]
    assert states == ["running", "paused", "aborted"]


def test_watch_rides_out_a_gateway_restart(api: Callable[..., FakeApi]) -> None:
    fake = api(sequence=[doc(), doc(state="promoted", step=3, weight=100.0)])
    fake.failures[1] = fake.failures[2] = httpx.ConnectError("connection refused")
    out = cli("rollout", "status", "resnet", "7", "--watch")
    assert out.exit_code == 0, out.output
    assert len(fake.seen) == 4
    assert out.output.splitlines()[-1].endswith("promoted at step 4/4 (100%)")


def test_watch_on_a_terminal_is_a_live_panel(
    api: Callable[..., FakeApi], monkeypatch: pytest.MonkeyPatch
) -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=160, color_system=None)
    monkeypatch.setattr(rollout, "stdout_console", lambda: console)
    api(sequence=[doc(), doc(state="promoted", step=3, weight=100.0)])
    out = cli("rollout", "status", "resnet", "--watch")
    assert out.exit_code == 0, out.output
    shown = screen.getvalue()
    assert "modelgate rollout" in shown  # the panel's title
    assert "\x1b[" in shown  # redrawn in place
    assert "promoted at step 4/4 (100%)" in shown


def test_operator_verbs_default_to_the_active_rollout(api: Callable[..., FakeApi]) -> None:
    fake = api(listing=[doc(id=9, state="promoted"), doc(id=8, state="running")])
    out = cli("rollout", "pause", "resnet")
    assert out.exit_code == 0, out.output
    assert fake.seen[-1].method == "POST"
    assert fake.seen[-1].url.path == "/admin/v1/models/resnet/rollouts/8/pause"
    assert "resnet rollout #7 1.3.0: paused" in out.output

    out = cli("rollout", "abort", "resnet", "5", "-o", "json")
    assert fake.seen[-1].url.path == "/admin/v1/models/resnet/rollouts/5/abort"
    assert json.loads(out.output)["id"] == 7

    fake.listing[:] = [doc(id=9, state="promoted")]
    out = cli("rollout", "promote", "resnet")
    assert out.exit_code == 1
    assert 'model "resnet" has no active rollout (newest: #9, promoted)' in out.output


def test_list_is_a_table_or_the_api_answer(api: Callable[..., FakeApi]) -> None:
    api(listing=[doc(id=9, state="rolled_back", reason="p99 9.1 ms > 2.0x baseline"), doc()])
    out = cli("rollout", "list", "resnet")
    assert out.exit_code == 0, out.output
    assert "resnet: 2 rollouts" in out.output
    assert "rolled_back" in out.output
    out = cli("rollout", "list", "resnet", "-o", "json")
    assert [r["id"] for r in json.loads(out.output)] == [9, 7]


def test_watch_gives_up_after_timeout_with_the_rollout_going_on(
    api: Callable[..., FakeApi], monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = iter(float(t) for t in range(0, 1000, 10))  # each reading 10 s later
    monkeypatch.setattr(rollout.time, "monotonic", lambda: next(clock))
    api(sequence=[doc()])
    out = cli("rollout", "status", "resnet", "--watch", "--timeout", "25")
    assert out.exit_code == 1, out.output
    assert "resnet rollout #7 is still running at step 2/4 (25%) after 25s" in out.output


def test_global_options_stand_anywhere_but_a_subcommand_keeps_its_own() -> None:
    from modelgate.cli.main import hoist_global_options

    assert hoist_global_options(["rollout", "list", "m", "-o", "json", "--token=t"]) == [
        "-o", "json", "--token", "t", "rollout", "list", "m",
    ]  # fmt: skip
    assert hoist_global_options(["-ojson", "x", "--", "--url", "u"]) == [
        "-o", "json", "x", "--", "--url", "u",
    ]  # fmt: skip
    worker = main.make_context("modelgate", ["worker", "--url", "http://w:1", "--token", "t"])
    assert worker.params["url"] is None  # the worker's own --url, not the gateway's
    assert worker.params["token"] == "t"
    kept = frozenset({"--url"})
    assert hoist_global_options(["worker", "--url", "http://w:1", "--token", "t"], kept) == [
        "--token", "t", "worker", "--url", "http://w:1",
    ]  # fmt: skip


def test_url_and_token_after_the_subcommand_reach_the_client(
    api: Callable[..., FakeApi], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = api()
    made: list[http.ClientSettings] = []
    installed = http.make_client

    def spy(settings: http.ClientSettings) -> httpx.Client:
        made.append(settings)
        return installed(settings)

    monkeypatch.setattr(http, "make_client", spy)
    out = CliRunner().invoke(main, ["rollout", "list", "resnet", "--url", "http://gw:9", "-o",
                                    "json", "--token", "sekrit"])  # fmt: skip
    assert out.exit_code == 0, out.output
    assert (made[0].url, made[0].token) == ("http://gw:9", "sekrit")
    assert fake.seen[0].url.host == "gw"
    assert json.loads(out.output)[0]["id"] == 7


def test_a_run_of_waits_on_one_step_is_one_row() -> None:
    history = [judgement(0, 10, "pass")] + [judgement(1, 25, "wait", requests=n) for n in
               (10, 20, 30)] + [judgement(1, 25, "pass"), judgement(2, 50, "wait")]  # fmt: skip
    rows = collapse_waits(history)
    assert [(j["step"], j["verdict"], n) for j, n in rows] == [
        (0, "pass", 1), (1, "wait", 3), (1, "pass", 1), (2, "wait", 1),
    ]  # fmt: skip
    assert rows[1][0]["candidate"]["requests"] == 30  # the newest of the run
    console = Console(file=io.StringIO(), width=200)
    console.print(status_view(doc(history=history, step=2, weight=50.0), NOW))
    shown = console.file.getvalue()  # type: ignore[attr-defined]
    assert "wait x3" in shown
    assert "judgements (6)" in shown


def test_promote_force_is_passed_on(api: Callable[..., FakeApi]) -> None:
    fake = api(listing=[doc(id=8, state="waiting")])
    assert cli("rollout", "promote", "resnet", "--force").exit_code == 0
    assert fake.seen[-1].url.path == "/admin/v1/models/resnet/rollouts/8/promote"
    assert fake.seen[-1].url.params["force"] == "true"
    assert cli("rollout", "promote", "resnet", "8").exit_code == 0
    assert "force" not in fake.seen[-1].url.params


def test_watch_off_a_terminal_puts_its_bar_on_a_terminal_stderr(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``-o json --watch`` into a pipe: stdout carries the JSON documents alone, a terminal
    on stderr gets the rollout's progress bar (the candidate's weight)."""

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(rollout.time, "sleep", lambda _s: None)
    screen = Terminal()
    monkeypatch.setattr("sys.stderr", screen)
    docs = iter([doc(), doc(state="promoted", step=3, weight=100.0)])
    piped = Console(file=io.StringIO(), width=200)
    final = rollout.follow(lambda: next(docs), console=piped, as_json=True)
    assert final["state"] == "promoted"
    assert "resnet #7 1.3.0: promoted, step 4/4 (100%)" in screen.getvalue()
    assert "100%" in screen.getvalue()
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["state"] for line in lines] == ["running", "promoted"]
