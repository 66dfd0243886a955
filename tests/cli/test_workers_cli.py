"""``modelgate workers add|remove`` against a fake admin API (httpx.MockTransport): what
each sends for every ``--serves`` form. The live stack runs them in
tests/e2e/test_external_servers.py."""

from __future__ import annotations

import json

import httpx
import pytest
from click.testing import CliRunner, Result

from modelgate.cli import http
from modelgate.cli.main import main


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> list[httpx.Request]:
    requests: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        if request.method == "DELETE":
            return httpx.Response(204)
        doc = json.loads(request.content)
        for served in doc["serves"]:
            served.setdefault("remote_model", served["model"])
            served.setdefault("remote_version", served["version"])
        return httpx.Response(201, json=doc)

    transport = httpx.MockTransport(answer)
    monkeypatch.setattr(
        http, "make_client", lambda s: httpx.Client(base_url=s.url, transport=transport)
    )
    return requests


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, [*args, "--url", "http://gw"])


def test_add_sends_each_serves_form(seen: list[httpx.Request]) -> None:
    out = cli("workers", "add", "triton-1", "grpc://t:8001", "--protocol", "grpc",
              "--serves", "m@1.0.0", "--serves", "m@2.0.0=iris", "--serves", "m@3.0.0=iris@7",
              "--serves", "m@4.0.0=iris@")  # fmt: skip
    assert out.exit_code == 0, out.output
    body = json.loads(seen[0].content)
    assert (seen[0].method, seen[0].url.path) == ("POST", "/admin/v1/workers")
    assert (body["id"], body["url"], body["protocol"]) == ("triton-1", "grpc://t:8001", "grpc")
    assert body["serves"] == [
        {"model": "m", "version": "1.0.0"},
        {"model": "m", "version": "2.0.0", "remote_model": "iris"},
        {"model": "m", "version": "3.0.0", "remote_model": "iris", "remote_version": "7"},
        {"model": "m", "version": "4.0.0", "remote_model": "iris", "remote_version": ""},
    ]


def test_remove_and_bad_forms(seen: list[httpx.Request]) -> None:
    out = cli("workers", "remove", "triton-1", "-o", "json")
    assert (out.exit_code, json.loads(out.output)) == (0, {"removed": "triton-1"})
    assert (seen[0].method, seen[0].url.path) == ("DELETE", "/admin/v1/workers/triton-1")
    for bad in ("m", "@1.0.0", "m@", "m@1.0.0="):
        refused = cli("workers", "add", "x", "http://h:1", "--serves", bad)
        assert refused.exit_code == 2, bad
    assert len(seen) == 1
