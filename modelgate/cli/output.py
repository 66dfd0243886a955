"""How admin commands print: ``-o table|wide|json``, tables that are never cut when piped,
and progress bars for people on stderr.

* ``json``: the API's answer, one JSON document on one line of stdout (a stream of them,
  as ``rollout status --watch`` prints, is NDJSON); nothing else is written to stdout.
* ``table`` (the default) and ``wide`` (more columns): rich tables. On a terminal they fit
  its width (long cells fold, never ``…``); anywhere else (a pipe, a file) they take the
  width they need and carry no colour codes, so ``grep``/``awk`` see every character.
* Progress (uploads, waits) goes to stderr and only when stderr is a terminal.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import click
from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

__all__ = [
    "FORMATS",
    "PIPE_WIDTH",
    "Column",
    "NoResult",
    "emit_json",
    "is_wide",
    "refuse_output",
    "show",
    "stdout_console",
    "table",
    "transfer_progress",
    "wait_progress",
    "wants_json",
]

FORMATS = ("table", "wide", "json")
#: The width of a console that is not a terminal: wide enough that no table is ever cut.
PIPE_WIDTH = 1_000_000


def output_format(ctx: click.Context) -> str:
    """The ``-o`` given anywhere on the line (``table`` when none)."""
    return str(ctx.meta.get("output", "table"))


def wants_json(ctx: click.Context) -> bool:
    """Whether ``-o json`` was given anywhere on the command line."""
    return output_format(ctx) == "json"


def is_wide(ctx: click.Context) -> bool:
    return output_format(ctx) == "wide"


class NoResult(click.ClickException):
    """``-o`` given to a command that prints no result (serve, worker, demo): exit code 2."""

    exit_code = 2


def refuse_output(ctx: click.Context) -> None:
    """`NoResult` when ``-o`` was given to this long-running command, which writes log
    lines, not a result (their format is ``MODELGATE_LOG_FORMAT``'s)."""
    root = ctx.find_root()
    if root.get_parameter_source("output") is not click.core.ParameterSource.DEFAULT:
        raise NoResult(
            f"-o applies to commands that print a result, not to modelgate {ctx.info_name}, "
            "which writes logs: set MODELGATE_LOG_FORMAT=json for JSON log lines"
        )


def emit_json(data: Any) -> None:
    """One JSON document on stdout (one line, so a stream of them is NDJSON)."""
    click.echo(json.dumps(data, default=str))


def stdout_console() -> Console:
    """A console on the current stdout: the terminal's width on a terminal, else no width
    limit and no colour (`PIPE_WIDTH`)."""
    if sys.stdout.isatty():
        return Console(highlight=False)
    return Console(width=PIPE_WIDTH, color_system=None, highlight=False, soft_wrap=True)


@dataclass(frozen=True)
class Column:
    """A table column: its header, the cell of one API item, and whether only ``wide``
    shows it."""

    header: str
    cell: Callable[[Any], Any]
    wide: bool = False


def table(title: str, columns: Sequence[Column], items: Iterable[Any], wide: bool) -> Table:
    """A table of ``items`` (the API's objects) with ``columns`` (the ``wide`` ones only
    when ``wide``); ``None`` cells are empty, long cells fold on a terminal."""
    shown = [c for c in columns if wide or not c.wide]
    out = Table(title=title, title_justify="left")
    for column in shown:
        out.add_column(column.header, overflow="fold")
    for item in items:
        out.add_row(*("" if (v := c.cell(item)) is None else str(v) for c in shown))
    return out


def show(ctx: click.Context, data: Any, render: Callable[[bool], RenderableType | str]) -> None:
    """``data`` (the API's answer) as JSON with ``-o json``, else ``render(wide)`` on stdout."""
    if wants_json(ctx):
        emit_json(data)
    else:
        stdout_console().print(render(is_wide(ctx)))


def _stderr_progress(*columns: Any) -> Progress | None:
    if not sys.stderr.isatty():
        return None
    return Progress(*columns, console=Console(stderr=True), transient=False)


@contextmanager
def transfer_progress(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A transfer bar on stderr (bytes, percentage, speed, time left), when stderr is a
    terminal; yields ``advance(n_bytes)`` (a no-op otherwise)."""
    progress = _stderr_progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    if progress is None:
        yield lambda _n: None
        return
    with progress:
        task = progress.add_task(description, total=total)
        yield lambda n: progress.advance(task, n)


@contextmanager
def wait_progress(description: str, total: float) -> Iterator[Callable[[float, str], None]]:
    """A bar for a wait on stderr (how far, of ``total``, and the time so far), when stderr
    is a terminal; yields ``update(completed, description)`` (a no-op otherwise)."""
    progress = _stderr_progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
    )
    if progress is None:
        yield lambda _done, _text: None
        return
    with progress:
        task = progress.add_task(description, total=total)
        yield lambda done, text: progress.update(task, completed=done, description=text)
