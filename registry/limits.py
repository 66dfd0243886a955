"""The bounds every admin input is held to, so that SQLite and PostgreSQL accept alike.

PostgreSQL refuses what SQLite stores: a NUL character in any text, a string longer than
its ``varchar(n)``, an integer beyond int64. Every such input is refused here first, as a
400 (`InvalidInput`) naming the field and its value, before any SQL is sent. The lengths
are the columns' of `registry.models`; a test checks that the two agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from registry.errors import InvalidInput

__all__ = [
    "ACTOR_MAX",
    "ALIAS_MAX",
    "BUILD_MAX",
    "DESCRIPTION_MAX",
    "FILENAME_MAX",
    "INT64_MAX",
    "LABEL_KEY_MAX",
    "LABEL_VALUE_MAX",
    "NAME_MAX",
    "PRERELEASE_MAX",
    "ROW_ID_MAX",
    "SERVER_URL_MAX",
    "TOKEN_ACTOR_PREFIX",
    "TOKEN_NAME_MAX",
    "URI_MAX",
    "VERSION_MAX",
    "actor_for",
    "check_int64",
    "check_params",
    "check_text",
    "check_texts",
    "check_uri",
]

#: BigInteger (and PostgreSQL's int8) holds at most this.
INT64_MAX = 2**63 - 1
#: Row ids are ``integer`` columns: int32 in PostgreSQL (SQLite would take more).
ROW_ID_MAX = 2**31 - 1
#: ``models.name``, ``api_tokens.name``, ``audit_events.model``.
NAME_MAX = 128
#: ``created_by``, ``updated_by``, ``changed_by``, ``audit_events.actor``.
ACTOR_MAX = 128
TOKEN_ACTOR_PREFIX = "token:"
#: A token's name is its audit actor after ``token:``, which must fit `ACTOR_MAX`.
TOKEN_NAME_MAX = ACTOR_MAX - len(TOKEN_ACTOR_PREFIX)
#: ``model_versions.version``; its prerelease and build parts have columns of their own.
VERSION_MAX = 256
PRERELEASE_MAX = 128
BUILD_MAX = 128
#: ``aliases.name``.
ALIAS_MAX = 64
LABEL_KEY_MAX = 128
LABEL_VALUE_MAX = 512
DESCRIPTION_MAX = 4096
URI_MAX = 2048
#: ``external_servers.url`` (and ``workers.url``).
SERVER_URL_MAX = 512
#: An uploaded file's name (as most file systems allow).
FILENAME_MAX = 255


def check_text(field: str, value: str, max_length: int | None = None) -> None:
    """Refuse a NUL character, a lone surrogate, or more than ``max_length`` characters."""
    if "\x00" in value:
        raise InvalidInput(field, value, "contains a NUL character (U+0000), which is not allowed")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(field, value, "is not valid Unicode (a lone surrogate)") from None
    if max_length is not None and len(value) > max_length:
        raise InvalidInput(
            field, value, f"is {len(value)} characters long; at most {max_length} are allowed"
        )


def check_texts(field: str, value: Any) -> None:
    """`check_text` on every string in a decoded document (keys too), naming its path."""
    if isinstance(value, str):
        check_text(field, value)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str):
                check_text(f"{field} key", key)
            check_texts(f"{field}.{key}", item)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            check_texts(f"{field}[{index}]", item)


def check_uri(field: str, uri: str) -> None:
    """Also refuse a NUL hidden behind percent-encoding (``file:///a%00b``)."""
    check_text(field, uri, URI_MAX)
    check_text(field, unquote(uri))


def check_int64(field: str, number: int, shown_as: str | None = None) -> None:
    """Refuse a number that PostgreSQL's ``bigint`` cannot hold."""
    if not -INT64_MAX - 1 <= number <= INT64_MAX:
        raise InvalidInput(
            field, shown_as if shown_as is not None else number, f"exceeds {INT64_MAX}"
        )


def check_params(kind: str, params: Mapping[str, Any]) -> None:
    """Check path or query parameters (``kind`` names which) before any handler runs."""
    for name, value in params.items():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str):
                check_text(f"{kind} parameter {name!r}", item)


def actor_for(token_name: str) -> str:
    """The audit actor of a token: ``token:<name>``, cut to `ACTOR_MAX` (tokens made before
    names were capped may have longer names; the cut is deterministic)."""
    return (TOKEN_ACTOR_PREFIX + token_name)[:ACTOR_MAX]
