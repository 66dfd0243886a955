"""The dashboard's routes on the real app (SQLite and PostgreSQL): ``/`` redirects to the
page; the page and its assets are the gateway's own, with a policy that lets them load
nothing from elsewhere; the state needs a read token (the admin API's guard, its messages)
and shows what the registry holds, with what the token may do."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.models import onnx_bytes
from tests.support.net import poll_until_async
from tests.support.registry import make_token

STATE = "/ui/api/state"


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.links.append(value)


@pytest.fixture
async def anonymous(app: Litestar) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=app) as test_client:
        yield test_client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_the_page_and_its_assets_come_from_the_gateway_alone(
    anonymous: AsyncTestClient[Litestar],
) -> None:
    root = await anonymous.get("/", follow_redirects=False)
    assert (root.status_code, root.headers["location"]) == (302, "/ui")
    page = await anonymous.get("/ui")
    assert page.status_code == 200
    head = await anonymous.head("/ui")  # a monitor's or a proxy's check: as GET, no body
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["content-type"] == page.headers["content-type"]
    assert head.headers["content-length"] == str(len(page.content))
    assert head.headers["content-security-policy"] == page.headers["content-security-policy"]
    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "connect-src 'self'" in policy
    assert "script-src 'self'" in policy
    parser = _Links()
    parser.feed(page.text)
    assert {"/ui/assets/dashboard.js", "/ui/assets/dashboard.css"} <= set(parser.links)
    for link in parser.links:
        assert link.startswith("/ui/assets/"), link
        asset = await anonymous.get(link)
        assert asset.status_code == 200, link
        # NOTE: the one absolute URL allowed is SVG's XML namespace, which is never fetched.
        text = asset.text.replace("http://www.w3.org/2000/svg", "")
        assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", text), link


async def test_the_state_needs_a_token_that_may_read(
    anonymous: AsyncTestClient[Litestar], engine: AsyncEngine
) -> None:
    missing = await anonymous.get(STATE)
    assert missing.status_code == 401
    assert missing.json() == {"error": "missing bearer token: send 'Authorization: Bearer <token>'"}
    wrong = await anonymous.get(STATE, headers=bearer("mg_not-a-token"))
    assert wrong.status_code == 401
    infer_only = await anonymous.get(STATE, headers=bearer(await make_token(engine, "infer")))
    assert infer_only.status_code == 403
    assert 'lacks the "read" scope' in infer_only.json()["error"]


async def test_the_state_says_what_the_token_may_do(
    anonymous: AsyncTestClient[Litestar], tokens: dict[str, str]
) -> None:
    for scope, can_act in (("read", False), ("publish", True), ("admin", True)):
        answer = await anonymous.get(STATE, headers=bearer(tokens[scope]))
        assert answer.status_code == 200, answer.text
        assert answer.headers["cache-control"] == "no-store"
        principal = answer.json()["principal"]
        assert (principal["scopes"], principal["can_act"]) == ([scope], can_act), scope
        # The replica that answered, as its rollout leases name it (behind a balancer,
        # each poll may come from another one).
        assert answer.json()["gateway"]["replica"] == anonymous.app.state.rollouts.holder


async def test_the_state_shows_a_models_versions_aliases_split_and_rollout(
    client: AsyncTestClient[Litestar], model_name: str
) -> None:
    assert (await client.post("/admin/v1/models", json={"name": model_name})).status_code == 201
    for version in ("1.0.0", "2.0.0"):
        files = {"file": ("m.onnx", onnx_bytes(), "application/octet-stream")}
        made = await client.post(
            f"/admin/v1/models/{model_name}/versions", data={"version": version}, files=files
        )
        assert made.status_code == 201, made.text
    arms = {"arms": [{"version": "1.0.0", "weight": 80}, {"version": "2.0.0", "weight": 20}]}
    assert (await client.put(f"/admin/v1/models/{model_name}/traffic", json=arms)).is_success
    alias = await client.put(
        f"/admin/v1/models/{model_name}/aliases/prod", json={"version": "1.0.0"}
    )
    assert alias.status_code == 201, alias.text
    started = await client.post(
        f"/admin/v1/models/{model_name}/rollouts", json={"version": "2.0.0"}
    )
    assert started.status_code == 201, started.text

    found: dict[str, Any] = {}

    async def shown() -> bool:
        # NOTE: rollouts are read from the database, the rest from the gateway's snapshot,
        # which follows the registry's revision within moments.
        doc = (await client.get(STATE)).json()
        found.update(doc)
        models = {m["name"]: m for m in doc["models"]}
        return (
            model_name in models
            and bool(models[model_name]["aliases"])
            and any(r["model"] == model_name for r in doc["rollouts"])
        )

    await poll_until_async(shown, "the state to show the new model's alias and rollout", 10)
    (model,) = [m for m in found["models"] if m["name"] == model_name]
    assert [(v["version"], v["status"], v["aliases"]) for v in model["versions"]] == [
        ("2.0.0", "active", []),
        ("1.0.0", "active", ["prod"]),
    ]
    assert all(v["published_by"] == "token:t-admin" for v in model["versions"])
    assert [(a["version"], a["share"]) for a in model["configured"]["arms"]] == [
        ("1.0.0", 80.0),
        ("2.0.0", 20.0),
    ]
    ((prod),) = model["aliases"]
    assert (prod["alias"], prod["version"], prod["etag"]) == ("prod", "1.0.0", alias.json()["etag"])
    (rollout,) = [r for r in found["rollouts"] if r["model"] == model_name]
    assert (rollout["state"], rollout["active"], rollout["baseline"]) == ("waiting", True, "1.0.0")
    assert rollout["id"] == started.json()["id"]
    assert found["summary"]["active_rollouts"] >= 1
