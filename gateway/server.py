"""Running the gateway under an ASGI server (uvicorn by default; granian by setting)."""

from __future__ import annotations

import logging
from typing import Any

from gateway.app import create_gateway
from gateway.settings import GatewaySettings
from modelgate.core.logging import LogSettings, configure_logging, logging_config
from modelgate.core.tracing import configure_tracing
from registry.settings import RegistrySettings

__all__ = ["make_app", "run_gateway"]

log = logging.getLogger("modelgate.gateway")


def make_app() -> Any:
    """App factory for granian, which imports it by name in each server process it starts;
    there the settings are read once, from the environment the parent passed on."""
    gsettings = GatewaySettings()
    _observe(gsettings)
    return create_gateway(RegistrySettings(), gsettings)


def _observe(gsettings: GatewaySettings) -> LogSettings:
    """This process's logging and tracing, from the environment (`modelgate.core.logging`,
    `modelgate.core.tracing`)."""
    applied = configure_logging(gsettings.log_level, access_log=gsettings.access_log)
    if configure_tracing("modelgate-gateway"):
        log.info("tracing on: spans are exported as the OTEL_* environment says")
    return applied


def run_gateway(rsettings: RegistrySettings, gsettings: GatewaySettings) -> None:
    """Serve until stopped. uvicorn runs the app built here from the caller's settings."""
    applied = _observe(gsettings)
    level = applied.level or "info"
    if gsettings.server == "granian":
        from granian import Granian
        from granian.constants import Interfaces
        from granian.log import LogLevels

        Granian(
            "gateway.server:make_app",
            address=gsettings.host,
            port=gsettings.port,
            interface=Interfaces.ASGI,
            factory=True,
            log_level=LogLevels(level),
            log_dictconfig=logging_config(level, applied.format, access_log=gsettings.access_log),
            log_access=False,
        ).serve()
        return
    import uvicorn

    uvicorn.run(
        create_gateway(rsettings, gsettings),
        host=gsettings.host,
        port=gsettings.port,
        log_level=level,
        # NOTE: no configuration of uvicorn's own: its loggers propagate to the one
        # handler `configure_logging` set up, in the process's format.
        log_config=None,
        access_log=False,
        # NOTE: the client address is the gateway's to decide (gateway.identity reads
        # X-Forwarded-For from MODELGATE_GATEWAY_TRUSTED_PROXIES only); uvicorn's own
        # handling would believe any loopback peer and rewrite the address first.
        proxy_headers=False,
        forwarded_allow_ips="",
        loop="uvloop",
        http="httptools",
    )
