"""The admin subcommands of ``modelgate`` against a running gateway."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

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
    assert '"weight": 90' in run("traffic", "show", "clip")
    assert "→ 1.0.0" in run("resolve", "clip", "prod")
    guarded = runner.invoke(
        main, ["--url", url, "--token", token, "versions", "yank", "clip", "1.1.0-rc.1"]
    )
    assert guarded.exit_code == 1
    assert "[409]" in guarded.output
    assert "arm of the traffic policy" in guarded.output
    run("versions", "yank", "clip", "1.1.0-rc.1", "--force")
    assert "workers" in run("workers")

    bad = runner.invoke(main, ["--url", url, "--token", token, "resolve", "clip", "^7"])
    assert bad.exit_code == 1
    assert '[404] no version of "clip" satisfies "^7"' in bad.output
    unauthorized = runner.invoke(main, ["--url", url, "models", "create", "x"])
    assert "[401]" in unauthorized.output
