"""Bounds on what one request may make the worker do, checked before anything is parsed
deeply or allocated: JSON nesting depth, tensor rank and element count, integer headers.

Every check raises ``InvalidRequest`` or ``InvalidTensor`` (400) naming the offending value,
so a hostile body can never reach a ``RecursionError`` in the JSON decoder or a numpy
``ValueError`` (``[0, 2**62]``, ``[2**64, 0]``, 65 dimensions) that would answer 500 and
count against the worker's health at the gateway.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from backends.errors import InvalidRequest, InvalidTensor

__all__ = [
    "MAX_JSON_DEPTH",
    "MAX_RANK",
    "RequestLimits",
    "check_json_depth",
    "parse_byte_count",
    "shown",
]

#: Deepest JSON nesting accepted: room for ``data`` nested as a tensor of ``MAX_RANK``
#: dimensions inside the request envelope (object → inputs → input → data).
MAX_JSON_DEPTH = 64
#: Most dimensions a tensor may have (numpy 1.x's limit; numpy 2 allows 64).
MAX_RANK = 32
#: Decimal digits of the largest byte count any header may carry (2**63 has 19).
_MAX_DIGITS = 19

# A JSON string, escapes included (the unrolled form: no backtracking on long strings).
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))
_STEP = np.zeros(256, dtype=np.int8)
_STEP[list(b"[{")] = 1
_STEP[list(b"]}")] = -1
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class RequestLimits:
    """What one inference request may declare.

    ``max_elements`` bounds every tensor's element count, and the product of its non-zero
    dimensions (a ``[0, 2**62]`` tensor is empty, but numpy still refuses its shape). The
    data plane sets it to the body limit: no encoding carries more than one element per byte.
    """

    max_elements: int = 64 * 1024 * 1024
    max_rank: int = MAX_RANK
    max_json_depth: int = MAX_JSON_DEPTH

    def check_shape(self, name: str, shape: list[int]) -> int:
        """The element count of ``shape``; ``InvalidTensor`` when it is out of bounds."""
        if len(shape) > self.max_rank:
            raise InvalidTensor(
                f'input "{name}" has {len(shape)} dimensions; at most {self.max_rank} are allowed'
            )
        extent = 1
        for dim in shape:
            if dim < 0:
                raise InvalidTensor(
                    f'input "{name}" has a negative dimension in shape {_shape(shape)}'
                )
            extent *= dim or 1
            if extent > self.max_elements:
                raise InvalidTensor(
                    f'input "{name}": shape {_shape(shape)} is too large (more than '
                    f"{self.max_elements} elements)"
                )
        return 0 if 0 in shape else extent


def _shape(shape: list[int]) -> str:
    return shown("[" + ",".join(str(d) for d in shape) + "]", 80)


def shown(text: str, limit: int = 40) -> str:
    """``text`` cut to ``limit`` characters for an error message, saying how long it was."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text)} characters)"


def check_json_depth(data: bytes, end: int, limit: int) -> None:
    """Refuse JSON in ``data[:end]`` nested deeper than ``limit`` arrays and objects.

    NOTE: a body with at most ``limit`` opening brackets cannot be deeper, which one
    ``bytes.count`` shows for most requests (flat ``data``); only bodies with more are
    scanned, with strings blanked out so that brackets inside them do not count.
    """
    if data.count(b"[", 0, end) + data.count(b"{", 0, end) <= limit:
        return
    brackets = _STRING.sub(b"", memoryview(data)[:end]).translate(None, _NOT_BRACKETS)
    depth = 0
    for start in range(0, len(brackets), _CHUNK):
        steps = _STEP[np.frombuffer(brackets, np.uint8, min(_CHUNK, len(brackets) - start), start)]
        levels = np.cumsum(steps, dtype=np.int32) + depth
        if int(levels.max()) > limit:
            raise InvalidRequest(
                f"request JSON is nested deeper than {limit} levels, the most allowed"
            )
        depth = int(levels[-1])


def parse_byte_count(header: str, value: str | None, most: int) -> int | None:
    """The byte count in header ``header`` (``None`` when absent), at most ``most``."""
    if value is None:
        return None
    text = value.strip(" \t")  # HTTP's optional whitespace, not str.strip()'s NBSP or NEL
    if not (text.isascii() and text.isdigit()):
        raise InvalidRequest(f'{header} must be a non-negative integer, not "{shown(value)}"')
    if len(text) > _MAX_DIGITS or int(text) > most:
        raise InvalidRequest(f"{header} {shown(text)} is larger than the body ({most} bytes)")
    return int(text)
