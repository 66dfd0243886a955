"""Inference tokens in the admin API, on SQLite and PostgreSQL: the ``infer`` scope, per-token
limits, what each scope may do, and the grants a snapshot carries (revoked ones gone)."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from registry.db import make_sessionmaker
from registry.snapshot import load_snapshot
from registry.tokens import hash_token
from tests.support.admin import Client


async def test_an_infer_token_with_its_own_limit(client: Client, engine: AsyncEngine) -> None:
    body = {"name": "svc-a", "scopes": ["infer"], "rate_limit_rps": 5, "rate_limit_burst": 20}
    response = await client.post("/admin/v1/tokens", json=body)
    assert response.status_code == 201, response.text
    out = response.json()
    assert out["scopes"] == ["infer"]
    assert (out["rate_limit_rps"], out["rate_limit_burst"]) == (5.0, 20.0)
    secret = out["token"]

    grant = (await load_snapshot(make_sessionmaker(engine))).tokens[hash_token(secret)]
    assert (grant.name, grant.may_infer, grant.rate_limit_rps) == ("svc-a", True, 5.0)

    # an inference token is no key to the admin API
    listed = await client.get("/admin/v1/models", headers={"Authorization": f"Bearer {secret}"})
    assert listed.status_code == 403
    assert "infer" in listed.json()["error"]

    assert (await client.delete(f"/admin/v1/tokens/{out['id']}")).status_code == 204
    assert hash_token(secret) not in (await load_snapshot(make_sessionmaker(engine))).tokens


async def test_which_scopes_may_infer(client: Client, engine: AsyncEngine) -> None:
    made = {}
    for scope in ("read", "publish", "admin", "infer"):
        response = await client.post(
            "/admin/v1/tokens", json={"name": f"s-{scope}", "scopes": [scope]}
        )
        assert response.status_code == 201, response.text
        made[scope] = response.json()["token"]
    grants = (await load_snapshot(make_sessionmaker(engine))).tokens
    may = {scope: grants[hash_token(secret)].may_infer for scope, secret in made.items()}
    assert may == {"read": False, "publish": False, "admin": True, "infer": True}
    # without its own limit a token follows the gateway's default
    assert grants[hash_token(made["infer"])].rate_limit_rps is None


@pytest.mark.parametrize(
    "extra",
    [
        {"rate_limit_rps": -1},
        {"rate_limit_burst": -0.5},
        {"rate_limit_rps": 1e10},
        {"rate_limit_rps": "fast"},
    ],
)
async def test_bad_limits_are_a_400(client: Client, extra: dict[str, object]) -> None:
    response = await client.post(
        "/admin/v1/tokens", json={"name": "x", "scopes": ["infer"], **extra}
    )
    assert response.status_code == 400, response.text
    assert "rate_limit" in response.json()["error"]


async def test_revoking_an_id_beyond_32_bits_is_a_404(client: Client) -> None:
    # PostgreSQL's ids are 32-bit: the id must not reach the driver (that was a 500).
    response = await client.delete(f"/admin/v1/tokens/{2**31}")
    assert response.status_code == 404, response.text
    assert str(2**31) in response.json()["error"]
