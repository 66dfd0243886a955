"""The rollout CLI and the example scripts against a live stack: a real gateway (embedded
mode: SQLite, in-process counters) driving rollouts, a real worker process, client load.

- ``modelgate rollout pause|resume|promote|abort`` work, and bad input answers 4xx (issue 9,
  acceptance 5, the CLI's half).
- ``examples/rollout.sh`` (the CLI) and ``examples/rollout.py`` (httpx) exit 0 when the
  candidate is promoted and non-zero when a gate rolls it back (acceptance 7).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

from modelgate.cli.main import main
from tests.support.fleet import Fleet, infer_json
from tests.support.models import onnx_bytes
from tests.support.net import ROOT, poll_until_async
from tests.support.traffic import Loop

MODEL = "canary"
BASELINE, GOOD, FAULTY = "1.0.0", "2.0.0", "3.0.0"
#: Short steps so a rollout takes seconds: two steps of 1 s, judged on 20 candidate attempts;
#: the latency gate loose (a p99 over a few dozen 1 ms requests on a shared machine is noise):
#: these tests are about the scripts' exit codes, the latency gate has its own tests.
FAST = ("--steps", "50,100", "--interval", "1", "--min-requests", "20", "--max-latency-ratio", "10")
SCRIPT_TIMEOUT_S = 120.0


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("rollouts")
    deployment = Fleet(root, f"sqlite+aiosqlite:///{root / 'registry.db'}", None)
    try:
        deployment.start_gateway()
        deployment.publish(MODEL, {BASELINE: 1.0, GOOD: 2.0})
        with deployment.admin() as client:
            # Half of the faulty version's answers are 500s (backends/faults.py labels).
            labels = json.dumps({"modelgate.fault.error_rate": "0.5"})
            files = {"file": ("m.onnx", onnx_bytes(3.0), "application/octet-stream")}
            data = {"version": FAULTY, "labels": labels}
            response = client.post(f"/admin/v1/models/{MODEL}/versions", data=data, files=files)
            assert response.status_code == 201, response.text
        deployment.start_worker("w1", [f"{MODEL}@{v}" for v in (BASELINE, GOOD, FAULTY)])
        for version in (BASELINE, GOOD, FAULTY):
            deployment.wait_serving(MODEL, version, workers=1)
        yield deployment
    finally:
        deployment.stop()


@pytest.fixture
def admin(fleet: Fleet) -> Iterator[httpx.Client]:
    """An admin client; the model starts on the baseline alone and no rollout is left
    active afterwards."""
    with fleet.admin() as client:
        arms = [{"version": BASELINE, "weight": 100}]
        client.put(f"/admin/v1/models/{MODEL}/traffic", json={"arms": arms}).raise_for_status()
        yield client
        for r in client.get(f"/admin/v1/models/{MODEL}/rollouts").json():
            if r["state"] in ("waiting", "running", "paused"):
                client.post(f"/admin/v1/models/{MODEL}/rollouts/{r['id']}/abort")


def arms(client: httpx.Client) -> list[dict[str, Any]]:
    """The model's policy arms as configured (the serving markers left out)."""
    answer = client.get(f"/admin/v1/models/{MODEL}/traffic").json()
    return [{"version": a["version"], "weight": a["weight"]} for a in answer["arms"]]


def cli(fleet: Fleet, *args: str) -> Result:
    return CliRunner().invoke(main, [*args, "--url", fleet.gateway_url, "--token", fleet.token])


async def run_under_load(fleet: Fleet, command: list[str]) -> tuple[int, str, Loop]:
    """Run ``command`` (a script) while clients send steady traffic through the gateway."""
    env = dict(fleet.env)
    env.update(
        MODELGATE_URL=fleet.gateway_url,
        MODELGATE_TOKEN=fleet.token,
        MODELGATE_CLI=f"{sys.executable} -m modelgate",
    )
    path = f"/v2/models/{MODEL}/infer"
    async with Loop(fleet.gateway_url, path, infer_json, concurrency=2) as load:
        process = await asyncio.create_subprocess_exec(
            *command,
            env=env,
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            out, _ = await asyncio.wait_for(process.communicate(), SCRIPT_TIMEOUT_S)
        except TimeoutError:
            process.kill()
            out, _ = await process.communicate()
            raise AssertionError(f"{command} did not end:\n{out.decode()[-3000:]}") from None
    assert process.returncode is not None
    return process.returncode, out.decode(errors="replace"), load


SHELL = ["bash", str(ROOT / "examples" / "rollout.sh")]
PYTHON = [sys.executable, str(ROOT / "examples" / "rollout.py")]


@pytest.mark.parametrize("script", [SHELL, PYTHON], ids=["rollout.sh", "rollout.py"])
async def test_script_exits_0_when_the_candidate_is_promoted(
    fleet: Fleet, admin: httpx.Client, script: list[str]
) -> None:
    code, out, load = await run_under_load(fleet, [*script, MODEL, GOOD, *FAST, "--alias", "prod"])
    assert code == 0, out
    assert "promoted" in out
    assert arms(admin) == [{"version": GOOD, "weight": 100}]
    assert admin.get(f"/admin/v1/models/{MODEL}/aliases/prod").json()["version"] == GOOD
    (newest, *_) = admin.get(f"/admin/v1/models/{MODEL}/rollouts").json()
    assert newest["state"] == "promoted"
    assert [j["verdict"] for j in newest["history"]].count("pass") == 2
    assert load.sent > 0


@pytest.mark.parametrize("script", [SHELL, PYTHON], ids=["rollout.sh", "rollout.py"])
async def test_script_exits_non_zero_when_a_gate_rolls_back(
    fleet: Fleet, admin: httpx.Client, script: list[str]
) -> None:
    code, out, _ = await run_under_load(fleet, [*script, MODEL, FAULTY, *FAST])
    assert code == 3, out
    assert "error rate" in out
    assert arms(admin) == [{"version": BASELINE, "weight": 100}]
    (newest, *_) = admin.get(f"/admin/v1/models/{MODEL}/rollouts").json()
    assert newest["state"] == "rolled_back"
    assert newest["reason"] in out


@pytest.mark.parametrize("script", [SHELL, PYTHON], ids=["rollout.sh", "rollout.py"])
async def test_a_stopped_script_aborts_its_rollout(
    fleet: Fleet, admin: httpx.Client, script: list[str]
) -> None:
    """SIGTERM (a cancelled pipeline job) mid-rollout: the script aborts the rollout, so
    the traffic goes back to the baseline instead of staying split, and exits 130."""
    env = fleet.env | {"MODELGATE_URL": fleet.gateway_url, "MODELGATE_TOKEN": fleet.token,
                       "MODELGATE_CLI": f"{sys.executable} -m modelgate"}  # fmt: skip
    command = [*script, MODEL, GOOD, "--steps", "30,100", "--interval", "600"]
    process = await asyncio.create_subprocess_exec(
        *command, env=env, cwd=ROOT, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip

    def running() -> dict[str, Any] | None:
        rollouts = admin.get(f"/admin/v1/models/{MODEL}/rollouts").json()
        return rollouts[0] if rollouts and rollouts[0]["state"] == "running" else None

    async def started() -> bool:
        return running() is not None

    await poll_until_async(started, "the rollout's first step", 60.0)
    rollout = running()
    assert rollout is not None
    assert arms(admin) == [{"version": GOOD, "weight": 30}, {"version": BASELINE, "weight": 70}]
    process.terminate()
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 130, out.decode()
    after = admin.get(f"/admin/v1/models/{MODEL}/rollouts/{rollout['id']}").json()
    assert after["state"] == "aborted"
    assert arms(admin) == [{"version": BASELINE, "weight": 100}]


def test_cli_pauses_resumes_promotes_and_aborts(fleet: Fleet, admin: httpx.Client) -> None:
    """The operator verbs through the CLI, on rollouts too slow to move by themselves
    (one long step); each leaves the state and the policy the API promises."""
    slow = ("--steps", "10,100", "--interval", "600", "--alias", "live")
    started = cli(fleet, "rollout", "start", MODEL, GOOD, *slow, "-o", "json")
    assert started.exit_code == 0, started.output
    rollout_id = json.loads(started.output)["id"]

    again = cli(fleet, "rollout", "start", MODEL, FAULTY)
    assert again.exit_code == 1
    assert "[409]" in again.output
    assert f"#{rollout_id}" in again.output or str(rollout_id) in again.output

    paused = cli(fleet, "rollout", "pause", MODEL)
    assert paused.exit_code == 0, paused.output
    assert f"rollout #{rollout_id} {GOOD}: paused" in paused.output
    shown = cli(fleet, "rollout", "status", MODEL, "-o", "json")
    assert json.loads(shown.output)["state"] == "paused"

    resumed = cli(fleet, "rollout", "resume", MODEL, str(rollout_id), "-o", "json")
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.output)["state"] in ("waiting", "running")

    promoted = cli(fleet, "rollout", "promote", MODEL)
    assert promoted.exit_code == 0, promoted.output
    assert f"rollout #{rollout_id} {GOOD}: promoted" in promoted.output
    assert arms(admin) == [{"version": GOOD, "weight": 100}]
    assert admin.get(f"/admin/v1/models/{MODEL}/aliases/live").json()["version"] == GOOD

    started = cli(fleet, "rollout", "start", MODEL, BASELINE, *slow, "-o", "json")
    assert started.exit_code == 0, started.output
    second = json.loads(started.output)
    assert second["baseline"] == GOOD  # what serves now
    aborted = cli(fleet, "rollout", "abort", MODEL)
    assert aborted.exit_code == 0, aborted.output
    assert f"rollout #{second['id']} {BASELINE}: aborted" in aborted.output
    assert arms(admin) == [{"version": GOOD, "weight": 100}]

    listed = cli(fleet, "rollout", "list", MODEL, "-o", "json")
    states = {r["id"]: r["state"] for r in json.loads(listed.output)}
    assert states[rollout_id] == "promoted"
    assert states[second["id"]] == "aborted"
    again = cli(fleet, "rollout", "abort", MODEL, str(second["id"]))
    assert again.exit_code == 1
    assert "[409]" in again.output


@pytest.mark.parametrize(
    ("args", "status"),
    [
        (("9.9.9",), "[404]"),
        (("2.0.0", "--steps", "50,10"), "[400]"),
        (("2.0.0", "--steps", "10,150"), "[400]"),
        (("2.0.0", "--interval", "-1"), "[400]"),
    ],
    ids=["unknown-version", "descending", "over-100", "negative-interval"],
)
def test_cli_start_with_bad_input_answers_4xx_and_changes_nothing(
    fleet: Fleet, admin: httpx.Client, args: tuple[str, ...], status: str
) -> None:
    before = admin.get(f"/admin/v1/models/{MODEL}/rollouts").json()
    out = cli(fleet, "rollout", "start", MODEL, *args)
    assert out.exit_code == 1, out.output
    assert status in out.output
    assert admin.get(f"/admin/v1/models/{MODEL}/rollouts").json() == before
    assert arms(admin) == [{"version": BASELINE, "weight": 100}]


def test_example_scripts_are_executable() -> None:
    for name in ("rollout.sh", "rollout.py"):
        assert os.access(Path(ROOT) / "examples" / name, os.X_OK), name
