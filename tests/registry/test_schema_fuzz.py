"""Schemathesis over the admin API's OpenAPI document, against a running server: no 5xx.

Bounded: a fixed number of examples per operation. ``make fuzz`` runs it with more.
"""

from __future__ import annotations

import os

import httpx
import pytest
import schemathesis
from conftest import onnx_bytes
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

EXAMPLES = int(os.environ.get("MODELGATE_FUZZ_EXAMPLES", "25"))


@pytest.fixture(scope="module")
def seeded(live_gateway: tuple[str, str]) -> tuple[str, str]:
    base, token = live_gateway
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as client:
        client.post("/admin/v1/models", json={"name": "fuzzed"})
        for version in ("1.0.0", "2.0.0-rc.1"):
            files = {"file": ("m.onnx", onnx_bytes(), "application/octet-stream")}
            client.post("/admin/v1/models/fuzzed/versions", data={"version": version}, files=files)
    return base, token


@pytest.fixture(scope="module")
def admin_schema(seeded: tuple[str, str]) -> schemathesis.BaseSchema:
    base, _ = seeded
    loaded = schemathesis.openapi.from_url(f"{base}/schema/openapi.json")
    loaded.config.update(base_url=base)
    return loaded


# NOTE: schemathesis's own pytest plugin does not run on pytest 9, so each operation's
# Hypothesis strategy is driven directly here.
@pytest.mark.fuzz
def test_no_server_errors(admin_schema: schemathesis.BaseSchema, seeded: tuple[str, str]) -> None:
    base, token = seeded
    headers = {"Authorization": f"Bearer {token}"}
    operations = [result.ok() for result in admin_schema.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(base_url=base, headers=headers, checks=[not_a_server_error])

        check()
