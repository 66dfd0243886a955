"""The whole ``modelgate`` command tree, in-process: help on every command and option,
``--version``, ``-o``/``--url``/``--token`` anywhere on the line for every admin command, the
documented exit codes, tables that a pipe gets whole, and progress only on a terminal."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import click
import httpx
import pytest
from click.testing import CliRunner, Result

from modelgate.cli import http, output
from modelgate.cli.admin import ADMIN_COMMANDS
from modelgate.cli.main import main
from tests.support.net import free_port

ADMIN = {c.name for c in ADMIN_COMMANDS}


def walk(
    command: click.Command, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from walk(sub, (*path, name))


def test_every_command_and_option_has_help_and_help_exits_0() -> None:
    runner = CliRunner()
    paths = []
    for path, command in walk(main):
        paths.append(path)
        assert (command.help or "").strip(), f"modelgate {' '.join(path)} has no help"
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                assert (param.help or "").strip(), f"{' '.join(path)} {param.opts[0]}: no help"
        shown = runner.invoke(main, [*path, "--help"], prog_name="modelgate")
        assert shown.exit_code == 0, (path, shown.output)
        assert shown.stdout.startswith(f"Usage: modelgate {' '.join(path)}".rstrip()), path
        assert "``" not in shown.stdout, f"{' '.join(path)}: reST markup in the help"
        assert "e.g." not in command.get_short_help_str(80), f"{' '.join(path)}: cut short help"
    assert ("versions", "priority") in paths
    for name in ("audit", "tokens list", "tokens revoke", "models show", "versions show",
                 "alias list", "workers load", "workers unload"):  # fmt: skip
        assert tuple(name.split()) in paths, name


def test_version_and_the_exit_codes_are_in_the_help() -> None:
    shown = CliRunner().invoke(main, ["--version"])
    assert (shown.exit_code, shown.stdout) == (0, f"modelgate {version('modelgate')}\n")
    helped = CliRunner().invoke(main, ["--help"]).stdout
    for line in ("0  the command did what it was asked", "1  the operation failed",
                 "2  usage or connection", "(401)"):  # fmt: skip
        assert line in helped, line


def admin_leaves() -> list[tuple[str, ...]]:
    return [
        path
        for path, command in walk(main)
        if path and path[0] in ADMIN and not isinstance(command, click.Group)
    ]


@pytest.mark.parametrize("path", admin_leaves(), ids=" ".join)
def test_global_options_reach_the_root_from_anywhere_on_the_line(path: tuple[str, ...]) -> None:
    for args in (
        [*path, "X", "--url", "http://gw:9", "--token=t", "-o", "json"],
        ["-owide", *path, "--token", "t", "X", "--url=http://gw:9"],
    ):
        ctx = main.make_context("modelgate", list(args))
        assert ctx.params["url"] == "http://gw:9", args
        assert ctx.params["token"] == "t", args
        assert ctx.params["output"] in ("json", "wide"), args


def test_an_option_value_that_starts_with_o_is_never_hoisted(
    answers: Callable[[httpx.Response], list[httpx.Request]], tmp_path: Path
) -> None:
    seen = answers(httpx.Response(201, json={"name": "foo", "version": "1.0.0", "sha256": "ab"}))
    made = cli("models", "create", "foo", "--description", "-only for tests", "-o", "json")
    assert made.exit_code == 0, made.output
    assert json.loads(seen[0].content)["description"] == "-only for tests"
    model = tmp_path / "m.onnx"
    model.write_bytes(b"onnx")
    args = ["versions", "publish", "m", "1.0.0", str(model), "--label", "-o.onnx=1", "-owide"]
    published = cli(*args, "--description", "-ojson")
    assert published.exit_code == 0, published.output
    assert b'{"-o.onnx": "1"}' in seen[1].content
    assert b"-ojson" in seen[1].content
    assert main.make_context("modelgate", args).params["output"] == "wide"


@pytest.fixture
def answers(monkeypatch: pytest.MonkeyPatch) -> Callable[[httpx.Response], list[httpx.Request]]:
    """Every admin request gets the given response; the requests are kept."""

    def install(response: httpx.Response) -> list[httpx.Request]:
        seen: list[httpx.Request] = []

        def answer(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return response

        transport = httpx.MockTransport(answer)
        monkeypatch.setattr(
            http, "make_client", lambda s: httpx.Client(base_url=s.url, transport=transport)
        )
        return seen

    return install


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, [*args, "--url", "http://gw"])


@pytest.mark.parametrize(
    ("status", "code"), [(404, 1), (409, 1), (403, 1), (503, 1), (401, 2), (400, 1)]
)
def test_an_api_refusal_exits_1_and_a_401_exits_2(
    answers: Callable[[httpx.Response], list[httpx.Request]], status: int, code: int
) -> None:
    answers(httpx.Response(status, json={"error": f"refused with {status}"}))
    out = cli("models", "show", "m", "-o", "json")
    assert out.exit_code == code, out.output
    assert out.stdout == ""  # -o json: nothing but a document on stdout
    assert f"[{status}] refused with {status}" in out.stderr


def test_usage_and_connection_problems_exit_2() -> None:
    bad_option = cli("models", "list", "--no-such-option")
    assert bad_option.exit_code == 2
    bad_output = cli("models", "list", "-o", "yaml")
    assert bad_output.exit_code == 2
    assert "'yaml' is not one of 'table', 'wide', 'json'" in bad_output.stderr
    closed = f"http://127.0.0.1:{free_port()}"
    unreachable = CliRunner().invoke(main, ["models", "list", "--url", closed])
    assert unreachable.exit_code == 2
    assert f"cannot reach {closed}" in unreachable.stderr


@pytest.mark.parametrize(
    ("args", "response", "said"),
    [
        (("models", "list"), httpx.Response(308, headers={"Location": "/admin/v1/models/"}),
         "http://gw/admin/v1/models?limit=500 answered 308 to http://gw/admin/v1/models/: "
         "point --url at the gateway itself"),
        (("models", "list"), httpx.Response(200, html="<html>Directory listing</html>"),
         "http://gw is not a modelgate admin API (it answered text/html)"),
        (("models", "show", "x"), httpx.Response(404, html="<html>Not Found</html>"),
         "http://gw is not a modelgate admin API (it answered 404 text/html)"),
        (("models", "show", "x"), httpx.Response(200, text="{not json", headers={
         "Content-Type": "application/json"}),
         "http://gw is not a modelgate admin API (it answered application/json)"),
    ],
)  # fmt: skip
def test_an_answer_that_is_not_the_admin_apis_is_one_line_and_exit_2(
    answers: Callable[[httpx.Response], list[httpx.Request]],
    args: tuple[str, ...],
    response: httpx.Response,
    said: str,
) -> None:
    answers(response)
    out = cli(*args)
    assert (out.exit_code, out.stdout) == (2, ""), out.output
    assert out.stderr == f"Error: {said}\n"


def test_an_upload_that_cannot_reach_the_gateway_exits_2(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(b"onnx")
    closed = f"http://127.0.0.1:{free_port()}"
    out = CliRunner().invoke(
        main, ["versions", "publish", "m", "1.0.0", str(model), "--url", closed]
    )
    assert out.exit_code == 2, out.output
    assert f"cannot reach {closed}" in out.stderr


@pytest.mark.parametrize(
    ("name", "path"),
    [("../tokens", "/admin/v1/models/..%2Ftokens"), ("x/", "/admin/v1/models/x%2F"),
     ("..", "/admin/v1/models/%2E%2E"), ("a b?#", "/admin/v1/models/a%20b%3F%23")],
)  # fmt: skip
def test_a_name_is_one_path_segment_whatever_it_holds(
    answers: Callable[[httpx.Response], list[httpx.Request]], name: str, path: str
) -> None:
    seen = answers(httpx.Response(200, json={"name": name}))
    out = cli("models", "show", name, "-o", "json")
    assert out.exit_code == 0, out.output
    assert seen[0].url.raw_path.decode() == path


def test_tokens_list_json_is_the_apis_answer_revoked_tokens_included(
    answers: Callable[[httpx.Response], list[httpx.Request]],
) -> None:
    both = [
        {"id": n, "name": f"t{n}", "scopes": ["read"], "prefix": f"mg_{n}", "revoked": n == 2,
         "created_at": None, "created_by": None, "rate_limit_rps": None, "rate_limit_burst": None}
        for n in (1, 2)
    ]  # fmt: skip
    answers(httpx.Response(200, json=both))
    assert json.loads(cli("tokens", "list", "-o", "json").stdout) == both
    table = cli("tokens", "list").stdout
    assert ("mg_1" in table, "mg_2" in table) == (True, False)
    assert "mg_2" in cli("tokens", "list", "--all").stdout


WORKER = {
    "id": "demo-worker-" + "x" * 120, "url": "http://127.0.0.1:8001", "state": "ready",
    "loaded": [{"model": "resnet", "version": "1.2.0", "ready": True}], "in_flight": 0,
    "queue_depth": 0, "capacity": 64, "device": "cpu", "last_seen": "2026-01-01T00:00:00Z",
    "stale": False, "balancer": {"ewma_ms": 1.54999999, "ejected_until": None, "ready": []},
    "kind": "announced", "protocol": "http", "serves": [], "created_at": None, "created_by": None,
}  # fmt: skip


def test_a_piped_table_is_never_cut_and_wide_adds_columns(
    answers: Callable[[httpx.Response], list[httpx.Request]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    answers(httpx.Response(200, json=[WORKER]))
    table = cli("workers")
    assert table.exit_code == 0, table.output
    assert WORKER["id"] in table.stdout
    assert "…" not in table.stdout
    assert "\x1b[" not in table.stdout
    assert "capacity" not in table.stdout
    assert "│ 1.5 " in table.stdout
    wide = cli("workers", "list", "-o", "wide")
    assert "capacity" in wide.stdout
    assert "http://127.0.0.1:8001" in wide.stdout
    assert json.loads(cli("workers", "-o", "json").stdout) == [WORKER]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_goes_to_stderr_only_when_it_is_a_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    piped = io.StringIO()
    monkeypatch.setattr("sys.stderr", piped)
    with output.transfer_progress("m@1.0.0", 2_000_000) as sent:
        sent(2_000_000)
    with output.wait_progress("load", 2) as update:
        update(2, "load: 2/2 workers")
    assert piped.getvalue() == ""
    screen = Terminal()
    monkeypatch.setattr("sys.stderr", screen)
    with output.transfer_progress("m@1.0.0", 2_000_000) as sent:
        sent(1_000_000)
        sent(1_000_000)
    with output.wait_progress("load", 2) as update:
        update(2, "load: 2/2 workers")
    shown = screen.getvalue()
    assert "m@1.0.0" in shown
    assert "2.0/2.0 MB" in shown
    assert "100%" in shown
    assert "load: 2/2 workers" in shown


#: Commands that run until stopped and write logs, not a result: -o is refused.
LONG_RUNNING = {("serve",), ("worker",), ("demo",)}
#: Commands that work on the database and the store directly, each printing a result.
DIRECT = {("db", "upgrade"), ("seed",), ("artifacts", "gc"), ("tokens", "create")}


def test_every_command_prints_json_with_o_json_or_refuses_o() -> None:
    leaves = {p for p, c in walk(main) if p and not isinstance(c, click.Group)}
    assert leaves == LONG_RUNNING | DIRECT | set(admin_leaves()) - DIRECT
    for path in LONG_RUNNING:
        refused = CliRunner().invoke(main, [*path, "-o", "json", "--port", "1"])
        assert refused.exit_code == 2, (path, refused.output)
        assert refused.stderr == (
            f"Error: -o applies to commands that print a result, not to modelgate "
            f"{path[0]}, which writes logs: set MODELGATE_LOG_FORMAT=json for JSON log lines\n"
        )


def test_the_direct_commands_print_one_json_document(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELGATE_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    monkeypatch.setenv("MODELGATE_ARTIFACT_ROOT", str(tmp_path / "artifacts"))

    def doc(*args: str) -> Any:
        out = CliRunner().invoke(main, [*args, "-o", "json"])
        assert out.exit_code == 0, (args, out.output)
        return json.loads(out.stdout)

    upgraded = doc("db", "upgrade")
    assert upgraded["database_url"].endswith("r.db")
    assert upgraded["revision"]
    seeded = doc("seed", "--version", "1.0.0")
    assert seeded["versions"] == [
        {"version": "1.0.0", "outcome": "published", "status": "active",
         "sha256": seeded["versions"][0]["sha256"]},
    ]  # fmt: skip
    assert seeded["token"]["created"]
    assert seeded["token"]["token"].startswith("mg_")
    again = doc("seed", "--version", "1.0.0")
    assert [v["outcome"] for v in again["versions"]] == ["existed"]
    assert again["token"] == {**seeded["token"], "created": False, "token": None}
    stray = tmp_path / "artifacts" / "sha256" / "ff" / ("f" * 64)
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"x" * 7)
    swept = doc("artifacts", "gc", "--dry-run", "--grace-s", "0")
    assert (swept["dry_run"], swept["bytes"], swept["errors"]) == (True, 7, [])
    assert [(f["action"], f["kind"]) for f in swept["files"]] == [("would remove", "orphan")]
    made = doc("tokens", "create", "--name", "ci", "--scope", "read")
    assert (made["name"], made["scopes"], made["token"][:3]) == ("ci", ["read"], "mg_")
