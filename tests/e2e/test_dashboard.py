"""Issue 11, acceptance 1: the dashboard at ``/ui`` in a real browser (Debian's Chromium,
driven by Playwright) against a live stack: a ``modelgate serve`` on PostgreSQL and Redis,
and three real worker processes (``w1``: resnet@1.0.0 and textcls@1.0.0; ``w2``:
resnet@2.0.0; ``w3``: resnet@1.0.0, started with every answer failing, so that traffic
gets it ejected).

* With a read token, the page shows the models, their versions, the configured and observed
  split, the workers and a rollout, and follows them without a reload: the rollout advancing
  to promotion under load, the observed split moving with it, ``w3`` ejected (and why), a
  version published meanwhile.
  It offers no action, and the admin API refuses the read token one (403).
* A wrong token gets a message on the login form.
* With an admin token, a rollout is aborted through the page's button and its confirmation
  (a cancelled confirmation does nothing), and an alias is moved through its dialog; the
  registry says the rollout was aborted and where the alias points.
* No request of the page leaves the gateway's own ``http://127.0.0.1:PORT/``.

With ``MODELGATE_UI_SCREENSHOTS=DIR`` the tests save screenshots there (``docs/img`` holds
the committed ones).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, async_playwright, expect

from tests.support.fleet import Fleet, infer_json
from tests.support.isolation import REDIS_URL, delete_prefix_sync, scoped
from tests.support.rollouts import on_baseline
from tests.support.traffic import Loop

MODEL = "resnet"
CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: How long the page may take to show a change (it polls every 1.5 s; rollout steps of 1 s).
SHOWN_MS = 20_000
STATE = "/ui/api/state"
SCREENSHOTS = os.environ.get("MODELGATE_UI_SCREENSHOTS")
#: The rollout's steps and interval: short, but running for longer than a few of the
#: page's polls, even on a loaded machine; for screenshots, long enough to catch its middle
#: step on the page.
STEPS, INTERVAL_S = ([20, 50, 100], 5.0) if SCREENSHOTS else ([30, 100], 2.0)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, pg_database_factory: Any) -> Iterator[Fleet]:
    keys = scoped("dashboard")
    deployment = Fleet(
        tmp_path_factory.mktemp("dashboard"), pg_database_factory(), REDIS_URL, keys.prefix
    )
    # NOTE: short ejections, so that the fleet's restore between tests finds w3 back soon.
    deployment.env.update(
        MODELGATE_GATEWAY_SLOW_START_S="0",
        MODELGATE_GATEWAY_BASE_EJECTION_S="2",
        MODELGATE_GATEWAY_MAX_EJECTION_S="4",
    )
    try:
        deployment.start_gateway()
        deployment.publish(MODEL, {"1.0.0": 1.0, "2.0.0": 2.0})
        deployment.publish("textcls", {"1.0.0": 3.0})
        deployment.start_worker("w1", [f"{MODEL}@1.0.0", "textcls@1.0.0"])
        deployment.start_worker("w2", [f"{MODEL}@2.0.0"])
        healthy = dict(deployment.env)
        deployment.env["MODELGATE_WORKER_FAULT_ERROR_RATE"] = "1"
        deployment.start_worker("w3", [f"{MODEL}@1.0.0"])
        deployment.env = healthy
        deployment.wait_serving(MODEL, "1.0.0", workers=2)
        deployment.wait_serving(MODEL, "2.0.0", workers=1)
        yield deployment
    finally:
        deployment.stop()
        delete_prefix_sync(prefix=keys.prefix)


@pytest.fixture
def baseline(fleet: Fleet) -> Iterator[httpx.Client]:
    """1.0.0 takes all of resnet's traffic, under the alias ``prod``; no rollout is left
    active afterwards."""
    with on_baseline(fleet, MODEL) as client:
        yield client


def make_token(client: httpx.Client, scope: str) -> str:
    made = client.post("/admin/v1/tokens", json={"name": f"dashboard-{scope}", "scopes": [scope]})
    assert made.status_code == 201, made.text
    token: str = made.json()["token"]
    return token


def start_rollout(client: httpx.Client, version: str, **plan: Any) -> dict[str, Any]:
    response = client.post(f"/admin/v1/models/{MODEL}/rollouts", json={"version": version, **plan})
    assert response.status_code == 201, response.text
    out: dict[str, Any] = response.json()
    return out


@asynccontextmanager
async def dashboard(base_url: str, profile: Path) -> AsyncIterator[tuple[Page, list[str]]]:
    """A fresh Chromium profile on ``/`` (which redirects to ``/ui``), and every URL the
    page requested, recorded as it goes."""
    requested: list[str] = []
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            args=FLAGS,
            headless=True,
            viewport={"width": 1440, "height": 1000},
        )
        try:
            page = context.pages[0] if context.pages else await context.new_page()
            page.on("request", lambda request: requested.append(request.url))
            await page.goto(f"{base_url}/")
            yield page, requested
        finally:
            await context.close()


async def sign_in(page: Page, token: str) -> None:
    await page.fill("#token", token)
    await page.click("#login-form button[type=submit]")


def assert_local(requested: list[str], base_url: str) -> None:
    assert requested, "the page requested nothing"
    outside = [url for url in requested if not url.startswith(f"{base_url}/")]
    assert outside == [], outside


async def shot(page: Page, name: str, selector: str | None = None, full: bool = True) -> None:
    if not SCREENSHOTS:
        return
    path = Path(SCREENSHOTS) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if selector is None:
        await page.screenshot(path=str(path), full_page=full)
    else:
        await page.locator(selector).screenshot(path=str(path))


async def assert_redraws_keep_a_selection(page: Page, worker: str) -> None:
    """Select a worker's id on the page: two polls drawn later (under traffic: its row's figures
    move), the same text is selected, in the same node, still attached."""
    selected = await page.evaluate(
        """worker => {
            const node = document.querySelector(`[data-testid=worker-${worker}] td b`);
            const range = document.createRange();
            range.selectNodeContents(node);
            getSelection().removeAllRanges();
            getSelection().addRange(range);
            window.selectedWorker = node;
            return getSelection().toString();
        }""",
        worker,
    )
    assert selected == worker
    # NOTE: polls are sequential: the third answer comes after the second one was drawn.
    for _ in range(3):
        async with page.expect_response(lambda r: r.url.endswith(STATE), timeout=SHOWN_MS):
            pass
    kept = await page.evaluate(
        "() => [getSelection().toString(), window.selectedWorker.isConnected]"
    )
    await page.evaluate("() => getSelection().removeAllRanges()")  # not in the screenshots
    assert kept == [worker, True]


async def shares(page: Page) -> dict[str, float]:
    raw = await page.get_attribute(f"[data-testid=split-{MODEL}]", "data-observed")
    observed: dict[str, float] = json.loads(raw or "{}")
    return observed


STATIC = Path(__file__).parents[2] / "gateway" / "dashboard" / "static"


async def test_the_chart_ticks_keep_the_zeros_of_whole_numbers(tmp_path: Path) -> None:
    """Axis labels and tooltips (``formatTick`` in charts.js, run in Chromium): trailing
    zeros go only after a decimal point, so 100 ms reads "100 ms", never "1 ms"."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=FLAGS, headless=True
        )
        try:
            page = await browser.new_page()
            await page.set_content("<!doctype html><html><body></body></html>")
            await page.add_script_tag(path=str(STATIC / "charts.js"))
            ticks = await page.evaluate(
                "values => values.map((v) => formatTick(v, ' ms'))",
                [0, 0.5, 1, 2.5, 10, 50, 100, 120, 200, 1000],
            )
            # 30 judgements: a few x labels, the last one among them, not 30 overlapping.
            labels = await page.evaluate(
                """() => {
                    const points = Array.from({ length: 30 }, (_, i) => ({ y: i }));
                    const figure = window.modelgateCharts.lineChart(
                        "t", [{ name: "c", cls: "c", color: "#000", points }],
                        { xLabels: points.map((_, i) => `x${i}`) });
                    return [...figure.querySelectorAll("text.tick")].map((t) => t.textContent)
                        .filter((t) => t.startsWith("x"));
                }"""
            )
        finally:
            await browser.close()
    assert ticks == [
        "0 ms", "0.5 ms", "1 ms", "2.5 ms", "10 ms", "50 ms",
        "100 ms", "120 ms", "200 ms", "1000 ms",
    ]  # fmt: skip
    assert labels == ["x0", "x4", "x8", "x12", "x16", "x20", "x24", "x29"]


async def test_a_read_token_sees_the_fleet_follow_a_rollout_live(
    fleet: Fleet, baseline: httpx.Client, tmp_path: Path
) -> None:
    client = baseline
    read = make_token(client, "read")
    base = fleet.gateway_url
    async with dashboard(base, tmp_path / "profile") as (page, requested):
        assert page.url == f"{base}/ui"
        await sign_in(page, "mg_not-a-real-token")
        await expect(page.get_by_test_id("login-error")).to_contain_text("token was refused")
        await shot(page, "dashboard-login.png")
        await sign_in(page, read)

        model = page.get_by_test_id(f"model-{MODEL}")
        await expect(model).to_be_visible()
        await expect(page.get_by_test_id("model-textcls")).to_be_visible()
        for version in ("1.0.0", "2.0.0"):
            row = page.get_by_test_id(f"version-{MODEL}-{version}")
            await expect(row).to_have_attribute("data-status", "active")
        await expect(page.get_by_test_id(f"version-{MODEL}-1.0.0")).to_contain_text("prod")
        split = page.get_by_test_id(f"split-{MODEL}")
        await expect(split).to_have_attribute("data-configured", '{"1.0.0":100}')
        for worker in ("w1", "w2", "w3"):
            row = page.get_by_test_id(f"worker-{worker}")
            await expect(row).to_have_attribute("data-status", "ready")
        await expect(page.get_by_test_id("worker-w1")).to_contain_text("textcls@1.0.0")
        await expect(page.get_by_test_id("ready-workers")).to_contain_text("3/3")
        await expect(page.get_by_test_id("fleet-status")).to_have_text("Healthy")
        # The header names the replica whose memory the page shows (one gateway here).
        doc = httpx.get(f"{base}{STATE}", headers={"Authorization": f"Bearer {read}"}).json()
        replica = doc["gateway"]["replica"]
        await expect(page.get_by_test_id("replica")).to_have_text(
            f"replica {replica} · this replica's view"
        )
        card = page.get_by_test_id(f"rollout-{MODEL}")
        await expect(card.and_(page.locator(".rollout.active"))).to_have_count(0)

        gates = {"min_requests": 15, "max_error_rate": 0.05, "max_latency_ratio": 50.0}
        async with Loop(base, f"/v2/models/{MODEL}/infer", infer_json, concurrency=3):
            # The observed split follows the traffic: all on 1.0.0 first.
            await expect(split).to_have_attribute(
                "data-observed", '{"1.0.0":100}', timeout=SHOWN_MS
            )
            await assert_redraws_keep_a_selection(page, "w1")
            # w3 fails every answer: it is ejected, and the page says why.
            w3 = page.get_by_test_id("worker-w3")
            await expect(w3).to_have_attribute("data-status", "ejected", timeout=SHOWN_MS)
            await expect(w3.get_by_test_id("ejection")).to_contain_text(
                "5 failed requests in a row; out for"
            )
            await expect(page.get_by_test_id("fleet-status")).to_have_text(
                "Serving, workers ejected"
            )
            out = start_rollout(client, "2.0.0", steps=STEPS, interval_s=INTERVAL_S, gates=gates)
            await expect(card).to_have_attribute("data-state", "running", timeout=SHOWN_MS)
            await expect(card).to_have_attribute("data-id", str(out["id"]))
            assert await page.locator("[data-action]").count() == 0  # read only
            # The candidate's share shows up in the observed split while it runs.
            await page.wait_for_function(
                """() => {
                    const node = document.querySelector('[data-testid=split-resnet]');
                    const seen = JSON.parse(node.dataset.observed || '{}');
                    return (seen['2.0.0'] || 0) > 0;
                }""",
                timeout=SHOWN_MS,
            )
            if SCREENSHOTS:  # mid-rollout: one step passed, the next one running
                await expect(card).to_have_attribute("data-step", "1", timeout=SHOWN_MS)
                await shot(page, "dashboard.png")
            await expect(card).to_have_attribute("data-state", "promoted", timeout=SHOWN_MS)
            await expect(card.get_by_test_id("timeline")).to_contain_text("pass")
            await expect(split).to_have_attribute("data-configured", '{"2.0.0":100}')
            await shot(page, "dashboard-rollout.png", f"[data-testid=rollout-{MODEL}]")

        # The server refuses the read token an action, whatever the page shows.
        refused = httpx.post(
            f"{base}/admin/v1/models/{MODEL}/rollouts/{out['id']}/abort",
            headers={"Authorization": f"Bearer {read}"},
        )
        assert refused.status_code == 403, refused.text

        fleet.publish(MODEL, {"3.0.0": 3.0})
        fresh = page.get_by_test_id(f"version-{MODEL}-3.0.0")
        await expect(fresh).to_have_attribute("data-status", "active", timeout=SHOWN_MS)
        await expect(fresh).to_contain_text("none")  # no worker has it
        assert await shares(page)  # the split is still drawn
    assert_local(requested, base)


async def test_an_admin_aborts_a_rollout_through_the_page(
    fleet: Fleet, baseline: httpx.Client, tmp_path: Path
) -> None:
    client = baseline
    base = fleet.gateway_url
    # Too many requests needed for its first step ever to be judged: it stays running.
    gates = {"min_requests": 1_000_000}
    out = start_rollout(client, "2.0.0", steps=[10, 100], interval_s=1.0, gates=gates)
    async with dashboard(base, tmp_path / "profile") as (page, requested):
        await sign_in(page, fleet.token)
        card = page.get_by_test_id(f"rollout-{MODEL}")
        await expect(card).to_have_attribute("data-state", "running", timeout=SHOWN_MS)
        await expect(card).to_have_attribute("data-id", str(out["id"]))
        # Its step is judged "wait" every second: the timeline says so on one line.
        timeline = card.get_by_test_id("timeline")
        await expect(timeline).to_contain_text("at step 1 (10%):", timeout=SHOWN_MS)
        await expect(timeline.locator("li")).to_have_count(1)
        await expect(timeline).to_contain_text(re.compile(r"waited \d+\u00d7 at step 1"))
        abort = card.locator("[data-action=abort]")

        await abort.click()
        await expect(page.get_by_test_id("confirm")).to_be_visible()
        await expect(page.get_by_test_id("confirm")).to_contain_text(f"rollout #{out['id']}")
        await page.get_by_test_id("confirm-cancel").click()
        await expect(page.get_by_test_id("confirm")).to_be_hidden()
        state = client.get(f"/admin/v1/models/{MODEL}/rollouts/{out['id']}").json()["state"]
        assert state == "running"

        await abort.click()
        await shot(page, "dashboard-confirm.png", full=False)  # the dialog's backdrop: one screen
        await page.get_by_test_id("confirm-ok").click()
        await expect(card).to_have_attribute("data-state", "aborted", timeout=SHOWN_MS)
        await expect(page.get_by_test_id("toast")).to_contain_text("aborted")
        after = client.get(f"/admin/v1/models/{MODEL}/rollouts/{out['id']}").json()
        assert after["state"] == "aborted", after
        assert after["reason"], after
        await expect(card.locator("[data-action]")).to_have_count(0)

        # Move the alias prod from 1.0.0 to 2.0.0, through its dialog.
        model = page.get_by_test_id(f"model-{MODEL}")
        await model.locator("[data-action=move-alias][data-alias=prod]").click()
        await page.get_by_test_id("alias-target").select_option("2.0.0")
        await page.get_by_test_id("confirm-ok").click()
        moved = page.get_by_test_id(f"version-{MODEL}-2.0.0")
        await expect(moved).to_contain_text("prod", timeout=SHOWN_MS)
        await expect(page.get_by_test_id(f"aliases-{MODEL}")).to_contain_text("1.0.0 → 2.0.0")
        alias = client.get(f"/admin/v1/models/{MODEL}/aliases/prod").json()
        assert alias["version"] == "2.0.0", alias
    assert_local(requested, base)
