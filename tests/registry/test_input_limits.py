"""Inputs PostgreSQL would refuse are a 400 naming the field and value, on both databases
(issue 8, finding 4): NUL anywhere, numbers beyond int64, strings beyond their columns, and
token names whose audit actor would not fit."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import String

from registry import limits
from registry.models import AuditEvent, Model, ModelVersion
from tests.support.admin import Client, create_model, publish
from tests.support.models import onnx_bytes

BIG = "99999999999999999999"


async def _bad(response: Any, *needles: str) -> None:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    for needle in needles:
        assert needle in error, error


async def test_nul_is_refused_everywhere(client: Client, model_name: str) -> None:
    await create_model(client, model_name)
    base = f"/admin/v1/models/{model_name}"
    await _bad(await client.get("/admin/v1/models/a%00b"), "path parameter 'model'", "\\u0000")
    await _bad(await client.get(f"{base}/versions/1.0.0%00"), "\\u0000")
    await _bad(await client.get("/admin/v1/audit", params={"model": "a\x00"}), "query", "'model'")
    await _bad(
        await client.post("/admin/v1/models", json={"name": "ok", "description": "a\x00b"}),
        "description",
        "NUL",
    )
    await _bad(
        await client.post("/admin/v1/tokens", json={"name": "t\x00", "scopes": ["read"]}), "name"
    )
    await _bad(await publish(client, model_name, "1.0.0", description="x\x00"), "description")
    labelled = await client.patch(f"{base}/versions/1.0.0", json={"labels": {"k\x00": "v"}})
    await _bad(labelled, "labels key")
    uri = {"version": "1.0.0", "artifact_uri": "file:///tmp/a%00b", "sha256": "0" * 64}
    await _bad(await client.post(f"{base}/versions", json=uri), "artifact_uri")
    await _bad(await _raw_upload(client, model_name, b"a\x00b.onnx"), "filename")


async def _raw_upload(client: Client, model: str, filename: bytes) -> Any:
    """A multipart publish written by hand: clients percent-encode what this sends raw."""
    body = (
        b'--B\r\nContent-Disposition: form-data; name="version"\r\n\r\n1.0.0\r\n'
        b'--B\r\nContent-Disposition: form-data; name="file"; filename="' + filename + b'"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n" + onnx_bytes(1.0) + b"\r\n--B--\r\n"
    )
    headers = {"content-type": "multipart/form-data; boundary=B"}
    return await client.post(f"/admin/v1/models/{model}/versions", content=body, headers=headers)


async def test_numbers_beyond_int64_are_refused(client: Client, model_name: str) -> None:
    await create_model(client, model_name)
    base = f"/admin/v1/models/{model_name}"
    await _bad(await publish(client, model_name, f"{BIG}.0.0"), BIG, str(limits.INT64_MAX))
    await _bad(await client.get(f"{base}/versions/1.{BIG}.0"), str(limits.INT64_MAX))
    listing = await client.get(f"{base}/versions", params={"constraint": f">={BIG}"})
    await _bad(listing, str(limits.INT64_MAX))
    await _bad(await client.put(f"{base}/aliases/prod", json={"version": f"0.0.{BIG}"}), BIG)
    top = f"{limits.INT64_MAX}.0.0"
    assert (await publish(client, model_name, top)).status_code == 201
    assert (await client.get(f"{base}/versions/{top}")).status_code == 200


async def test_parts_longer_than_their_columns_are_refused(client: Client, model_name: str) -> None:
    await create_model(client, model_name)
    long_pre = "1.0.0-" + "a" * (limits.PRERELEASE_MAX + 1)
    await _bad(await publish(client, model_name, long_pre), "pre-release tag is at most 128")
    long_build = "1.0.0+" + "b" * (limits.BUILD_MAX + 1)
    await _bad(await publish(client, model_name, long_build), "build metadata is at most 128")
    fits = "1.0.0-" + "a" * limits.PRERELEASE_MAX
    assert (await publish(client, model_name, fits)).status_code == 201
    labels = json.dumps({"k" * (limits.LABEL_KEY_MAX + 1): "v"})
    await _bad(await publish(client, model_name, "2.0.0", labels=labels), "form field")


@pytest.mark.parametrize("length", [limits.TOKEN_NAME_MAX, limits.TOKEN_NAME_MAX + 1])
async def test_token_names_fit_the_audit_actor(
    client: Client, model_name: str, length: int
) -> None:
    name = "n" * length
    made = await client.post("/admin/v1/tokens", json={"name": name, "scopes": ["admin"]})
    if length > limits.TOKEN_NAME_MAX:
        assert made.status_code == 400, made.text
        return
    assert made.status_code == 201, made.text
    headers = {"Authorization": f"Bearer {made.json()['token']}"}
    created = await client.post("/admin/v1/models", json={"name": model_name}, headers=headers)
    assert created.status_code == 201, created.text
    assert created.json()["created_by"] == f"token:{name}"


def test_legacy_long_token_names_give_a_fitting_actor() -> None:
    actor = limits.actor_for("n" * 128)
    assert len(actor) == limits.ACTOR_MAX
    assert actor == limits.actor_for("n" * 128)


@pytest.mark.parametrize(
    ("column", "bound"),
    [
        (Model.__table__.c.name, limits.NAME_MAX),
        (AuditEvent.__table__.c.actor, limits.ACTOR_MAX),
        (ModelVersion.__table__.c.version, limits.VERSION_MAX),
        (ModelVersion.__table__.c.prerelease, limits.PRERELEASE_MAX),
        (ModelVersion.__table__.c.build, limits.BUILD_MAX),
        (ModelVersion.__table__.c.created_by, limits.ACTOR_MAX),
    ],
)
def test_limits_match_the_columns(column: Any, bound: int) -> None:
    assert isinstance(column.type, String)
    assert column.type.length == bound


HOSTILE = [
    "a\x00b",
    "x" * 5000,
    f"{BIG}.0.0",
    "1.0.0-" + "p" * 300,
    "\U0001f600\u202e\ufeff\u0301",
    "",
    f"{2**64}",
]


@pytest.mark.parametrize("field", ["version", "description", "labels", "priority", "filename"])
async def test_hostile_upload_form_fields_are_never_a_5xx(
    client: Client, model_name: str, field: str
) -> None:
    """The multipart publish is not in the OpenAPI document the schema fuzz reads."""
    await create_model(client, model_name)
    for value in HOSTILE:
        data = {"version": "1.0.0", field: value}
        if field == "labels":
            data["labels"] = json.dumps({value: value})
        name = value if field == "filename" else "m.onnx"
        files = {"file": (name, onnx_bytes(1.0), "application/octet-stream")}
        url = f"/admin/v1/models/{model_name}/versions"
        response = await client.post(url, data=data, files=files)
        assert response.status_code < 500, (field, value[:40], response.text)
        if response.status_code == 201:
            version = response.json()["version"]
            assert (await client.get(f"{url}/{version}")).status_code == 200
            await client.patch(f"{url}/{version}", json={"status": "yanked"})
