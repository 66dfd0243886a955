"""Direct-database operations for the CLI: the first admin token, schema checks."""

from __future__ import annotations

from registry.db import make_engine, make_sessionmaker
from registry.schemas import TokenOut
from registry.settings import RegistrySettings
from registry.tokens import TokenService

__all__ = ["create_token"]


async def create_token(
    settings: RegistrySettings, name: str, scopes: list[str], **limits: float | None
) -> TokenOut:
    """Create a token straight in the database (its ``token`` holds the secret); ``limits``
    are `TokenService.create`'s ``rate_limit_*``. Raises `DatabaseUnavailable` (with the
    fix: start it, or ``modelgate db upgrade``) when it cannot be written."""
    engine = make_engine(settings.database_url, **settings.engine_options())
    try:
        service = TokenService(make_sessionmaker(engine))
        out = await service.create("cli", name, scopes, **limits)
    finally:
        await engine.dispose()
    assert out.token is not None
    return out
