"""The ``modelgate`` command: the product's shell over the registry, gateway and worker."""

from __future__ import annotations

from modelgate.cli.main import main

__all__ = ["main"]
