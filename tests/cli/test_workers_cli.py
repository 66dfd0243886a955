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


@pytest.fixture
def placed(monkeypatch: pytest.MonkeyPatch) -> list[httpx.Request]:
    """A fake gateway for ``workers load|unload``: the version exists, one worker, and a
    load or unload that answers at once."""
    requests: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        if request.url.path == "/admin/v1/workers":
            return httpx.Response(
                200, json=[{"id": "w1", "stale": False, "loaded": [], "balancer": None}]
            )
        return httpx.Response(200, json={})

    transport = httpx.MockTransport(answer)
    monkeypatch.setattr(
        http, "make_client", lambda s: httpx.Client(base_url=s.url, transport=transport)
    )
    return requests


def test_load_and_unload_wait_for_the_gateway_as_long_as_timeout(
    placed: list[httpx.Request],
) -> None:
    for args, path, waited in (
        (("load", "m", "1.0.0"), "/v2/repository/models/m/versions/1.0.0/load", 330),
        (("load", "m@1.0.0", "--timeout", "900"), "/v2/repository/models/m/versions/1.0.0/load",
         900),
        (("unload", "m@1.0.0"), "/v2/repository/models/m/versions/1.0.0/unload", 330),
        (("unload", "m/x", "--timeout=5"), "/v2/repository/models/m%2Fx/unload", 5),
    ):  # fmt: skip
        placed.clear()
        out = cli("workers", *args, "--no-wait", "-o", "json")
        assert out.exit_code == 0, (args, out.output)
        post = next(r for r in placed if r.method == "POST")
        assert post.url.raw_path.decode() == path, args
        assert post.extensions["timeout"]["read"] == waited, args
        assert json.loads(post.content) == {"parameters": {"workers": "w1"}}
    placed.clear()
    both = cli("workers", "load", "m@1.0.0", "2.0.0")
    assert both.exit_code == 2
    assert "not both" in both.stderr
    none = cli("workers", "load", "m")
    assert (none.exit_code, placed) == (2, [])
    assert "give the version to load" in none.stderr
