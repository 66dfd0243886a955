"""The interop summary: one `Row` per check, printed as a table and written into
``docs/INTEROP.md`` between two marker lines (the prose around them is kept)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BEGIN", "END", "Row", "Rows", "render", "write_doc"]

BEGIN = "<!-- interop:table (written by `make interop`; edit the text around it) -->"
END = "<!-- /interop:table -->"


@dataclass(frozen=True)
class Row:
    """One check: which tool (and its version) did what, and how it went."""

    tool: str
    version: str
    what: str
    ok: bool
    detail: str


class Rows:
    """The rows collected so far; `check` turns an exception into a failing row."""

    def __init__(self) -> None:
        self.rows: list[Row] = []

    def add(self, tool: str, version: str, what: str, ok: bool, detail: str) -> Row:
        row = Row(tool, version, what, ok, " ".join(detail.split()))
        self.rows.append(row)
        mark = "pass" if ok else "FAIL"
        print(f"[{time.strftime('%H:%M:%S')}] {mark}  {tool}: {what} — {row.detail}", flush=True)
        return row

    def check(self, tool: str, version: str, what: str, body: Callable[[], str]) -> Row:
        """Run ``body`` (it returns the key figure, or raises with the reason)."""
        try:
            detail = body()
        except Exception as exc:
            return self.add(tool, version, what, False, f"{type(exc).__name__}: {exc}"[:300])
        return self.add(tool, version, what, True, detail)

    @property
    def failed(self) -> list[Row]:
        return [r for r in self.rows if not r.ok]


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render(rows: list[Row], header: str) -> str:
    """A Markdown table of ``rows`` under a one-line ``header``."""
    lines = [
        header,
        "",
        "| tool | version | what | result |",
        "|---|---|---|---|",
    ]
    for r in rows:
        result = f"pass: {r.detail}" if r.ok else f"**FAIL**: {r.detail}"
        lines.append(f"| {r.tool} | {r.version} | {_cell(r.what)} | {_cell(result)} |")
    passed = sum(r.ok for r in rows)
    lines += ["", f"{passed} passed, {len(rows) - passed} failed"]
    return "\n".join(lines)


def write_doc(path: Path, table: str) -> None:
    """Replace the block between `BEGIN` and `END` in ``path`` with ``table`` (the block is
    appended when the markers are missing)."""
    text = path.read_text() if path.exists() else "# Interoperability\n"
    block = f"{BEGIN}\n{table}\n{END}"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        text = f"{head}{block}{tail}"
    else:
        text = f"{text.rstrip()}\n\n{block}\n"
    path.write_text(text)
