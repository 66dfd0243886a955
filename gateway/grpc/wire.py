"""The few protobuf wire fields the gateway reads and writes in inference messages, without
decoding the rest (tensors are never parsed).

A request's routing fields are top-level strings of ``ModelInferRequest`` (and of the
metadata, config and ready requests, which number them alike): ``1`` the model's name, ``2``
its version, ``3`` the request id. `routing` walks the top-level fields once, skipping every
other field by its length, and keeps the last value of each (proto3: the last one wins).
That rule also makes renaming cheap: `renamed` appends fields 1 and 2, and every parser
reads the appended values. Stream responses are framed here too (`stream_reply`,
`stream_error`): a ``ModelStreamInferResponse`` is field 1, ``error_message``, or field 2,
the worker's ``ModelInferResponse`` bytes as they came.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.errors import BadGatewayRequest

__all__ = ["Routing", "renamed", "routing", "stream_error", "stream_reply"]

_NAMES = {1: "model_name", 2: "model_version", 3: "id"}


@dataclass(frozen=True, slots=True)
class Routing:
    """A request's routing fields; "" where absent (proto3's default)."""

    model: str
    version: str
    id: str


def _invalid(what: str) -> BadGatewayRequest:
    return BadGatewayRequest(f"the request is not a valid protobuf message: {what}")


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    end = len(data)
    while pos < end:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift >= 64:
            raise _invalid(f"a varint longer than 10 bytes at byte {pos}")
    raise _invalid(f"truncated at byte {pos}")


def routing(data: bytes) -> Routing:
    """The routing fields of a serialized request; `BadGatewayRequest` (400) when its
    top-level fields are not well-formed protobuf, or a routing field is not UTF-8."""
    found: dict[int, tuple[int, int]] = {}
    pos, end = 0, len(data)
    while pos < end:
        key = data[pos]
        if key < 0x80:
            pos += 1
        else:
            key, pos = _varint(data, pos)
        number, kind = key >> 3, key & 7
        if number == 0:
            raise _invalid(f"field number 0 at byte {pos}")
        if kind == 2:
            length, pos = _varint(data, pos)
            if pos + length > end:
                raise _invalid(f"field {number} runs past the end ({length} bytes at byte {pos})")
            if number in _NAMES:
                found[number] = (pos, pos + length)
            pos += length
        elif number in _NAMES:
            raise _invalid(f"{_NAMES[number]} (field {number}) is not a string")
        elif kind == 0:
            _, pos = _varint(data, pos)
        elif kind == 1:
            pos += 8
        elif kind == 5:
            pos += 4
        else:
            raise _invalid(f"field {number} has wire type {kind} (groups are not supported)")
    if pos > end:
        raise _invalid("the last field runs past the end")
    model, version, rid = (_text(data, found.get(n), _NAMES[n]) for n in (1, 2, 3))
    return Routing(model, version, rid)


def _text(data: bytes, span: tuple[int, int] | None, name: str) -> str:
    if span is None:
        return ""
    try:
        return data[span[0] : span[1]].decode()
    except UnicodeDecodeError:
        raise _invalid(f"{name} is not UTF-8") from None


def _length(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _string(number: int, text: str) -> bytes:
    raw = text.encode()
    return bytes((number << 3 | 2,)) + _length(len(raw)) + raw


def renamed(data: bytes, current: Routing, model: str, version: str) -> bytes:
    """``data`` with fields 1 and 2 reading ``model`` and ``version`` (appended where they
    differ from ``current``, its `routing`; ``data`` itself when neither does)."""
    if current.model == model and current.version == version:
        return data
    tail = b""
    if current.model != model:
        tail += _string(1, model)
    if current.version != version:
        tail += _string(2, version)
    return data + tail


def stream_reply(response: bytes) -> bytes:
    """A ``ModelStreamInferResponse`` carrying a worker's ``ModelInferResponse`` bytes."""
    return b"\x12" + _length(len(response)) + response


def stream_error(message: str, model: str, request_id: str) -> bytes:
    """A ``ModelStreamInferResponse`` with ``error_message``, and an ``infer_response``
    naming the request's model and id so that a client can tell which request failed."""
    echo = _string(1, model) + (_string(3, request_id) if request_id else b"")
    return _string(1, message) + b"\x12" + _length(len(echo)) + echo
