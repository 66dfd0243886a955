"""Holding the OpenAPI document to what the server really answers.

A `Conformance` records real calls, each under the operation it exercises (method and path
template), and checks each answer against the document at once: the status is one the
operation declares, the JSON body validates against the declared schema (JSON Schema
2020-12, as OpenAPI 3.1 uses), and the declared headers are there (and the tracked ones,
ETag, Retry-After, WWW-Authenticate and the data plane's X-*, are not sent undeclared;
an error need send only the headers marked required).
`Conformance.missing` lists the declared (operation, status) pairs no call has answered.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from jsonschema import Draft202012Validator

#: Headers a response must not carry unless its operation declares them.
TRACKED = {"etag", "retry-after", "www-authenticate", "x-model-version", "x-backend", "x-route"}

Operation = tuple[str, str]  # (METHOD, path template)


class Answer(Protocol):
    """What httpx and Litestar's test client responses share."""

    status_code: int
    content: bytes
    text: str

    @property
    def headers(self) -> Mapping[str, str]: ...


def operations(document: dict[str, Any], prefix: str) -> dict[Operation, dict[str, Any]]:
    """The document's operations whose path starts with ``prefix``."""
    return {
        (method.upper(), path): op
        for path, item in document["paths"].items()
        if path.startswith(prefix)
        for method, op in item.items()
        if method in ("get", "put", "post", "patch", "delete", "head")
    }


@dataclass
class Conformance:
    """Real calls against ``document`` for the operations under ``prefix``."""

    document: dict[str, Any]
    prefix: str
    seen: dict[tuple[str, str, int], int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ops(self) -> dict[Operation, dict[str, Any]]:
        return operations(self.document, self.prefix)

    def declared(self) -> set[tuple[str, str, int]]:
        return {
            (method, path, int(code))
            for (method, path), op in self.ops.items()
            for code in op["responses"]
        }

    def record(self, method: str, path: str, answer: Answer, expect: int | None = None) -> None:
        """Check one real answer of ``METHOD path`` (a template) against the document."""
        label = f"{method} {path} -> {answer.status_code}"
        key = (method, path, answer.status_code)
        self.seen[key] = self.seen.get(key, 0) + 1
        if expect is not None and answer.status_code != expect:
            self.problems.append(f"{label}: the call meant to get {expect}: {answer.text[:300]}")
        op = self.ops.get((method, path))
        if op is None:
            self.problems.append(f"{label}: the document has no such operation")
            return
        response = op["responses"].get(str(answer.status_code))
        if response is None:
            self.problems.append(f"{label}: status not declared: {answer.text[:300]}")
            return
        self._check_headers(label, response, answer)
        self._check_body(label, response, answer)

    def _check_headers(self, label: str, response: dict[str, Any], answer: Answer) -> None:
        headers = response.get("headers", {})
        declared = {name.lower() for name in headers}
        # NOTE: a success sends every header it declares; an error, those marked required.
        success = answer.status_code < 400
        needed = {n.lower() for n, h in headers.items() if success or h.get("required")}
        sent = {name.lower() for name in answer.headers}
        for name in sorted(needed - sent - {"inference-header-content-length"}):
            self.problems.append(f"{label}: declared header {name} was not sent")
        for name in sorted((sent & TRACKED) - declared):
            self.problems.append(f"{label}: header {name} was sent but is not declared")

    def _check_body(self, label: str, response: dict[str, Any], answer: Answer) -> None:
        content = response.get("content")
        kind = answer.headers.get("content-type", "").split(";")[0].strip()
        if not content:
            if answer.content:
                self.problems.append(f"{label}: a body was sent where none is declared")
            return
        if kind not in content:
            self.problems.append(f"{label}: content type {kind!r} not declared ({list(content)})")
            return
        if kind != "application/json":
            return
        schema = content[kind].get("schema", {})
        # NOTE: "#/components/..." references resolve inside the validated schema's root.
        root = {**schema, "components": self.document.get("components", {})}
        validator = Draft202012Validator(root, format_checker=Draft202012Validator.FORMAT_CHECKER)
        errors = list(validator.iter_errors(json.loads(answer.content)))
        for error in errors[:3]:
            self.problems.append(
                f"{label}: body {answer.text[:200]} does not match: {error.message}"
            )

    def missing(self) -> list[str]:
        got = set(self.seen)
        return sorted(f"{m} {p} -> {s}" for m, p, s in self.declared() - got)

    def report(self, skip: Iterable[tuple[str, str]] = ()) -> list[str]:
        """Every problem, then every declared status no call got (``skip``: operations left
        out of the coverage check)."""
        skipped = set(skip)
        absent = [
            f"declared but no call answered it: {line}"
            for line in self.missing()
            if tuple(line.split(" -> ")[0].split(" ", 1)) not in skipped
        ]
        return [*self.problems, *absent]
