"""Scoped bearer tokens: created once (the secret is shown once), stored as sha256, revocable."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import select

from registry._base import ServiceBase
from registry.errors import NotFound, Unauthorized
from registry.models import ApiToken
from registry.schemas import TokenOut

__all__ = ["SCOPE_RANK", "Principal", "TokenService", "hash_token"]

#: ``admin`` implies ``publish`` implies ``read``.
SCOPE_RANK = {"read": 1, "publish": 2, "admin": 3}
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
        need = SCOPE_RANK[scope]
        return any(SCOPE_RANK.get(s, 0) >= need for s in self.scopes)


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
    )


class TokenService(ServiceBase):
    async def create(self, actor: str, name: str, scopes: list[str]) -> TokenOut:
        """Create a token; the returned ``token`` field is the only time the secret is shown."""
        secret = PREFIX + secrets.token_urlsafe(32)
        async with self.write() as session:
            row = ApiToken(
                name=name,
                token_hash=hash_token(secret),
                prefix=secret[:10],
                scopes=sorted(set(scopes)),
                created_at=self.clock(),
                created_by=actor,
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
                after={"name": name, "scopes": row.scopes, "prefix": row.prefix},
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
            row = await session.get(ApiToken, token_id)
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
