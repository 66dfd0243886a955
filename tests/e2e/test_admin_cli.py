"""The admin subcommands of ``modelgate`` against a running gateway: what they do, the JSON
every one of them prints (the API's own), tables that a pipe gets whole, and a 200 MB
publish with its progress bar on a pseudo-terminal in bounded memory."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import struct
import subprocess
import sys
import termios
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import httpx
import pytest
from click.testing import CliRunner, Result

from modelgate.cli import http
from modelgate.cli.admin import ADMIN_COMMANDS
from modelgate.cli.main import main
from registry.artifacts import ArtifactStore
from tests.support.fleet import CLI, Fleet
from tests.support.models import onnx_bytes, write_sparse_model
from tests.support.net import ROOT

#: A worker id far wider than 80 columns: a piped table must show it whole.
LONG_ID = "cli-worker-whose-id-is-much-wider-than-an-eighty-column-terminal-0123456789"
BIG = 200 * 1024 * 1024
#: Runs ``modelgate ARGS`` and writes its peak RSS (KiB) to the file named first. NOTE: a
#: small process forks the CLI, since a child's ru_maxrss starts from its parent's RSS.
MEASURED = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.executable, [sys.executable, "-m", "modelgate", *sys.argv[2:]])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as out:
    out.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """A gateway (uploads unpaced) and one worker with a long id serving clip@1.0.0."""
    root = tmp_path_factory.mktemp("admin-cli")
    deployment = Fleet(root, f"sqlite+aiosqlite:///{root / 'registry.db'}", None)
    try:
        deployment.start_gateway(MODELGATE_REGISTRY_UPLOAD_RATE_MIB_S="0")
        deployment.publish("clip", {"1.0.0": 1.0, "1.1.0": 2.0})
        deployment.start_worker(LONG_ID, ["clip@1.0.0"])
        deployment.wait_serving("clip", "1.0.0", workers=1)
        yield deployment
    finally:
        deployment.stop()


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


def admin_leaves(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from admin_leaves(command, (*path, name))
        else:
            yield (*path, name)


class JsonCli:
    """Runs admin commands with ``-o json`` (and ``--url``/``--token``) after the
    subcommand, returns the one JSON document on stdout, and records which ran."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.ran: set[tuple[str, ...]] = set()

    def __call__(self, *args: str) -> Any:
        env = {"MODELGATE_DATABASE_URL": self.fleet.env["MODELGATE_DATABASE_URL"]}
        tail = ["-o", "json", "--url", self.fleet.gateway_url, "--token", self.fleet.token]
        result = CliRunner().invoke(main, [*args, *tail], env=env)
        assert result.exit_code == 0, (args, result.output)
        command: click.Command = main
        for arg in args:
            if not isinstance(command, click.Group) or arg not in command.commands:
                break
            command = command.commands[arg]
            self.ran.add(tuple(a for a in args[: args.index(arg) + 1]))
        return json.loads(result.stdout)


def test_every_admin_command_prints_the_apis_json(
    fleet: Fleet, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Each admin command's ``-o json`` is what the API answered (compared with a direct
    read where the command only reads; the fields checked where it changes something),
    and no admin command is left out."""
    cli = JsonCli(fleet)
    admin = fleet.admin()
    request.addfinalizer(admin.close)
    api = lambda path, **params: admin.get(path, params=params).json()  # noqa: E731
    artifact = tmp_path / "m.onnx"
    artifact.write_bytes(onnx_bytes(3.0))

    assert cli("models", "create", "jm", "--description", "d")["name"] == "jm"
    assert cli("models", "list") == api("/admin/v1/models", limit=500)
    assert cli("models", "show", "clip") == api("/admin/v1/models/clip")
    published = cli("versions", "publish", "jm", "1.0.0", str(artifact), "--label", "team=ml",
                    "--description", "first", "--priority", "3")  # fmt: skip
    assert published["sha256"] == hashlib.sha256(artifact.read_bytes()).hexdigest()
    assert (published["labels"], published["description"]) == ({"team": "ml"}, "first")
    assert cli("versions", "show", "jm", "1.0.0") == api("/admin/v1/models/jm/versions/1.0.0")
    assert cli("versions", "list", "clip") == api("/admin/v1/models/clip/versions", limit=500)
    assert cli("versions", "priority", "jm", "1.0.0", "7")["priority"] == 7
    for verb, status in (
        ("deprecate", "deprecated"),
        ("undeprecate", "active"),
        ("yank", "yanked"),
    ):
        assert cli("versions", verb, "jm", "1.0.0")["status"] == status

    assert cli("alias", "set", "clip", "prod", "1.0.0")["version"] == "1.0.0"
    assert cli("alias", "show", "clip", "prod") == api("/admin/v1/models/clip/aliases/prod")
    assert cli("alias", "list", "clip") == [api("/admin/v1/models/clip/aliases/prod")]
    assert cli("alias", "drop", "clip", "prod") == {"dropped": "clip:prod"}
    assert cli("traffic", "set", "clip", "1.0.0=100")["arms"][0]["weight"] == 100
    assert cli("traffic", "show", "clip") == api("/admin/v1/models/clip/traffic")
    resolved = cli("resolve", "clip", "1.0.0")
    direct = api("/admin/v1/models/clip/resolve", version="1.0.0")
    assert resolved.keys() == direct.keys()
    assert (resolved["version"], resolved["worker"]) == ("1.0.0", LONG_ID)
    assert cli("traffic", "clear", "clip") == {"cleared": "clip"}

    assert LONG_ID in [w["id"] for w in cli("workers", "list")]
    loaded = cli("workers", "load", "clip", "1.1.0")
    assert [(w["id"], {i["version"] for i in w["loaded"] if i["ready"]}) for w in
            loaded["workers"]] == [(LONG_ID, {"1.0.0", "1.1.0"})]  # fmt: skip
    unloaded = cli("workers", "unload", "clip", "1.1.0", "--worker", LONG_ID)
    assert {i["version"] for i in unloaded["workers"][0]["loaded"]} == {"1.0.0"}
    added = cli("workers", "add", "ext-1", "http://127.0.0.1:9", "--serves", "clip@1.0.0")
    assert (added["id"], added["serves"][0]["remote_model"]) == ("ext-1", "clip")
    assert cli("workers", "remove", "ext-1") == {"removed": "ext-1"}

    started = cli("rollout", "start", "clip", "1.1.0", "--steps", "50,100", "--interval", "60")
    rid = str(started["id"])
    status = cli("rollout", "status", "clip")
    assert status.keys() == api(f"/admin/v1/models/clip/rollouts/{rid}").keys()
    assert (status["id"], status["version"], status["steps"]) == (started["id"], "1.1.0", [50, 100])
    listing = cli("rollout", "list", "clip")
    assert [r.keys() for r in listing] == [r.keys() for r in api("/admin/v1/models/clip/rollouts")]
    assert cli("rollout", "pause", "clip")["state"] == "paused"
    assert cli("rollout", "resume", "clip", rid)["state"] in ("waiting", "running")
    assert cli("rollout", "abort", "clip")["state"] == "aborted"
    cli("rollout", "start", "clip", "1.1.0")
    assert cli("rollout", "promote", "clip", "--force")["state"] == "promoted"

    made = cli("tokens", "create", "--name", "ci-read", "--scope", "read")
    assert made["token"].startswith(made["prefix"])
    listed = cli("tokens", "list")
    assert made["id"] in [t["id"] for t in listed]
    assert all(t["token"] is None for t in listed)
    assert cli("tokens", "revoke", str(made["id"])) == {"revoked": made["id"]}
    assert cli("tokens", "list", "--all") == api("/admin/v1/tokens")

    assert cli("audit", "--limit", "3") == api("/admin/v1/audit", limit=3)
    aliases = cli("audit", "--model", "clip", "--action", "alias")["items"]
    assert [e["action"] for e in aliases] == ["alias.delete", "alias.set"]
    assert cli("audit", "--since", "2999-01-01")["total"] == 0

    every = {(c.name, *leaf) for c in ADMIN_COMMANDS if isinstance(c, click.Group)
             for leaf in admin_leaves(c)} | {(c.name,) for c in ADMIN_COMMANDS
                                             if not isinstance(c, click.Group)}  # fmt: skip
    assert every - cli.ran == set(), "admin commands without a JSON check"


def test_a_piped_table_is_whole_and_plain(fleet: Fleet) -> None:
    """Off a terminal (a pipe here, COLUMNS=80 as a CI runner has) nothing is cut or coloured."""
    env = {**fleet.env, "COLUMNS": "80", "FORCE_COLOR": "1"}
    args = [*CLI, "workers", "--url", fleet.gateway_url, "--token", fleet.token]
    shown = subprocess.run(args, env=env, capture_output=True, text=True, check=True).stdout
    assert LONG_ID in shown, shown
    assert "…" not in shown
    assert "\x1b[" not in shown


def test_a_200_mb_publish_streams_with_a_progress_bar_on_a_terminal(
    fleet: Fleet, tmp_path: Path
) -> None:
    """stderr on a pseudo-terminal gets the bar, stdout (a pipe) the JSON alone; the CLI's
    peak RSS stays far below the file's size, and the registry has the right size and hash."""
    artifact = write_sparse_model(tmp_path / "big.onnx", BIG)
    with fleet.admin() as admin:
        assert admin.post("/admin/v1/models", json={"name": "big"}).status_code == 201
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    rss = tmp_path / "rss"
    args = ["versions", "publish", "big", "1.0.0", str(artifact), "-o", "json"]
    child = subprocess.Popen(
        [sys.executable, "-c", MEASURED, str(rss), *args, "--url", fleet.gateway_url,
         "--token", fleet.token],
        env=fleet.env, cwd=ROOT, stdout=subprocess.PIPE, stderr=slave,
    )  # fmt: skip
    os.close(slave)
    screen = bytearray()

    def read_terminal() -> None:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed its end
                return
            if not chunk:
                return
            screen.extend(chunk)

    reader = threading.Thread(target=read_terminal, daemon=True)
    reader.start()
    out, _ = child.communicate(timeout=120)
    reader.join(timeout=30)
    os.close(master)
    text = screen.decode(errors="replace")
    assert child.returncode == 0, text
    assert "big@1.0.0" in text
    assert "100%" in text
    assert "209.7/209.7 MB" in text, text
    peak_mib = int(rss.read_text()) / 1024  # ru_maxrss: KiB on Linux
    assert peak_mib < 150, f"the CLI peaked at {peak_mib:.0f} MiB for a 200 MiB file"
    doc = json.loads(out)
    sha = hashlib.sha256()
    with artifact.open("rb") as handle:
        while block := handle.read(1024 * 1024):
            sha.update(block)
    with fleet.admin() as admin:
        stored = admin.get("/admin/v1/models/big/versions/1.0.0").json()
    assert (doc["size_bytes"], doc["sha256"]) == (artifact.stat().st_size, sha.hexdigest())
    assert (stored["size_bytes"], stored["sha256"]) == (doc["size_bytes"], doc["sha256"])
    # NOTE: the store's copy is 200 MiB of real disk; no later test reads it.
    ArtifactStore(fleet.root / "artifacts").path(stored["storage_key"]).unlink()
