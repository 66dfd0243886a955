"""The admin command groups of ``modelgate``, each in its own module, talking to a
gateway's admin API with httpx (`modelgate.cli.http`) and printing through
`modelgate.cli.output` (``-o table|wide|json``)."""

from __future__ import annotations

import click

from modelgate.cli.access import audit, tokens
from modelgate.cli.catalog import models, versions
from modelgate.cli.policy import alias, resolve, traffic
from modelgate.cli.rollout import rollout
from modelgate.cli.workers import workers

__all__ = ["ADMIN_COMMANDS", "register"]

#: The commands that call the admin API (``tokens create`` alone writes the database).
ADMIN_COMMANDS = (models, versions, alias, traffic, resolve, workers, rollout, tokens, audit)


def register(main: click.Group) -> None:
    """Add the admin commands to the top-level ``modelgate`` group."""
    for command in ADMIN_COMMANDS:
        main.add_command(command)
