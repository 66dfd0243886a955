"""Direct-database operations for the CLI: the first admin token, schema checks."""

from __future__ import annotations

import click
from sqlalchemy.exc import OperationalError, ProgrammingError

from registry.db import make_engine, make_sessionmaker
from registry.settings import RegistrySettings
from registry.tokens import TokenService

__all__ = ["create_token"]


async def create_token(
    settings: RegistrySettings, name: str, scopes: list[str], **limits: float | None
) -> str:
    """A new token's secret; ``limits`` are `TokenService.create`'s ``rate_limit_*``."""
    engine = make_engine(settings.database_url)
    try:
        service = TokenService(make_sessionmaker(engine))
        out = await service.create("cli", name, scopes, **limits)
    except (OperationalError, ProgrammingError) as exc:
        raise click.ClickException(
            f"cannot write the token ({exc.orig}); has the database been migrated? "
            f"run: modelgate db upgrade"
        ) from None
    finally:
        await engine.dispose()
    assert out.token is not None
    return out.token
