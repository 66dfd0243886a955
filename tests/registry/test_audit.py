"""Acceptance 5: every mutation leaves an audit event (who, what, before, after, revision)."""

from __future__ import annotations

from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.support.admin import create_model, publish


async def test_every_mutation_is_audited(
    client: AsyncTestClient[Litestar], model_name: str
) -> None:
    base = f"/admin/v1/models/{model_name}"
    revision_before = (await client.get("/admin/v1/audit", params={"limit": 1})).json()["items"][0][
        "revision"
    ]
    await create_model(client, model_name)
    await publish(client, model_name, "1.0.0")
    await publish(client, model_name, "1.1.0")
    await client.patch(f"{base}/versions/1.0.0", json={"status": "deprecated"})
    await client.patch(f"{base}/versions/1.1.0", json={"priority": 7})
    await client.put(f"{base}/aliases/prod", json={"version": "1.1.0"})
    await client.delete(f"{base}/aliases/prod")
    await client.put(f"{base}/traffic", json={"arms": [{"version": "1.1.0", "weight": 1}]})
    await client.delete(f"{base}/traffic")
    token = (
        await client.post("/admin/v1/tokens", json={"name": f"{model_name}-ro", "scopes": ["read"]})
    ).json()
    assert (await client.delete(f"/admin/v1/tokens/{token['id']}")).status_code == 204

    events = (await client.get("/admin/v1/audit", params={"limit": 200})).json()["items"]
    mine = [e for e in events if e["model"] == model_name or e["target"] == f"token:{token['id']}"]
    assert [e["action"] for e in reversed(mine)] == [
        "model.create",
        "version.publish",
        "version.publish",
        "version.status",
        "version.update",
        "alias.set",
        "alias.delete",
        "traffic.set",
        "traffic.delete",
        "token.create",
        "token.revoke",
    ]
    assert all(e["actor"] == "token:t-admin" for e in mine)
    by_action = {e["action"]: e for e in mine}
    assert by_action["version.status"]["before"]["status"] == "active"
    assert by_action["version.status"]["after"]["status"] == "deprecated"
    assert by_action["version.update"]["after"]["priority"] == 7
    assert by_action["alias.delete"]["before"] == {"version": "1.1.0"}
    assert by_action["alias.delete"]["after"] is None
    assert by_action["traffic.delete"]["before"]["arms"] == [{"version": "1.1.0", "weight": 1}]
    assert "token" not in by_action["token.create"]["after"]  # the secret is never audited
    revisions = [e["revision"] for e in reversed(mine)]
    assert revisions == sorted(revisions)
    assert revisions[0] > revision_before
