"""Optimistic concurrency: every change moves an object's ETag, and an ``If-Match`` that
names an earlier state of the same object answers 412 and changes nothing."""

from __future__ import annotations

from tests.support.admin import Client, create_model, publish


async def _two_versions(client: Client, model: str) -> None:
    await create_model(client, model)
    for version in ("1.0.0", "1.1.0"):
        assert (await publish(client, model, version)).status_code == 201


async def test_a_version_patch_with_the_previous_etag_of_the_same_row_is_412(
    client: Client, model_name: str
) -> None:
    await _two_versions(client, model_name)
    path = f"/admin/v1/models/{model_name}/versions/1.0.0"
    first = (await client.get(path)).headers["etag"]
    changed = await client.patch(path, json={"priority": 5}, headers={"If-Match": first})
    assert changed.status_code == 200, changed.text
    second = changed.headers["etag"]
    assert second != first
    stale = await client.patch(path, json={"priority": 9}, headers={"If-Match": first})
    assert stale.status_code == 412, stale.text
    assert first in stale.json()["error"]
    assert (await client.get(path)).json()["priority"] == 5  # the stale write changed nothing
    fresh = await client.patch(path, json={"priority": 9}, headers={"If-Match": second})
    assert fresh.status_code == 200, fresh.text


async def test_an_alias_etag_goes_stale_when_the_alias_moves(
    client: Client, model_name: str
) -> None:
    await _two_versions(client, model_name)
    path = f"/admin/v1/models/{model_name}/aliases/prod"
    created = await client.put(path, json={"version": "1.0.0"})
    assert created.status_code in (200, 201), created.text
    first = created.headers["etag"]
    assert (await client.get(path)).headers["etag"] == first
    moved = await client.put(path, json={"version": "1.1.0"}, headers={"If-Match": first})
    assert moved.status_code == 200, moved.text
    second = moved.headers["etag"]
    assert second != first
    assert (await client.get(path)).headers["etag"] == second
    stale_move = await client.put(path, json={"version": "1.0.0"}, headers={"If-Match": first})
    assert stale_move.status_code == 412, stale_move.text
    stale_delete = await client.delete(path, headers={"If-Match": first})
    assert stale_delete.status_code == 412, stale_delete.text
    assert (await client.get(path)).json()["version"] == "1.1.0"
    dropped = await client.delete(path, headers={"If-Match": second})
    assert dropped.status_code == 204, dropped.text


async def test_a_traffic_etag_goes_stale_when_the_policy_is_replaced(
    client: Client, model_name: str
) -> None:
    await _two_versions(client, model_name)
    path = f"/admin/v1/models/{model_name}/traffic"
    arms = [{"version": "1.0.0", "weight": 90}, {"version": "1.1.0", "weight": 10}]
    first = (await client.put(path, json={"arms": arms})).headers["etag"]
    swapped = [{"version": "1.0.0", "weight": 50}, {"version": "1.1.0", "weight": 50}]
    replaced = await client.put(path, json={"arms": swapped}, headers={"If-Match": first})
    assert replaced.status_code == 200, replaced.text
    assert replaced.headers["etag"] != first
    stale = await client.put(path, json={"arms": arms}, headers={"If-Match": first})
    assert stale.status_code == 412, stale.text
    assert [a["weight"] for a in (await client.get(path)).json()["arms"]] == [50, 50]
