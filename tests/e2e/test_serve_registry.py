"""Acceptance 3 against a running ``modelgate serve`` (a real process, real HTTP, SQLite)."""

from __future__ import annotations

import httpx

from tests.support.models import onnx_bytes


def test_publish_and_resolve_against_running_server(live_gateway: tuple[str, str]) -> None:
    base, token = live_gateway
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as client:
        assert client.post("/admin/v1/models", json={"name": "resnet"}).status_code == 201
        for i, version in enumerate(["1.0.0", "1.1.0", "1.2.0-rc.1", "2.0.0"]):
            files = {"file": ("m.onnx", onnx_bytes(float(i)), "application/octet-stream")}
            response = client.post(
                "/admin/v1/models/resnet/versions", data={"version": version}, files=files
            )
            assert response.status_code == 201, response.text

        def resolved(ref: str) -> str:
            response = client.get("/admin/v1/models/resnet/resolve", params={"version": ref})
            assert response.status_code == 200, response.text
            version: str = response.json()["version"]
            return version

        assert resolved("^1.0") == "1.1.0"
        assert resolved("stable") == "2.0.0"
        assert resolved("latest") == "2.0.0"
        assert resolved("^1.2.0-rc.1") == "1.2.0-rc.1"
        client.patch(
            "/admin/v1/models/resnet/versions/2.0.0", json={"status": "deprecated"}
        ).raise_for_status()
        assert resolved("stable") == "1.1.0"
        assert resolved("2.0.0") == "2.0.0"
        client.patch(
            "/admin/v1/models/resnet/versions/1.1.0", json={"status": "yanked"}
        ).raise_for_status()
        assert resolved("^1.0") == "1.0.0"
        gone = client.get("/admin/v1/models/resnet/resolve", params={"version": "1.1.0"})
        assert gone.status_code == 404
        assert gone.json() == {"error": 'version "1.1.0" of "resnet" is yanked'}
        schema = client.get("/schema/openapi.json")
        assert schema.status_code == 200
        assert "/admin/v1/models/{model}/resolve" in schema.json()["paths"]
