"""A publish's ``multipart/form-data`` body, streamed from the file in `CHUNK` pieces (a
200 MB model costs the CLI one chunk of memory) and counted as it goes, for the progress bar.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["CHUNK", "Multipart"]

CHUNK = 1024 * 1024


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\r", " ").replace("\n", " ")


class Multipart:
    """Text ``fields`` and one ``file`` part holding ``path``, as a sized byte stream."""

    def __init__(self, fields: dict[str, str], path: Path) -> None:
        self.boundary = f"modelgate-{secrets.token_hex(12)}"
        head = b"".join(
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + value.encode()
            + b"\r\n"
            for name, value in fields.items()
        )
        self.head = (
            head
            + (
                f'--{self.boundary}\r\nContent-Disposition: form-data; name="file"; '
                f'filename="{_quoted(path.name)}"\r\nContent-Type: application/octet-stream\r\n\r\n'
            ).encode()
        )
        self.tail = f"\r\n--{self.boundary}--\r\n".encode()
        self.path = path
        self.file_size = path.stat().st_size

    @property
    def headers(self) -> dict[str, str]:
        """``Content-Type`` with the boundary, and ``Content-Length`` (so the gateway can
        refuse a file over its limit before any of it is sent)."""
        length = len(self.head) + self.file_size + len(self.tail)
        return {
            "Content-Type": f"multipart/form-data; boundary={self.boundary}",
            "Content-Length": str(length),
        }

    def stream(self, sent: Callable[[int], None]) -> Iterator[bytes]:
        """The body, calling ``sent(n)`` for every ``n`` bytes of the file handed on."""
        yield self.head
        with self.path.open("rb") as handle:
            while block := handle.read(CHUNK):
                yield block
                sent(len(block))
        yield self.tail
