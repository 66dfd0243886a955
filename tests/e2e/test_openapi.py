"""The OpenAPI document of a real ``modelgate serve`` (issue 10, acceptance 5): it is valid
OpenAPI (openapi-spec-validator), its docs page needs no network, and every status the
data plane (``/v2``) declares is answered by a real call through the gateway to real
worker processes, with the declared body and headers (`tests.support.openapi`).

The fleet: one worker serving ``m@1.0.0``, another serving ``m@0.9.0`` whose registry
labels make every inference fail (the worker's 500, passed through); ``m@3.0.0`` is
published and served by no worker (503). A second gateway on a database never migrated
has no routing table (its 503s). The admin API's statuses are `test_openapi_admin`'s.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate

from tests.support.fleet import Fleet, infer_json, wait_until
from tests.support.models import onnx_bytes
from tests.support.net import ROOT, free_port, wait_http
from tests.support.openapi import Conformance, operations

M, MV = "/v2/models/{model}", "/v2/models/{model}/versions/{version}"
FAULTY = {"modelgate.fault.error_rate": "1"}
#: Triton's extensions, built beside this in parallel (helper ``gext``): their calls run
#: once the gateway serves them; until then their operations are left out of the check.


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("openapi")
    fleet = Fleet(root, f"sqlite+aiosqlite:///{root / 'registry.db'}", None)
    try:
        fleet.start_gateway(MODELGATE_GATEWAY_MAX_BODY_BYTES="65536")
        fleet.publish("m", {"1.0.0": 2.0})
        with fleet.admin() as client:
            for version, labels in (("0.9.0", FAULTY), ("3.0.0", {})):
                files = {"file": ("m.onnx", onnx_bytes(3.0), "application/octet-stream")}
                form = {"version": version, "labels": json.dumps(labels)}
                made = client.post("/admin/v1/models/m/versions", data=form, files=files)
                assert made.status_code == 201, made.text
        fleet.start_worker("w1", ["m@1.0.0"])
        fleet.start_worker("w2", ["m@0.9.0"])
        fleet.wait_serving("m", "1.0.0", 1)
        fleet.wait_serving("m", "0.9.0", 1)
        yield fleet
    finally:
        fleet.stop()


@pytest.fixture(scope="module")
def unloaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A gateway on a database never migrated: it never loads a routing table."""
    root = tmp_path_factory.mktemp("unloaded")
    env = {
        **os.environ,
        "MODELGATE_DATABASE_URL": f"sqlite+aiosqlite:///{root / 'never-migrated.db'}",
        "MODELGATE_ARTIFACT_ROOT": str(root / "artifacts"),
    }
    env.pop("MODELGATE_REDIS_URL", None)
    port = free_port()
    log = (root / "serve.log").open("wb")
    cli = [sys.executable, "-m", "modelgate", "serve", "--port", str(port)]
    server = subprocess.Popen(cli, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    try:
        wait_http(f"http://127.0.0.1:{port}/v2/health/live", server)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=20)


@pytest.fixture(scope="module")
def document(stack: Fleet) -> dict[str, Any]:
    response = httpx.get(f"{stack.gateway_url}/schema/openapi.json")
    assert response.status_code == 200, response.text
    doc: dict[str, Any] = response.json()
    return doc


def test_the_live_document_is_valid_openapi(document: dict[str, Any]) -> None:
    validate(document)
    assert document["openapi"].startswith("3.1")
    assert document["components"]["schemas"]["Error"]["required"] == ["error"]
    paths = document["paths"]
    assert "/v2/models/{model}/versions/{version}/infer" in paths
    assert "/admin/v1/models/{model}/resolve" in paths
    for path, item in paths.items():
        for method, op in item.items():
            for code, response in op["responses"].items():
                body = response.get("content", {}).get("application/json", {}).get("schema", {})
                if int(code) >= 400:
                    assert body == {"$ref": "#/components/schemas/Error"}, (method, path, code)


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [v for k, v in attrs if k in ("src", "href") and v]


@pytest.mark.parametrize("page", ["/schema", "/schema/swagger"])
def test_the_docs_page_loads_only_what_the_gateway_serves(stack: Fleet, page: str) -> None:
    with httpx.Client(base_url=stack.gateway_url) as client:
        html = client.get(page)
        assert html.status_code == 200
        assert html.headers["content-type"].startswith("text/html")
        links = _Links()
        links.feed(html.text)
        assert not re.search(r"https?://", html.text.split("spec:", 1)[0]), html.text[:2000]
        kinds = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
        assert sorted(Path(u).suffix for u in links.urls) == [".css", ".js", ".js", ".png"]
        for url in links.urls:
            assert url.startswith("/schema/assets/"), url
            asset = client.get(url)
            assert asset.status_code == 200, url
            assert asset.headers["content-type"].startswith(kinds[Path(url).suffix]), url
            assert len(asset.content) > 500, url
        bundle = client.get("/schema/assets/swagger-ui-bundle.js").text
        assert "SwaggerUIBundle" in bundle
        # NOTE: Swagger UI 5 is the first that renders OpenAPI 3.1 (what Litestar writes).
        assert re.search(r'version:"?5\.|"5\.\d+\.\d+"', bundle), bundle[:300]


CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.skipif(not CHROMIUM.exists(), reason="no Chromium here (Debian's chromium package)")
def test_chromium_renders_every_operation_with_no_network(
    stack: Fleet, document: dict[str, Any]
) -> None:
    """Every host but the gateway's unresolvable: Swagger UI still draws each operation."""
    blocked = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", blocked, "--virtual-time-budget=10000"]
    out = subprocess.run(
        [str(CHROMIUM), *flags, "--dump-dom", f"{stack.gateway_url}/schema"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    dom = out.stdout
    assert "Unable to render this definition" not in dom
    drawn = set(re.findall(r'data-path="([^"]+)"', dom))
    assert drawn == set(document["paths"]), sorted(set(document["paths"]) - drawn)


class Calls:
    def __init__(self, client: httpx.Client, conformance: Conformance) -> None:
        self.client = client
        self.conformance = conformance
        self.ids = {"model": "m", "version": "1.0.0"}

    def __call__(
        self, method: str, template: str, expect: int, *, ids: dict[str, str] | None = None,
        **request: Any,
    ) -> httpx.Response:  # fmt: skip
        values = {**self.ids, **(ids or {})}
        path = re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], template)
        response = self.client.request(method, path, **request)
        self.conformance.record(method, template, response, expect)
        return response


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _token(stack: Fleet, scopes: list[str], **limits: float) -> str:
    with stack.admin() as client:
        made = client.post("/admin/v1/tokens", json={"name": "t", "scopes": scopes, **limits})
        assert made.status_code == 201, made.text
        token: str = made.json()["token"]

    def known() -> bool:  # the gateway learns tokens with the registry's next revision
        answer = httpx.get(f"{stack.gateway_url}/v2/models/m/ready", headers=_bearer(token))
        return answer.status_code != 401

    wait_until(known, "the gateway to know the new token")
    return token


def _model_reads(call: Calls, read_token: str) -> None:
    for path in (M, f"{M}/ready", MV, f"{MV}/ready"):
        call("GET", path, 200)
        call("GET", path, 401, headers=_bearer("mg_not-a-token"))
        call("GET", path, 403, headers=_bearer(read_token))
        call("GET", path, 404, ids={"model": "no-such-model"})
        if path.startswith(MV):
            call("GET", path, 400, headers={"X-Model-Version": "^2"})
            call("GET", path, 503, ids={"version": "3.0.0"})
        else:
            call("GET", path, 400, headers={"X-Model-Version": ">>1"})
            call("GET", path, 503, headers={"X-Model-Version": "3.0.0"})


def _infers(call: Calls, read_token: str, slow_token: str) -> None:
    body = {"json": infer_json()}
    cases = [
        (f"{M}/infer", {}, {"X-Model-Version": "0.9.0"}, {"X-Model-Version": "3.0.0"}),
        (f"{MV}/infer", {}, {}, {}),
        ("/v2/infer", {"X-Model": "m"}, {"X-Model-Version": "0.9.0"}, {"X-Model-Version": "3.0.0"}),
    ]
    for path, base, faulty, absent in cases:
        call("POST", path, 200, headers=base, **body)
        call("POST", path, 400, headers={**base, "X-Request-Timeout-Ms": "soon"}, **body)
        call("POST", path, 401, headers={**base, **_bearer("mg_not-a-token")}, **body)
        call("POST", path, 403, headers={**base, **_bearer(read_token)}, **body)
        unknown = {"X-Model": "no-such-model"} if base else {}
        call("POST", path, 404, headers=unknown, ids={"model": "no-such-model"}, **body)
        big = {"content": b"{" + b" " * 70_000 + b"}", "headers": {**base, "content-type": "x"}}
        call("POST", path, 413, **big)
        # NOTE: a deadline of 0 ms has passed by the time the gateway would forward.
        call("POST", path, 504, headers={**base, "X-Request-Timeout-Ms": "0"}, **body)
        call("POST", path, 429, headers={**base, **_bearer(slow_token)}, **body)
        call("POST", path, 503, headers={**base, **absent}, ids={"version": "3.0.0"}, **body)
        call("POST", path, 500, headers={**base, **faulty}, ids={"version": "0.9.0"}, **body)


def _extensions(call: Calls, read_token: str, admin: str) -> None:
    for path in (f"{M}/config", f"{MV}/config", f"{MV}/stats", f"{M}/stats", "/v2/models/stats"):
        call("GET", path, 200)
        call("GET", path, 401, headers=_bearer("mg_not-a-token"))
        call("GET", path, 403, headers=_bearer(read_token))
        if "{model}" in path:
            call("GET", path, 404, ids={"model": "no-such-model"})
        if path.startswith(MV):
            call("GET", path, 400, headers={"X-Model-Version": "^2"})
            call("GET", path, 503, ids={"version": "3.0.0"})
        elif path in (f"{M}/config", f"{M}/stats"):
            call("GET", path, 400, headers={"X-Model-Version": ">>1"})
            call("GET", path, 503, headers={"X-Model-Version": "3.0.0"})
    # NOTE: the repository reads at most 64 KiB of body.
    big = {"headers": {**_bearer(admin), "content-type": "application/json"}}
    big["content"] = b"{" + b" " * 70_000 + b"}"
    index = "/v2/repository/index"
    call("POST", index, 200, headers=_bearer(admin), json={})
    call("POST", index, 401, json={})
    call("POST", index, 403, headers=_bearer(read_token), json={})
    call("POST", index, 400, headers=_bearer(admin), json={"ready": "yes"})
    call("POST", index, 413, **big)
    for verb in ("load", "unload"):
        in_path = "3.0.0" if verb == "unload" else "1.0.0"
        for path, ids in (
            (f"/v2/repository/models/{{model}}/{verb}", {}),
            (f"/v2/repository/models/{{model}}/versions/{{version}}/{verb}", {"version": in_path}),
        ):
            named = {} if ids else {"json": {"parameters": {"version": in_path}}}
            call("POST", path, 200, headers=_bearer(admin), ids=ids, **named)
            call("POST", path, 401, ids=ids, **named)
            call("POST", path, 403, headers=_bearer(read_token), ids=ids, **named)
            nope = {**ids, "model": "nope"}
            call("POST", path, 404, headers=_bearer(admin), ids=nope, **named)
            bad = (
                {"ids": {**ids, "version": ">>1"}}
                if ids
                else {"json": {"parameters": {"version": ">>1"}}}
            )
            call("POST", path, 400, headers=_bearer(admin), **bad)
            call("POST", path, 413, ids=ids, **big)


def _unloaded(call: Calls, document: dict[str, Any]) -> None:
    """Before the routing table is loaded: readiness, and every route that names a model or
    needs a token checked, is that 503."""
    call("GET", "/v2/health/ready", 503)
    for method, path in sorted(operations(document, "/v2")):
        if path in ("/v2", "/v2/health/live", "/v2/health/ready"):
            continue
        headers = {"X-Model": "m"}
        if path.startswith("/v2/repository") or path == "/v2/models/stats":
            headers |= _bearer("mg_any")  # checking a token needs the registry too
        body = {"json": infer_json()} if path.endswith("infer") else {}
        call(method, path, 503, headers=headers, **body)


def test_every_data_plane_status_is_declared_and_real(
    stack: Fleet, unloaded: str, document: dict[str, Any]
) -> None:
    conformance = Conformance(document, "/v2")
    with (
        httpx.Client(base_url=stack.gateway_url, timeout=30) as client,
        httpx.Client(base_url=unloaded, timeout=30) as other,
    ):
        _run(Calls(client, conformance), Calls(other, conformance), stack, document)


def _run(call: Calls, unloaded: Calls, stack: Fleet, document: dict[str, Any]) -> None:
    read_token = _token(stack, ["read"])
    slow_token = _token(stack, ["infer"], rate_limit_rps=0.001, rate_limit_burst=1)
    call("POST", f"{M}/infer", 200, headers=_bearer(slow_token), json=infer_json())
    call("GET", "/v2", 200)
    call("GET", "/v2/health/live", 200)
    call("GET", "/v2/health/ready", 200)
    _model_reads(call, read_token)
    _infers(call, read_token, slow_token)
    _extensions(call, read_token, stack.token)
    _unloaded(unloaded, document)
    problems = call.conformance.report()
    assert problems == [], "\n".join(problems)
