"""Answers of external OIP servers, renamed to the names the client asked the gateway by.

An external server (Triton, MLServer, KServe) names a model and version as it knows them
(its ``remote_model``, and whatever version it reports, or none); the client sees the
modelgate model and the concrete version, as a modelgate worker's answer would say them
(DESIGN: "the OIP body's ``model_version`` is the concrete version"). Only a 200 whose JSON
is an object is touched: the whole body, or the JSON header of the binary tensor extension,
whose ``Inference-Header-Content-Length`` is rewritten to match. A gzip or deflate answer is
inflated to be renamed and passed on uncompressed. Anything else passes unchanged.

NOTE: this decodes and re-encodes the JSON, which the gateway never does for its own
workers: it runs only for replies from a worker in `RoutingTable.external`.
"""

from __future__ import annotations

import zlib
from typing import Any

import msgspec

from gateway.forward import Reply

__all__ = ["rename_infer", "rename_metadata"]

_HEADER_LENGTH = b"inference-header-content-length"
_ENCODING = b"content-encoding"


def rename_infer(reply: Reply, model: str, version: str) -> Reply:
    """An inference answer with ``model_name`` and ``model_version`` set to ours."""
    return _rename(reply, {"model_name": model, "model_version": version})


def rename_metadata(reply: Reply, model: str, version: str) -> Reply:
    """A model metadata answer with ``name`` and ``versions`` set to ours."""
    return _rename(reply, {"name": model, "versions": [version]})


def _inflate(body: bytes, encoding: bytes) -> bytes | None:
    try:
        # NOTE: 47 reads a gzip or a zlib stream; some servers send raw deflate for
        # "deflate", hence the second try.
        return zlib.decompress(body, 47)
    except zlib.error:
        if encoding != b"deflate":
            return None
    try:
        return zlib.decompress(body, -15)
    except zlib.error:
        return None


def _rename(reply: Reply, fields: dict[str, Any]) -> Reply:
    if reply.status != 200:
        return reply
    headers = dict(reply.headers)
    body: bytes | None = reply.body
    encoding = headers.get(_ENCODING, b"").strip().lower()
    if encoding in (b"gzip", b"deflate"):
        body = _inflate(reply.body, encoding)
    elif encoding not in (b"", b"identity"):
        return reply
    if body is None:
        return reply
    try:
        split = int(headers[_HEADER_LENGTH]) if _HEADER_LENGTH in headers else len(body)
        doc = msgspec.json.decode(body[:split])
    except (ValueError, msgspec.DecodeError):
        return reply
    if not isinstance(doc, dict) or not 0 <= split <= len(body):
        return reply
    doc.update(fields)
    head = msgspec.json.encode(doc)
    kept = [(k, v) for k, v in reply.headers if k not in (_ENCODING, _HEADER_LENGTH)]
    if _HEADER_LENGTH in headers:
        kept.append((_HEADER_LENGTH, str(len(head)).encode()))
    return Reply(reply.status, kept, head + body[split:])
