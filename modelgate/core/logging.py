"""Logging set-up, the same for every modelgate process (gateway, worker, CLI)."""

from __future__ import annotations

import logging

__all__ = ["configure_logging"]

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str, *, access_log: bool = False) -> None:
    """One line per record on stderr at ``level``; the gateway's access log
    (``modelgate.access``) only when ``access_log``."""
    logging.basicConfig(level=level.upper(), format=FORMAT)
    logging.getLogger("modelgate.access").disabled = not access_log
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per probe otherwise
