"""Admin API calls the registry tests share, through an in-process test client."""

from __future__ import annotations

from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.support.models import onnx_bytes

Client = AsyncTestClient[Litestar]


async def create_model(client: Client, name: str) -> None:
    response = await client.post("/admin/v1/models", json={"name": name})
    assert response.status_code == 201, response.text


async def publish(
    client: Client, model: str, version: str, scale: float = 1.0, **fields: Any
) -> Any:
    data = {"version": version, **{k: str(v) for k, v in fields.items()}}
    files = {"file": ("model.onnx", onnx_bytes(scale), "application/octet-stream")}
    return await client.post(f"/admin/v1/models/{model}/versions", data=data, files=files)


async def resolve(client: Client, model: str, ref: str) -> Any:
    return await client.get(f"/admin/v1/models/{model}/resolve", params={"version": ref})
