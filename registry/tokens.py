"""Scoped bearer tokens: created once (the secret is shown once), stored as sha256, revocable.

Scopes: ``read`` < ``publish`` < ``admin`` for the admin API, each implying the ones before
it; ``infer`` for the inference API, which ``admin`` implies too (an operator can try what
they publish) while ``read`` and ``publish`` do not. The gateway verifies inference tokens
against `load_grants`, read with each registry snapshot, never against the database per
request.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from registry._base import ServiceBase
from registry.errors import NotFound, Unauthorized
from registry.limits import ROW_ID_MAX
from registry.models import ApiToken
from registry.schemas import TokenOut

__all__ = [
    "INFER_SCOPES",
    "SCOPE_RANK",
    "Grant",
    "Principal",
    "TokenService",
    "hash_token",
    "load_grants",
]

#: ``admin`` implies ``publish`` implies ``read`` (the admin API).
SCOPE_RANK = {"read": 1, "publish": 2, "admin": 3}
#: The scopes that may call the inference API.
INFER_SCOPES = frozenset({"infer", "admin"})
PREFIX = "mg_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the token's name (the audit actor) and its scopes."""

    token_id: int
    name: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        if scope == "infer":
            return not INFER_SCOPES.isdisjoint(self.scopes)
        need = SCOPE_RANK[scope]
        return any(SCOPE_RANK.get(s, 0) >= need for s in self.scopes)


@dataclass(frozen=True, slots=True)
class Grant:
    """What the gateway knows of one live (unrevoked) token: who it is, what it may do and
    its own inference limit (None: the gateway's default; 0: unlimited)."""

    token_id: int
    name: str
    scopes: frozenset[str]
    rate_limit_rps: float | None
    rate_limit_burst: float | None

    @property
    def may_infer(self) -> bool:
        return not INFER_SCOPES.isdisjoint(self.scopes)


async def load_grants(session: AsyncSession) -> Mapping[str, Grant]:
    """Every unrevoked token by its sha256 (`hash_token`), read in ``session``."""
    rows = (await session.execute(select(ApiToken).where(ApiToken.revoked_at.is_(None)))).scalars()
    return {
        row.token_hash: Grant(
            row.id, row.name, frozenset(row.scopes), row.rate_limit_rps, row.rate_limit_burst
        )
        for row in rows
    }


def _out(row: ApiToken, token: str | None = None) -> TokenOut:
    return TokenOut(
        id=row.id,
        name=row.name,
        scopes=list(row.scopes),
        prefix=row.prefix,
        created_at=row.created_at,
        created_by=row.created_by,
        revoked=row.revoked_at is not None,
        token=token,
        rate_limit_rps=row.rate_limit_rps,
        rate_limit_burst=row.rate_limit_burst,
    )


class TokenService(ServiceBase):
    async def create(
        self,
        actor: str,
        name: str,
        scopes: list[str],
        *,
        rate_limit_rps: float | None = None,
        rate_limit_burst: float | None = None,
    ) -> TokenOut:
        """Create a token; the returned ``token`` field is the only time the secret is shown.
        ``rate_limit_*`` set its own inference limit (None: the gateway's default)."""
        secret = PREFIX + secrets.token_urlsafe(32)
        async with self.write() as session:
            row = ApiToken(
                name=name,
                token_hash=hash_token(secret),
                prefix=secret[:10],
                scopes=sorted(set(scopes)),
                created_at=self.clock(),
                created_by=actor,
                rate_limit_rps=rate_limit_rps,
                rate_limit_burst=rate_limit_burst,
            )
            session.add(row)
            await session.flush()
            await self.record(
                session,
                actor=actor,
                action="token.create",
                model=None,
                target=f"token:{row.id}",
                before=None,
                after={
                    "name": name,
                    "scopes": row.scopes,
                    "prefix": row.prefix,
                    "rate_limit_rps": rate_limit_rps,
                    "rate_limit_burst": rate_limit_burst,
                },
            )
        return _out(row, secret)

    async def authenticate(self, secret: str) -> Principal:
        async with self.read() as session:
            row = await session.scalar(
                select(ApiToken).where(ApiToken.token_hash == hash_token(secret))
            )
        if row is None or row.revoked_at is not None:
            raise Unauthorized("invalid or revoked bearer token")
        return Principal(row.id, row.name, frozenset(row.scopes))

    async def list(self) -> list[TokenOut]:
        async with self.read() as session:
            rows = (await session.execute(select(ApiToken).order_by(ApiToken.id))).scalars()
            return [_out(r) for r in rows]

    async def revoke(self, actor: str, token_id: int) -> None:
        async with self.write() as session:
            row = await session.get(ApiToken, token_id) if token_id <= ROW_ID_MAX else None
            if row is None or row.revoked_at is not None:
                raise NotFound(f"token {token_id} not found or already revoked")
            row.revoked_at = self.clock()
            await self.record(
                session,
                actor=actor,
                action="token.revoke",
                model=None,
                target=f"token:{token_id}",
                before={"name": row.name},
                after=None,
            )
