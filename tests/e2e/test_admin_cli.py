"""The admin subcommands of ``modelgate`` against a running gateway."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

from modelgate.cli import http
from modelgate.cli.main import main
from tests.support.models import onnx_bytes


def test_admin_commands_drive_the_api(live_gateway: tuple[str, str], tmp_path: Path) -> None:
    url, token = live_gateway
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(
            main, ["--url", url, "--token", token, *args], catch_exceptions=False
        )
        assert result.exit_code == 0, result.output
        return result.output

    artifact = tmp_path / "m.onnx"
    artifact.write_bytes(onnx_bytes())
    run("models", "create", "clip", "--description", "from the CLI")
    assert "clip" in run("models", "list")
    run("versions", "publish", "clip", "1.0.0", str(artifact))
    run("versions", "publish", "clip", "1.1.0-rc.1", str(artifact))
    assert "1.1.0-rc.1" in run("versions", "list", "clip")
    run("alias", "set", "clip", "prod", "1.0.0")
    run("traffic", "set", "clip", "1.0.0=90", "1.1.0-rc.1=10", "--shadow", "1.1.0-rc.1=0.5")
    shown = run("traffic", "show", "clip")
    assert re.search(r"│ 1\.0\.0\s+│ 90\s+│ NOT SERVING: no ready worker", shown), shown
    assert re.search(r"1\.1\.0-rc\.1 \(shadow\)\s+│ 50% copied", shown), shown
    assert json.loads(run("traffic", "show", "clip", "-o", "json"))["arms"][0]["weight"] == 90
    assert "→ 1.0.0" in run("resolve", "clip", "prod")
    guarded = runner.invoke(main, ["--url", url, "--token", token, "versions", "yank", "clip",
                                   "1.1.0-rc.1"])  # fmt: skip
    assert guarded.exit_code == 1
    assert '[409] cannot yank version "1.1.0-rc.1" of "clip"' in guarded.output
    run("versions", "yank", "clip", "1.1.0-rc.1", "--force")
    shown = run("traffic", "show", "clip")
    assert re.search(r"1\.1\.0-rc\.1\s+│ 10\s+│ NOT SERVING: yanked", shown), shown
    assert "workers" in run("workers")

    bad = runner.invoke(main, ["--url", url, "--token", token, "resolve", "clip", "^7"])
    assert bad.exit_code == 1
    assert '[404] no version of "clip" satisfies "^7"' in bad.output
    unauthorized = runner.invoke(main, ["--url", url, "models", "create", "x"])
    assert "[401]" in unauthorized.output


def arms(policy: dict[str, Any]) -> list[tuple[str, int]]:
    """A traffic answer's arms as configured (the serving markers left out)."""
    return [(a["version"], a["weight"]) for a in policy["arms"]]


def test_traffic_and_alias_edits_refuse_a_concurrent_change(
    live_gateway: tuple[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    """The CLI reads the ETag and sends it as If-Match: an edit made by someone else between
    that read and the CLI's write makes the CLI fail with a 412 that says so, and the other
    edit stands. A stale --if-match fails the same way; the current one goes through."""
    url, token = live_gateway
    runner = CliRunner()
    admin = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"})
    request.addfinalizer(admin.close)
    artifact = tmp_path / "m.onnx"
    artifact.write_bytes(onnx_bytes())

    def run(*args: str) -> Result:
        return runner.invoke(main, ["--url", url, "--token", token, *args])

    for args in (
        ("models", "create", "etag"),
        ("versions", "publish", "etag", "1.0.0", str(artifact)),
        ("versions", "publish", "etag", "2.0.0", str(artifact)),
        ("traffic", "set", "etag", "1.0.0=100"),
        ("alias", "set", "etag", "prod", "1.0.0"),
    ):
        assert run(*args).exit_code == 0, args

    def someone_else_edits(path: str, body: dict[str, Any]) -> None:
        """Between the CLI's GET of ``path`` and its write, another client PUTs ``body``."""
        real = http.make_client

        def interposed(settings: http.ClientSettings) -> httpx.Client:
            client = real(settings)

            def after(response: httpx.Response) -> None:
                request = response.request
                if request.method == "GET" and request.url.path == path:
                    admin.put(path, json=body).raise_for_status()

            client.event_hooks = {"response": [after]}
            return client

        monkeypatch.setattr(http, "make_client", interposed)

    traffic = "/admin/v1/models/etag/traffic"
    someone_else_edits(traffic, {"arms": [{"version": "2.0.0", "weight": 100}]})
    raced = run("traffic", "set", "etag", "1.0.0=50", "2.0.0=50")
    assert raced.exit_code == 1, raced.output
    assert "[412] the traffic policy of etag was changed by someone else" in raced.output
    assert "nothing was overwritten" in raced.output
    assert arms(admin.get(traffic).json()) == [("2.0.0", 100)]

    alias = "/admin/v1/models/etag/aliases/prod"
    someone_else_edits(alias, {"version": "2.0.0"})
    raced = run("alias", "set", "etag", "prod", "1.0.0")
    assert raced.exit_code == 1, raced.output
    assert "[412] alias etag:prod was changed by someone else" in raced.output
    assert admin.get(alias).json()["version"] == "2.0.0"
    monkeypatch.undo()

    stale = admin.get(traffic).headers["ETag"]
    admin.put(traffic, json={"arms": [{"version": "1.0.0", "weight": 100}]}).raise_for_status()
    refused = run("traffic", "clear", "etag", "--if-match", stale)
    assert refused.exit_code == 1, refused.output
    assert "[412] the traffic policy of etag was changed" in refused.output
    assert admin.get(traffic).status_code == 200
    current = admin.get(traffic).headers["ETag"]
    edited = run("traffic", "set", "etag", "2.0.0=100", "--if-match", current, "-o", "json")
    assert edited.exit_code == 0, edited.output
    assert arms(json.loads(edited.output)) == [("2.0.0", 100)]
