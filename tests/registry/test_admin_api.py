"""The admin API end to end in-process, on SQLite and PostgreSQL (acceptance 3, 4, 5)."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import pytest

from tests.support.admin import Client, create_model, publish, resolve
from tests.support.models import onnx_bytes


async def test_publish_resolve_deprecate_yank(client: Client, model_name: str) -> None:
    await create_model(client, model_name)
    for i, version in enumerate(["1.0.0", "1.1.0", "1.2.0-rc.1", "2.0.0"]):
        response = await publish(client, model_name, version, scale=float(i + 1))
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["sha256"] == hashlib.sha256(onnx_bytes(float(i + 1))).hexdigest()
        assert body["signature"]["inputs"] == [
            {"name": "input", "datatype": "FP32", "shape": [-1, 4]}
        ]

    expected = {"^1.0": "1.1.0", "stable": "2.0.0", "latest": "2.0.0", "^1.2.0-rc.1": "1.2.0-rc.1"}
    for ref, version in expected.items():
        response = await resolve(client, model_name, ref)
        assert response.status_code == 200, response.text
        assert response.json()["version"] == version, ref

    patched = await client.patch(
        f"/admin/v1/models/{model_name}/versions/2.0.0", json={"status": "deprecated"}
    )
    assert patched.status_code == 200, patched.text
    assert (await resolve(client, model_name, "stable")).json()["version"] == "1.1.0"
    assert (await resolve(client, model_name, "2.0.0")).json()["version"] == "2.0.0"

    yanked = await client.patch(
        f"/admin/v1/models/{model_name}/versions/1.1.0", json={"status": "yanked"}
    )
    assert yanked.status_code == 200
    assert (await resolve(client, model_name, "^1.0")).json()["version"] == "1.0.0"
    gone = await resolve(client, model_name, "1.1.0")
    assert gone.status_code == 404
    assert "yanked" in gone.json()["error"]


async def test_bad_input_is_a_precise_4xx_and_changes_nothing(
    client: Client, model_name: str, tokens: dict[str, str]
) -> None:
    await create_model(client, model_name)
    assert (await publish(client, model_name, "1.0.0")).status_code == 201
    before = (await client.get("/admin/v1/audit", params={"model": model_name})).json()["total"]

    bad_version = await publish(client, model_name, "v1.2")
    assert bad_version.status_code == 400
    assert '"v1.2"' in bad_version.json()["error"]

    bad_constraint = await resolve(client, model_name, ">=abc")
    assert bad_constraint.status_code == 400
    assert ">=abc" in bad_constraint.json()["error"]

    unknown = await resolve(client, model_name + "x", "^1")
    assert unknown.status_code == 404
    assert model_name in unknown.json()["error"]  # the close match is named

    nothing = await resolve(client, model_name, "^3.0")
    assert nothing.status_code == 404
    assert nothing.json()["error"] == f'no version of "{model_name}" satisfies "^3.0" (have 1.0.0)'

    duplicate = await publish(client, model_name, "1.0.0+build.7")
    assert duplicate.status_code == 409
    assert "1.0.0" in duplicate.json()["error"]

    too_big = await client.post(
        f"/admin/v1/models/{model_name}/versions",
        data={"version": "1.5.0"},
        files={"file": ("big.onnx", b"\0" * (512 * 1024), "application/octet-stream")},
    )
    assert too_big.status_code == 413
    assert "limit" in too_big.json()["error"]

    not_onnx = await client.post(
        f"/admin/v1/models/{model_name}/versions",
        data={"version": "1.6.0"},
        files={"file": ("x.onnx", b"not a model", "application/octet-stream")},
    )
    assert not_onnx.status_code == 400
    assert "not a valid ONNX model" in not_onnx.json()["error"]

    del client.headers["Authorization"]
    missing = await client.post("/admin/v1/models", json={"name": "nope"})
    assert missing.status_code == 401
    client.headers["Authorization"] = f"Bearer {tokens['read']}"
    weak = await client.post("/admin/v1/models", json={"name": "nope"})
    assert weak.status_code == 403
    assert '"publish"' in weak.json()["error"]
    client.headers["Authorization"] = f"Bearer {tokens['admin']}"

    current = await client.get(f"/admin/v1/models/{model_name}/versions/1.0.0")
    stale = await client.patch(
        f"/admin/v1/models/{model_name}/versions/1.0.0",
        json={"priority": 5},
        headers={"If-Match": '"v999.1"'},
    )
    assert stale.status_code == 412
    fresh = await client.patch(
        f"/admin/v1/models/{model_name}/versions/1.0.0",
        json={"priority": 5},
        headers={"If-Match": current.headers["etag"]},
    )
    assert fresh.status_code == 200
    assert fresh.headers["etag"] != current.headers["etag"]

    listed = (await client.get(f"/admin/v1/models/{model_name}/versions")).json()
    assert [v["version"] for v in listed["items"]] == ["1.0.0"]
    after = (await client.get("/admin/v1/audit", params={"model": model_name})).json()["total"]
    assert after == before + 1  # only the accepted priority change


async def test_publish_by_uri_verifies_sha256(
    client: Client, model_name: str, import_root: Path
) -> None:
    await create_model(client, model_name)
    path = import_root / f"{model_name}.onnx"
    path.write_bytes(onnx_bytes(3.0))
    good = hashlib.sha256(path.read_bytes()).hexdigest()
    url = f"/admin/v1/models/{model_name}/versions"
    mismatch = await client.post(
        url, json={"version": "1.0.0", "artifact_uri": path.as_uri(), "sha256": "0" * 64}
    )
    assert mismatch.status_code == 400
    assert "sha256 mismatch" in mismatch.json()["error"]
    outside = await client.post(
        url, json={"version": "1.0.0", "artifact_uri": "file:///etc/hostname", "sha256": good}
    )
    assert outside.status_code == 400
    assert "import roots" in outside.json()["error"]
    ok = await client.post(
        url, json={"version": "1.0.0", "artifact_uri": path.as_uri(), "sha256": good}
    )
    assert ok.status_code == 201, ok.text
    assert ok.json()["artifact_uri"] == path.as_uri()


async def test_concurrent_publish_of_one_version_has_one_winner(
    client: Client, model_name: str
) -> None:
    await create_model(client, model_name)
    results = await asyncio.gather(
        *(publish(client, model_name, "1.0.0", scale=float(i)) for i in range(4))
    )
    statuses = sorted(r.status_code for r in results)
    assert statuses == [201, 409, 409, 409]
    listed = (await client.get(f"/admin/v1/models/{model_name}/versions")).json()
    assert listed["total"] == 1


async def test_aliases_traffic_and_audit(client: Client, model_name: str) -> None:
    await create_model(client, model_name)
    for v in ("1.0.0", "1.1.0", "2.0.0-beta.1"):
        assert (await publish(client, model_name, v)).status_code == 201
    base = f"/admin/v1/models/{model_name}"
    created = await client.put(f"{base}/aliases/canary", json={"version": "2.0.0-beta.1"})
    assert created.status_code == 201
    moved = await client.put(
        f"{base}/aliases/canary",
        json={"version": "1.1.0"},
        headers={"If-Match": created.headers["etag"]},
    )
    assert moved.status_code == 200
    assert [h["to"] for h in moved.json()["history"]] == ["1.1.0", "2.0.0-beta.1"]
    assert (await resolve(client, model_name, "canary")).json()["version"] == "1.1.0"
    assert (
        await client.put(f"{base}/aliases/stable", json={"version": "1.0.0"})
    ).status_code == 400
    assert (await client.put(f"{base}/aliases/1.x", json={"version": "1.0.0"})).status_code == 400

    policy = {"arms": [{"version": "1.0.0", "weight": 90}, {"version": "1.1.0", "weight": 10}]}
    put = await client.put(f"{base}/traffic", json=policy)
    assert put.status_code == 200, put.text
    counts: dict[str, int] = {}
    for key in range(400):
        body = (await client.get(f"{base}/resolve", params={"key": str(key)})).json()
        counts[body["version"]] = counts.get(body["version"], 0) + 1
    assert 300 < counts["1.0.0"] < 390, counts
    bad = await client.put(f"{base}/traffic", json={"arms": [{"version": "9.9.9", "weight": 1}]})
    assert bad.status_code == 404
    shown = (await client.get(f"{base}/traffic")).json()["arms"]
    assert [{"version": a["version"], "weight": a["weight"]} for a in shown] == policy["arms"]

    events = (await client.get("/admin/v1/audit", params={"model": model_name})).json()["items"]
    actions = [e["action"] for e in events]
    assert actions[:3] == ["traffic.set", "alias.set", "alias.set"]
    alias_move = events[1]
    assert alias_move["before"] == {"version": "2.0.0-beta.1"}
    assert alias_move["after"] == {"version": "1.1.0"}
    assert alias_move["actor"] == "token:t-admin"
    revisions = [e["revision"] for e in events]
    assert revisions == sorted(revisions, reverse=True)
    assert len(set(revisions)) == len(revisions)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/admin/v1/models", {"name": "has/slash"}),
        ("post", "/admin/v1/models", {"name": ""}),
        ("post", "/admin/v1/models", {"nam": "x"}),
        ("post", "/admin/v1/tokens", {"name": "x", "scopes": ["root"]}),
    ],
)
async def test_invalid_bodies_are_400(
    client: Client, method: str, path: str, body: dict[str, Any]
) -> None:
    response = await getattr(client, method)(path, json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith("invalid request")


async def test_unknown_route_and_method_render_errors(client: Client) -> None:
    missing = await client.get("/admin/v1/nothing-here")
    assert missing.status_code == 404
    assert "error" in missing.json()
    wrong = await client.delete("/admin/v1/models")
    assert wrong.status_code == 405
    assert "error" in wrong.json()
