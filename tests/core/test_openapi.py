"""`modelgate.core.openapi`: a route's documented errors are what its layers declare, each
with the one error body and the headers its classes send; Litestar's own made-up error
responses are gone; a declared request body and extra paths are merged in."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Litestar, Router, get, post
from litestar.params import FromPath
from litestar.testing import TestClient

from modelgate.core.apidocs import openapi_config
from modelgate.core.errors import BodyTooLarge, ModelgateError
from modelgate.core.openapi import (
    ERROR_SCHEMA,
    RAISES,
    REQUEST_BODY,
    Answer,
    Document,
    error_responses,
)


class Gone(ModelgateError):
    """The thing is gone.

    Second paragraph, left out of the description."""

    status_code = 410


class Busy(ModelgateError):
    status_code = 503
    headers = {"Retry-After": "3"}


class Locked(ModelgateError):
    status_code = 503


class Things(Controller):
    path = "/things"
    opt = {RAISES: (Gone,)}

    @get("/{name:str}", opt={RAISES: (Busy, Locked)})
    async def show(self, name: FromPath[str]) -> dict[str, str]:
        return {"name": name}

    @post("/", opt={REQUEST_BODY: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
    async def make(self) -> None:
        return None


def _document() -> dict[str, Any]:
    extra = {"/raw": {"get": {"responses": {"200": {"description": "ok"}}}}}
    document = Document(paths=lambda: extra, components=lambda: {"Raw": {"type": "string"}})
    router = Router("/api", route_handlers=[Things], opt={RAISES: (BodyTooLarge,)})
    app = Litestar([router], openapi_config=openapi_config("t", "1", document))
    with TestClient(app) as client:
        doc: dict[str, Any] = client.get("/schema/openapi.json").json()
    return doc


def test_each_route_documents_the_union_of_its_layers_errors() -> None:
    doc = _document()
    show = doc["paths"]["/api/things/{name}"]["get"]["responses"]
    assert sorted(show) == ["200", "410", "413", "503"]  # Litestar's own 400 is gone
    for code in ("410", "413", "503"):
        schema = show[code]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/Error"}
    assert doc["components"]["schemas"]["Error"] == ERROR_SCHEMA
    assert show["410"]["description"] == "Gone: The thing is gone"
    assert show["503"]["description"] == "Busy; Locked"
    # Retry-After is documented, but not required: Locked does not send it.
    assert show["503"]["headers"]["Retry-After"]["required"] is False
    make = doc["paths"]["/api/things"]["post"]
    assert sorted(make["responses"]) == ["201", "410", "413"]
    assert make["requestBody"] == {"content": {"text/plain": {"schema": {"type": "string"}}}}
    assert doc["paths"]["/raw"] == {"get": {"responses": {"200": {"description": "ok"}}}}
    assert doc["components"]["schemas"]["Raw"] == {"type": "string"}


def test_an_answer_stands_for_a_passed_through_status() -> None:
    out = error_responses([Answer(502, "Upstream said no.", {"X-Up": ""}), Busy])
    assert sorted(out) == ["502", "503"]
    assert out["502"]["description"] == "Upstream said no."
    assert out["502"]["headers"]["X-Up"]["required"] is True
    assert out["503"]["headers"]["Retry-After"]["required"] is True
