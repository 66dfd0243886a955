"""The publish route's request body as OpenAPI describes it: the handler reads its body
itself (the upload streams into the artifact store), so Litestar cannot see it.

Both forms come from the types that check them: `registry.schemas.PublishByUri` (JSON) and
`registry.schemas.UploadFields` (the form's text fields), so a bound changed there changes
here too.
"""

from __future__ import annotations

from typing import Any

import msgspec

from registry.api._upload import MAX_FIELD_BYTES
from registry.schemas import PublishByUri, UploadFields

__all__ = ["PUBLISH_BODY"]


def _schemas() -> tuple[dict[str, Any], dict[str, Any]]:
    _, found = msgspec.json.schema_components([PublishByUri, UploadFields])
    return found["PublishByUri"], found["UploadFields"]


def _form(fields: dict[str, Any]) -> dict[str, Any]:
    properties = dict(fields["properties"])
    # NOTE: the file part's own name becomes the filename; no form field carries it.
    properties.pop("filename", None)
    properties["labels"] = {
        "type": "string",
        "maxLength": MAX_FIELD_BYTES,
        "description": 'A JSON object of string labels, e.g. {"team": "vision"}.',
    }
    properties["file"] = {
        "type": "string",
        "format": "binary",
        "description": "The ONNX model; its file name is kept as upload:<filename>.",
    }
    return {
        "type": "object",
        "description": "The model file and its version, streamed into the artifact store.",
        "properties": properties,
        "required": ["file", "version"],
    }


def _body() -> dict[str, Any]:
    by_uri, fields = _schemas()
    by_uri = {k: v for k, v in by_uri.items() if k != "title"}
    by_uri["description"] = (
        "A file:// path under the configured import roots, or an http(s):// URL from an "
        "allowed host, with its sha256 (verified)."
    )
    return {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": _form(fields),
                "encoding": {"file": {"contentType": "application/octet-stream"}},
            },
            "application/json": {"schema": by_uri},
        },
    }


#: The OpenAPI Request Body object of ``POST /admin/v1/models/{model}/versions``.
PUBLISH_BODY = _body()
