"""The admin API's listings the CLI reads, on SQLite and PostgreSQL: a model's aliases,
the audit log's filters, and tokens (admin only, never a secret)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.support.admin import Client, create_model, publish


async def test_a_models_aliases_are_listed_by_name(client: Client, model_name: str) -> None:
    await create_model(client, model_name)
    for version in ("1.0.0", "2.0.0"):
        assert (await publish(client, model_name, version)).status_code == 201
    base = f"/admin/v1/models/{model_name}/aliases"
    assert (await client.get(base)).json() == []
    for name, version in (("prod", "1.0.0"), ("canary", "2.0.0"), ("prod", "2.0.0")):
        assert (await client.put(f"{base}/{name}", json={"version": version})).is_success
    listed = (await client.get(base)).json()
    assert [(a["alias"], a["version"]) for a in listed] == [("canary", "2.0.0"), ("prod", "2.0.0")]
    assert listed[1] == (await client.get(f"{base}/prod")).json()
    assert [h["to"] for h in listed[1]["history"]] == ["2.0.0", "1.0.0"]
    missing = await client.get("/admin/v1/models/no-such-model/aliases")
    assert missing.status_code == 404
    assert '"no-such-model"' in missing.json()["error"]


async def test_the_audit_log_filters_by_action_family_actor_and_time(
    client: Client, model_name: str
) -> None:
    await create_model(client, model_name)
    assert (await publish(client, model_name, "1.0.0")).status_code == 201
    base = f"/admin/v1/models/{model_name}"
    await client.put(f"{base}/aliases/prod", json={"version": "1.0.0"})
    await client.delete(f"{base}/aliases/prod")

    async def actions(**params: str) -> list[str]:
        page = (await client.get("/admin/v1/audit", params={"model": model_name, **params})).json()
        assert page["total"] == len(page["items"])
        return [e["action"] for e in page["items"]]

    assert await actions() == ["alias.delete", "alias.set", "version.publish", "model.create"]
    assert await actions(action="alias") == ["alias.delete", "alias.set"]
    assert await actions(action="alias.set") == ["alias.set"]
    assert await actions(action="alia") == []  # a family is a whole word before the dot
    assert len(await actions(actor="token:t-admin")) == 4
    assert await actions(actor="token:someone-else") == []
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    assert len(await actions(since=past)) == 4
    future = (datetime.now(UTC) + timedelta(hours=1)).replace(tzinfo=None).isoformat()
    assert await actions(since=future) == []
    today = datetime.now(UTC).date()
    assert len(await actions(since=today.isoformat())) == 4  # a date: its midnight UTC
    assert await actions(since=(today + timedelta(days=2)).isoformat()) == []
    assert len(await actions(since=past.replace("+00:00", "Z"))) == 4
    bad = await client.get("/admin/v1/audit", params={"since": "yesterday"})
    assert bad.status_code == 400
    assert bad.json()["error"].startswith('since "yesterday" is not a time'), bad.text


async def test_listing_and_revoking_tokens_needs_admin_and_shows_no_secret(
    client: Client, tokens: dict[str, str]
) -> None:
    made = (await client.post("/admin/v1/tokens", json={"name": "l-ro", "scopes": ["read"]})).json()
    secret = made["token"]
    for scope in ("read", "publish"):
        headers = {"Authorization": f"Bearer {tokens[scope]}"}
        listing = await client.get("/admin/v1/tokens", headers=headers)
        assert listing.status_code == 403, scope
        assert 'lacks the "admin" scope' in listing.json()["error"]
        revoking = await client.delete(f"/admin/v1/tokens/{made['id']}", headers=headers)
        assert revoking.status_code == 403, scope
    listing = await client.get("/admin/v1/tokens")
    assert listing.status_code == 200
    assert secret not in listing.text
    mine = next(t for t in listing.json() if t["id"] == made["id"])
    assert (mine["token"], mine["prefix"], mine["revoked"]) == (None, secret[:10], False)
    assert (await client.delete(f"/admin/v1/tokens/{made['id']}")).status_code == 204
    again = await client.delete(f"/admin/v1/tokens/{made['id']}")
    assert again.status_code == 404
    assert f"token {made['id']} not found or already revoked" in again.json()["error"]
    revoked = next(
        t for t in (await client.get("/admin/v1/tokens")).json() if t["id"] == made["id"]
    )
    assert revoked["revoked"] is True
