"""Running the gateway under an ASGI server (uvicorn by default; granian by setting)."""

from __future__ import annotations

import logging
from typing import Any

from gateway.settings import GatewaySettings

__all__ = ["make_app", "run_gateway"]


def configure_logging(settings: GatewaySettings) -> None:
    """One line per record on stderr; the access log (``modelgate.access``) by setting."""
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("modelgate.access").disabled = not settings.access_log
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per probe otherwise


def make_app() -> Any:
    """App factory for servers that import it by name (it runs in each server process);
    settings come from the environment."""
    from gateway.app import create_gateway

    configure_logging(GatewaySettings())
    return create_gateway()


def run_gateway(settings: GatewaySettings) -> None:
    if settings.server == "granian":
        from granian import Granian
        from granian.constants import Interfaces
        from granian.log import LogLevels

        Granian(
            "gateway.server:make_app",
            address=settings.host,
            port=settings.port,
            interface=Interfaces.ASGI,
            factory=True,
            log_level=LogLevels(settings.log_level),
        ).serve()
        return
    import uvicorn

    uvicorn.run(
        "gateway.server:make_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        loop="uvloop",
        http="httptools",
    )
