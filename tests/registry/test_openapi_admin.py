"""The admin API's OpenAPI document against real calls (issue 10, acceptance 5): every
(operation, status) the document declares is answered by at least one real call in the
table below, every answer's status is declared for its operation, and its body and headers
match what the document says (`tests.support.openapi`).

The calls are real requests to the in-process app on SQLite and PostgreSQL; the 503 of a
database that cannot be used comes from an app on a database never migrated, and the
artifact store's 507/503 from a filesystem call failing with ENOSPC/EROFS (the one fault
injected, at the boundary, as `test_artifact_store` does).
"""

from __future__ import annotations

import errno
import hashlib
import re
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import NullPool

from gateway.app import create_app
from gateway.settings import GatewaySettings
from registry import artifacts
from registry.db import make_engine
from registry.settings import RegistrySettings
from tests.support.models import onnx_bytes
from tests.support.openapi import Conformance, operations
from tests.support.registry import make_token

Client = AsyncTestClient[Litestar]
ADMIN = "/admin/v1"
MiB = 1024 * 1024
STALE = '"m0.0"'


def _scope(method: str, path: str) -> str:
    if path.startswith((f"{ADMIN}/tokens", f"{ADMIN}/audit")):
        return "admin"
    if path.startswith(f"{ADMIN}/workers") and method != "GET":
        return "admin"
    return "read" if method == "GET" else "publish"


#: A token without the scope a route needs.
WEAKER = {"read": "infer", "publish": "read", "admin": "publish"}


def _file(scale: float = 2.0) -> dict[str, Any]:
    return {"file": ("m.onnx", onnx_bytes(scale), "application/octet-stream")}


def _server(server_id: str, model: str = "no-such-model", **fields: Any) -> dict[str, Any]:
    """An external server registration; nothing listens at its URL."""
    serves = [{"model": model, "version": "1.0.0"}]
    doc = {"id": server_id, "url": "http://127.0.0.1:1", "protocol": "http", "serves": serves}
    return {**doc, **fields}


def _valid(method: str, path: str) -> dict[str, Any]:
    """A body that passes validation, so that the call reaches the route's own checks."""
    bodies: dict[str, dict[str, Any]] = {
        f"POST {ADMIN}/models": {"json": {"name": "x-new"}},
        f"POST {ADMIN}/models/{{model}}/versions": {"data": {"version": "7.0.0"}, "files": _file()},
        f"PATCH {ADMIN}/models/{{model}}/versions/{{version}}": {"json": {"priority": 1}},
        f"PUT {ADMIN}/models/{{model}}/aliases/{{alias}}": {"json": {"version": "1.0.0"}},
        f"PUT {ADMIN}/models/{{model}}/traffic": {
            "json": {"arms": [{"version": "1.0.0", "weight": 1}]}
        },
        f"POST {ADMIN}/models/{{model}}/rollouts": {
            "json": {"version": "1.1.0", "baseline": "1.0.0"}
        },
        f"POST {ADMIN}/tokens": {"json": {"name": "t", "scopes": ["read"]}},
        f"POST {ADMIN}/workers": {"json": _server("x-server")},
    }
    return bodies.get(f"{method} {path}", {})


class Calls:
    """Real calls recorded in ``conformance``; ``ids`` fill path templates."""

    def __init__(self, client: Client, conformance: Conformance, ids: dict[str, str]) -> None:
        self.client = client
        self.conformance = conformance
        self.ids = ids

    def path(self, template: str, **ids: str) -> str:
        values = {**self.ids, **ids}
        return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], template)

    async def __call__(
        self, method: str, template: str, expect: int, *, ids: dict[str, str] | None = None,
        **request: Any,
    ) -> Any:  # fmt: skip
        path = self.path(template, **(ids or {}))
        response = await self.client.request(method, path, **request)
        self.conformance.record(method, template, response, expect)
        return response


@pytest.fixture
async def broken(tmp_path: Path) -> AsyncIterator[Client]:
    """The app on a database that was never migrated: every admin route is its 503."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'never-migrated.db'}"
    engine = make_engine(url, poolclass=NullPool)
    settings = RegistrySettings(database_url=url, artifact_root=tmp_path / "artifacts")
    app = create_app(settings, GatewaySettings(rollout_controller=False), engine=engine)
    async with AsyncTestClient(app=app) as client:
        client.headers["Authorization"] = "Bearer mg_whatever"
        yield client
    await engine.dispose()


async def _generic(
    call: Calls, broken: Calls, tokens: dict[str, str], ops: list[tuple[str, str]]
) -> None:
    """What every route answers: 400 (a NUL in a query parameter), 401, 403, 404 (an
    unknown model), 413 (a JSON body over 1 MiB), 503 (the database)."""
    for method, path in ops:
        body = _valid(method, path)
        await call(method, path, 401, headers={"Authorization": ""}, **body)
        weaker = tokens[WEAKER[_scope(method, path)]]
        await call(method, path, 403, headers={"Authorization": f"Bearer {weaker}"}, **body)
        await call(method, path, 400, params={"q": "a\x00b"}, **body)
        await broken(method, path, 503, **body)
        if "{model}" in path:
            await call(method, path, 404, ids={"model": "no-such-model"}, **body)
        if "json" in body:
            big = {"headers": {"content-type": "application/json"}, "content": b" " * (MiB + 1)}
            await call(method, path, 413, **big)


async def _models_and_versions(call: Calls, import_root: Path, store: Any) -> None:
    m = f"{ADMIN}/models"
    v = f"{m}/{{model}}/versions"
    await call("POST", m, 201, json={"name": call.ids["model"]})
    await call("POST", m, 409, json={"name": call.ids["model"]})
    await call("GET", m, 200)
    await call("GET", f"{m}/{{model}}", 200)
    for version in ("1.0.0", "1.1.0", "2.0.0-rc.1"):
        await call("POST", v, 201, data={"version": version}, files=_file())
    await call("POST", v, 409, data={"version": "1.0.0"}, files=_file())
    await call("POST", v, 400, data={"version": "3.0.0"}, files={"file": ("m.onnx", b"junk")})
    huge = {"file": ("m.onnx", b"\0" * (300 * 1024), "application/octet-stream")}
    await call("POST", v, 413, data={"version": "3.0.0"}, files=huge)
    artifact = import_root / f"{call.ids['model']}.onnx"
    artifact.write_bytes(onnx_bytes(3.0))
    by_uri = {
        "version": "1.2.0",
        "artifact_uri": artifact.as_uri(),
        "sha256": hashlib.sha256(artifact.read_bytes()).hexdigest(),
    }
    await call("POST", v, 201, json=by_uri)
    await store(errno.ENOSPC, 507)
    await store(errno.EROFS, 503)
    await call("GET", v, 200, params={"constraint": "^1.0"})
    await call("GET", v, 400, params={"constraint": ">>1"})
    one = f"{v}/{{version}}"
    await call("GET", one, 200)
    await call("GET", one, 404, ids={"version": "9.9.9"})
    await call("PATCH", one, 200, json={"priority": 3})
    await call("PATCH", one, 412, json={"priority": 4}, headers={"If-Match": STALE})
    await call("PATCH", one, 404, json={"priority": 4}, ids={"version": "9.9.9"})


async def _policy(call: Calls) -> None:
    alias = f"{ADMIN}/models/{{model}}/aliases/{{alias}}"
    await call("GET", alias, 404)
    await call("PUT", alias, 201, json={"version": "1.0.0"})
    await call("PUT", alias, 200, json={"version": "1.1.0"})
    await call("PUT", alias, 412, json={"version": "1.0.0"}, headers={"If-Match": STALE})
    await call("PUT", alias, 404, json={"version": "9.9.9"})
    await call("PUT", alias, 400, json={"version": "1.0.0"}, ids={"alias": "^1.0"})
    await call("GET", alias, 200)
    await call("GET", f"{ADMIN}/models/{{model}}/aliases", 200)
    await call("DELETE", alias, 412, headers={"If-Match": STALE})
    await call("DELETE", alias, 204)
    await call("DELETE", alias, 404)
    traffic = f"{ADMIN}/models/{{model}}/traffic"
    arms = {"arms": [{"version": "1.0.0", "weight": 90}, {"version": "1.1.0", "weight": 10}]}
    await call("GET", traffic, 404)
    await call("DELETE", traffic, 404)
    await call("PUT", traffic, 200, json=arms)
    await call("PUT", traffic, 412, json=arms, headers={"If-Match": STALE})
    await call("PUT", traffic, 404, json={"arms": [{"version": "9.9.9", "weight": 1}]})
    await call("PUT", traffic, 400, json={"arms": [{"version": "1.0.0", "weight": 0}]})
    await call("GET", traffic, 200)
    one = f"{ADMIN}/models/{{model}}/versions/{{version}}"
    await call("PATCH", one, 409, json={"status": "deprecated"})
    resolve = f"{ADMIN}/models/{{model}}/resolve"
    await call("GET", resolve, 200, params={"version": "^1.0"})
    await call("GET", resolve, 404, params={"version": "^9.0"})
    await call("GET", resolve, 400, params={"version": ">>1"})
    await call("DELETE", traffic, 412, headers={"If-Match": STALE})
    await call("DELETE", traffic, 204)


async def _rollouts(call: Calls) -> None:
    base = f"{ADMIN}/models/{{model}}/rollouts"
    one = f"{base}/{{rollout_id}}"
    plan = {"version": "1.1.0", "baseline": "1.0.0"}
    await call("POST", base, 404, json={"version": "9.9.9", "baseline": "1.0.0"})
    started = await call("POST", base, 201, json=plan)
    call.ids["rollout_id"] = str(started.json()["id"])
    await call("POST", base, 409, json=plan)
    await call("POST", base, 400, json={**plan, "steps": [50, 10]})
    await call("GET", base, 200)
    await call("GET", one, 200)
    for verb in ("pause", "resume", "promote", "abort"):
        await call("POST", f"{one}/{verb}", 404, ids={"rollout_id": "999999"})
    await call("GET", one, 404, ids={"rollout_id": "999999"})
    await call("POST", f"{one}/resume", 409)
    await call("POST", f"{one}/pause", 200)
    await call("POST", f"{one}/pause", 409)
    await call("POST", f"{one}/resume", 200)
    await call("POST", f"{one}/promote", 409)  # no ready worker for the candidate here
    await call("POST", f"{one}/promote", 200, params={"force": "true"})
    await call("POST", f"{one}/abort", 409)
    again = await call("POST", base, 201, json={"version": "1.0.0", "baseline": "1.1.0"})
    await call("POST", f"{one}/abort", 200, ids={"rollout_id": str(again.json()["id"])})


async def _access(call: Calls) -> None:
    tokens = f"{ADMIN}/tokens"
    made = await call("POST", tokens, 201, json={"name": "victim", "scopes": ["read"]})
    await call("POST", tokens, 400, json={"name": "x", "scopes": ["root"]})
    await call("GET", tokens, 200)
    one = f"{tokens}/{{token_id}}"
    await call("DELETE", one, 204, ids={"token_id": str(made.json()["id"])})
    await call("DELETE", one, 404, ids={"token_id": str(made.json()["id"])})
    await call("GET", f"{ADMIN}/audit", 200)
    await call(
        "GET", f"{ADMIN}/audit", 200, params={"action": "token", "since": "2020-01-01T00:00:00Z"}
    )
    await call("GET", f"{ADMIN}/audit", 400, params={"since": "yesterday"})


async def _workers(call: Calls) -> None:
    """External OIP servers: register, list (with the announced kind's fields absent or
    null), remove."""
    workers = f"{ADMIN}/workers"
    one = f"{workers}/{{server_id}}"
    model = call.ids["model"]
    await call("POST", workers, 201, json=_server(call.ids["server_id"], model))
    await call("POST", workers, 409, json=_server(call.ids["server_id"], model))
    await call("POST", workers, 404, json=_server("s-unknown-model", "no-such-model"))
    unknown_version = _server("s-unknown-version", model)
    unknown_version["serves"][0]["version"] = "9.9.9"
    await call("POST", workers, 404, json=unknown_version)
    await call("POST", workers, 400, json=_server("s-https", model, url="https://127.0.0.1:1"))
    twice = _server("s-twice", model)
    twice["serves"] *= 2
    await call("POST", workers, 400, json=twice)
    listed = await call("GET", workers, 200)
    # NOTE: the database is the session's: other tests' workers are listed too.
    (mine,) = [w for w in listed.json() if w["id"] == call.ids["server_id"]]
    assert mine["kind"] == "external", listed.text
    await call("DELETE", one, 204)
    await call("DELETE", one, 404)
    await call("DELETE", one, 404, ids={"server_id": "no-such-server"})
    # Registered again for `_generic`'s calls, which need a server id that exists.
    await call("POST", workers, 201, json=_server(call.ids["server_id"], model))


async def test_every_admin_status_is_declared_and_real(
    client: Client,
    broken: Client,
    tokens: dict[str, str],
    engine: AsyncEngine,
    import_root: Path,
    model_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    document = (await client.get("/schema/openapi.json")).json()
    conformance = Conformance(document, ADMIN)
    scoped = {**tokens, "infer": await make_token(engine, "infer")}
    ids = {"model": model_name, "version": "1.0.0", "alias": "prod", "token_id": "1"}
    ids["server_id"] = f"s-ext-{secrets.token_hex(4)}"
    call = Calls(client, conformance, ids)

    async def store(code: int, status: int) -> None:
        def fail(*_args: Any, **_kwargs: Any) -> Any:
            raise OSError(code, "injected")

        with monkeypatch.context() as patch:
            patch.setattr(artifacts._TempFile, "write_block", fail)
            path = f"{ADMIN}/models/{{model}}/versions"
            await call("POST", path, status, data={"version": "5.0.0"}, files=_file())

    await _models_and_versions(call, import_root, store)
    await _policy(call)
    await _rollouts(call)
    await _access(call)
    await _workers(call)
    ops = sorted(operations(document, ADMIN))
    assert len(ops) >= 26, ops
    await _generic(call, Calls(broken, conformance, dict(call.ids)), scoped, ops)
    problems = conformance.report()
    assert problems == [], "\n".join(problems)
