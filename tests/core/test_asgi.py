"""The shared body reader: a declared ``Content-Length`` can only refuse early, never crash."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import pytest

from modelgate.core.asgi import read_body
from modelgate.core.errors import BodyTooLarge, ClientDisconnected


def receiver(*chunks: bytes, disconnect: bool = False) -> Any:
    messages: list[MutableMapping[str, Any]] = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]
    if disconnect:
        messages[-1]["more_body"] = True
        messages.append({"type": "http.disconnect"})

    async def receive() -> MutableMapping[str, Any]:
        return messages.pop(0)

    return receive


@pytest.mark.parametrize("declared", [None, "", "\u00b2", "9" * 5000, "-1", "0x10", " 4 ", "4"])
async def test_odd_declared_lengths_fall_back_to_the_bytes(declared: str | None) -> None:
    assert await read_body(receiver(b"ab", b"cd"), 4, declared) == b"abcd"


async def test_the_limit_holds_early_and_late() -> None:
    with pytest.raises(BodyTooLarge, match="request body of 5 bytes"):
        await read_body(receiver(b"a"), 4, "5")
    with pytest.raises(BodyTooLarge, match="request body of 6 bytes"):
        await read_body(receiver(b"abc", b"def"), 4, "9" * 5000)
    with pytest.raises(ClientDisconnected):
        await read_body(receiver(b"ab", disconnect=True), 4, None)
