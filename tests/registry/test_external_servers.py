"""External OIP servers in the admin API, on SQLite and PostgreSQL: versions published with
runtime external, registration and removal (audited, revision bumped), the listing beside
announced workers, and every refusal naming what was wrong."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from registry.db import make_sessionmaker
from registry.models import Worker
from tests.support.admin import Client, create_model, publish


def server(server_id: str, model: str, **changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": server_id,
        "url": "http://127.0.0.1:9/base/",
        "serves": [{"model": model, "version": "2.0.0", "remote_model": "iris"}],
    }
    return doc | changes


async def published(client: Client, model: str) -> None:
    """``model`` with 1.0.0 (an ONNX file) and 2.0.0 (runtime external, no file)."""
    await create_model(client, model)
    assert (await publish(client, model, "1.0.0")).status_code == 201
    external = await client.post(
        f"/admin/v1/models/{model}/versions", json={"version": "2.0.0", "runtime": "external"}
    )
    assert external.status_code == 201, external.text


def new_id() -> str:
    return f"ext-{uuid.uuid4().hex[:8]}"


async def test_a_runtime_external_version_needs_no_artifact(
    client: Client, model_name: str
) -> None:
    await create_model(client, model_name)
    base = f"/admin/v1/models/{model_name}/versions"
    response = await client.post(base, json={"version": "3.1.0", "runtime": "external"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["runtime"], body["sha256"], body["artifact_uri"], body["size_bytes"]) == (
        "external",
        "",
        "",
        0,
    )
    assert (await client.get(f"{base}/3.1.0")).json()["runtime"] == "external"
    audit = (await client.get("/admin/v1/audit", params={"model": model_name})).json()
    assert audit["items"][0]["after"]["runtime"] == "external"
    again = await client.post(base, json={"version": "3.1.0", "runtime": "external"})
    assert again.status_code == 409
    unknown = await client.post(base, json={"version": "3.2.0", "runtime": "tensorrt"})
    assert unknown.status_code == 400
    assert '"tensorrt"' in unknown.json()["error"]
    with_file = await publish(client, model_name, "3.3.0")
    assert with_file.json()["runtime"] == "onnxruntime"


async def test_register_list_and_remove(client: Client, model_name: str) -> None:
    await published(client, model_name)
    server_id = new_id()
    revision = await _revision(client)
    doc = server(server_id, model_name)
    doc["serves"].append({"model": model_name, "version": "1.0.0+b", "remote_version": ""})
    created = await client.post("/admin/v1/workers", json=doc)
    assert created.status_code == 201, created.text
    out = created.json()
    assert (out["id"], out["url"], out["protocol"], out["kind"]) == (
        server_id,
        "http://127.0.0.1:9/base",
        "http",
        "external",
    )
    assert out["serves"] == [
        {
            "model": model_name,
            "version": "2.0.0",
            "remote_model": "iris",
            "remote_version": "2.0.0",
        },
        {"model": model_name, "version": "1.0.0", "remote_model": model_name, "remote_version": ""},
    ]
    assert await _revision(client) == revision + 1
    event = (await client.get("/admin/v1/audit", params={"limit": 1})).json()["items"][0]
    assert (event["action"], event["target"], event["before"]) == (
        "worker.register",
        server_id,
        None,
    )

    rows = {r["id"]: r for r in (await client.get("/admin/v1/workers")).json()}
    row = rows[server_id]
    assert (row["kind"], row["protocol"], row["state"], row["stale"]) == (
        "external",
        "http",
        "registered",
        False,
    )
    assert row["serves"] == out["serves"]
    assert {(i["model"], i["version"], i["ready"]) for i in row["loaded"]} == {
        (model_name, "2.0.0", False),
        (model_name, "1.0.0", False),
    }

    removed = await client.delete(f"/admin/v1/workers/{server_id}")
    assert removed.status_code == 204, removed.text
    assert server_id not in {r["id"] for r in (await client.get("/admin/v1/workers")).json()}
    event = (await client.get("/admin/v1/audit", params={"limit": 1})).json()["items"][0]
    assert (event["action"], event["after"]) == ("worker.remove", None)
    assert event["before"]["serves"] == out["serves"]
    gone = await client.delete(f"/admin/v1/workers/{server_id}")
    assert gone.status_code == 404
    assert f'no external server "{server_id}"' in gone.json()["error"]


async def test_a_grpc_server_is_registered_by_host_and_port(
    client: Client, model_name: str
) -> None:
    await published(client, model_name)
    doc = server(new_id(), model_name, url="grpc://127.0.0.1:8001", protocol="grpc")
    created = await client.post("/admin/v1/workers", json=doc)
    assert created.status_code == 201, created.text
    assert created.json()["protocol"] == "grpc"
    assert (await client.delete(f"/admin/v1/workers/{doc['id']}")).status_code == 204


async def test_refusals_name_the_value(
    client: Client, model_name: str, engine: AsyncEngine, tokens: dict[str, str]
) -> None:
    await published(client, model_name)
    taken = new_id()
    assert (
        await client.post("/admin/v1/workers", json=server(taken, model_name))
    ).status_code == 201
    announced = new_id()
    now = datetime.now(UTC)
    async with make_sessionmaker(engine)() as session, session.begin():
        session.add(
            Worker(id=announced, url="http://127.0.0.1:1", loaded=[], state="serving",
                   started_at=now, last_seen=now)
        )  # fmt: skip
    revision = await _revision(client)

    fresh = new_id()
    cases: list[tuple[dict[str, Any], int, str]] = [
        (server(fresh, model_name, url="https://x:1"), 400, '"https://x:1": the gateway'),
        (server(fresh, model_name, url="ftp://x:1"), 400, 'scheme "ftp"'),
        (server(fresh, model_name, url="http://:80"), 400, "names no host"),
        (server(fresh, model_name, url="http://x:99999"), 400, '"http://x:99999"'),
        (server(fresh, model_name, url="http://x:1", protocol="grpc"), 400, "grpc://host:port"),
        (server(fresh, model_name, url="grpc://x", protocol="grpc"), 400, "needs a port"),
        (server(fresh, model_name, protocol="tcp"), 400, "'tcp'"),
        (server("bad/id", model_name), 400, "id: Expected `str` matching"),
        (server(fresh, model_name, serves=[]), 400, "serves"),
        (server(fresh, model_name, serves=[{"model": model_name, "version": "2.0.0",
                                            "remote_model": "a/b"}]), 400, "remote_model"),
        (server(fresh, model_name, serves=[{"model": model_name, "version": "9.9.9"}]), 404,
         f'version "9.9.9" of "{model_name}" is not published'),
        (server(fresh, model_name, serves=[{"model": model_name + "x", "version": "1.0.0"}]),
         404, f'model "{model_name}x" not found'),
        (server(fresh, model_name, serves=[{"model": model_name, "version": "2.0.0"}] * 2), 400,
         f"{model_name}@2.0.0 more than once"),
        (server(taken, model_name), 409, f'"{taken}" is already registered'),
        (server(announced, model_name), 409, f'"{announced}" is the id of a modelgate worker'),
    ]  # fmt: skip
    for doc, status, needle in cases:
        response = await client.post("/admin/v1/workers", json=doc)
        assert response.status_code == status, (doc, response.text)
        assert needle in response.json()["error"], (doc, response.text)
    assert await _revision(client) == revision

    yanked = await client.patch(
        f"/admin/v1/models/{model_name}/versions/1.0.0", json={"status": "yanked"}
    )
    assert yanked.status_code == 200
    doc = server(fresh, model_name, serves=[{"model": model_name, "version": "1.0.0"}])
    response = await client.post("/admin/v1/workers", json=doc)
    assert response.status_code == 404
    assert "is yanked" in response.json()["error"]
    not_registered = await client.delete(f"/admin/v1/workers/{announced}")
    assert not_registered.status_code == 404
    assert "announced modelgate worker" in not_registered.json()["error"]

    client.headers["Authorization"] = f"Bearer {tokens['publish']}"
    forbidden = await client.post("/admin/v1/workers", json=server(fresh, model_name))
    assert forbidden.status_code == 403
    assert (await client.delete(f"/admin/v1/workers/{taken}")).status_code == 403


async def _revision(client: Client) -> int:
    items = (await client.get("/admin/v1/audit", params={"limit": 1})).json()["items"]
    return int(items[0]["revision"]) if items else 0
