"""Acceptance 3, logs: with ``MODELGATE_LOG_FORMAT=json`` every line a real gateway and
its workers write parses as JSON, from start-up to shutdown, through accepted, refused and
retried requests and an ejection; a request id goes from the client to the gateway's access
line and the worker's, and comes back on the answer, over HTTP and gRPC.

One deployment on SQLite (no Redis): the gateway and two workers serving HTTP and gRPC;
``w2`` fails every inference (a 500), which the gateway retries on ``w1`` (``5xx`` in
``retry_on``) and, after two in a row, ejects for a second.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np

from modelgate.core.proto import inference_pb2 as pb
from tests.support.fleet import Fleet, infer_json, wait_until

INFER = "/v2/models/m/infer"
HEX_ID = re.compile(r"[0-9a-f]{32}")
GATEWAY_ENV = {
    "MODELGATE_GATEWAY_RETRY_ON": "connect-failure,reset,unavailable,timeout,unready,5xx",
    "MODELGATE_GATEWAY_STRATEGY": "round_robin",
    "MODELGATE_GATEWAY_CONSECUTIVE_FAILURES": "2",
    "MODELGATE_GATEWAY_FAILURE_PERCENTAGE_THRESHOLD": "0",
    "MODELGATE_GATEWAY_MAX_EJECTED_FRACTION": "0.5",
    "MODELGATE_GATEWAY_PANIC_THRESHOLD": "0",
    "MODELGATE_GATEWAY_SLOW_START_S": "0",
    "MODELGATE_GATEWAY_BASE_EJECTION_S": "1",
}


def lines(path: Path) -> list[dict[str, Any]]:
    """Every line of ``path`` as JSON; fails naming the first line that is not."""
    docs = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        try:
            doc = json.loads(line)
        except ValueError:
            raise AssertionError(f"{path.name} line {number} is not JSON: {line!r}") from None
        assert isinstance(doc, dict), f"{path.name} line {number}: {line!r}"
        assert {"ts", "level", "logger", "msg"} <= doc.keys(), f"{path.name}:{number} {line}"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", doc["ts"]), doc
        docs.append(doc)
    return docs


def access(path: Path, logger: str = "modelgate.access") -> list[dict[str, Any]]:
    """The access lines of a log (lines that are not JSON are skipped until the end)."""
    found = []
    for line in path.read_text().splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if doc.get("logger") == logger:
            found.append(doc)
    return found


def one(docs: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    matches = [d for d in docs if all(d.get(k) == v for k, v in fields.items())]
    assert len(matches) == 1, (fields, matches)
    return matches[0]


def grpc_infer(target: str, request_id: str) -> tuple[dict[str, str], dict[str, str]]:
    """One ModelInfer through the gateway with ``request_id``: its initial and trailing
    metadata."""
    message = pb.ModelInferRequest(model_name="m", model_version="1.0.0")
    message.inputs.add(name="input", datatype="FP32", shape=[1, 4])
    message.raw_input_contents.append(np.ones((1, 4), dtype=np.float32).tobytes())
    with grpc.insecure_channel(target) as channel:
        infer = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=pb.ModelInferResponse.FromString,
        )
        _, call = infer.with_call(message, metadata=(("x-request-id", request_id),), timeout=30)
        return dict(call.initial_metadata()), dict(call.trailing_metadata())


def test_every_line_is_json_and_a_request_id_crosses_the_fleet(tmp_path: Path) -> None:
    fleet = Fleet(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}", None)
    fleet.env["MODELGATE_LOG_FORMAT"] = "json"
    gateway_log = tmp_path / "gateway.log"
    try:
        fleet.start_gateway(grpc=True, log=gateway_log, **GATEWAY_ENV)
        fleet.publish("m", {"1.0.0": 2.0})
        fleet.start_worker("w1", ["m@1.0.0"], None, grpc=True)
        fleet.start_worker("w2", ["m@1.0.0"], None, "--fault-error-rate", "1", grpc=True)
        fleet.wait_serving("m", "1.0.0", workers=2)
        with httpx.Client(base_url=fleet.gateway_url, timeout=30) as client:
            sent = client.post(INFER, json=infer_json(), headers={"X-Request-Id": "client-1"})
            assert (sent.status_code, sent.headers["x-request-id"]) == (200, "client-1")
            backend = sent.headers["x-backend"]
            made = client.post(INFER, json=infer_json())
            assert HEX_ID.fullmatch(made.headers["x-request-id"]), made.headers
            replaced = client.post(INFER, json=infer_json(), headers={"X-Request-Id": "x" * 129})
            assert HEX_ID.fullmatch(replaced.headers["x-request-id"]), replaced.headers
            unknown = client.post("/v2/models/nope/infer", json=infer_json())
            bad = client.post(
                "/v2/models/m/infer", json=infer_json(), headers={"X-Model-Version": "^^1"}
            )
            assert (unknown.status_code, bad.status_code) == (404, 400)
            assert HEX_ID.fullmatch(unknown.headers["x-request-id"])

            def events(*names: str) -> bool:
                assert client.post(INFER, json=infer_json()).status_code == 200
                text = gateway_log.read_text()
                return all(f'"event":"{name}"' in text for name in names)

            wait_until(lambda: events("worker.ejected", "worker.readmitted"), "w2 ejected, back")
        initial, trailing = grpc_infer(fleet.gateway_grpc, "grpc-1")
        assert initial["x-request-id"] == trailing["x-request-id"] == "grpc-1"
        wait_until(
            lambda: any(d["request_id"] == "grpc-1" for d in access(gateway_log)),
            "the gRPC request's access line",
        )
    finally:
        fleet.stop()

    gateway = lines(gateway_log)
    workers = {w: lines(tmp_path / f"{w}.log") for w in ("w1", "w2")}
    served = one(gateway, logger="modelgate.access", request_id="client-1")
    assert served | {"duration_ms": 0} == served | {
        "protocol": "http",
        "model": "m",
        "reference": None,
        "version": "1.0.0",
        "arm": served["arm"],
        "worker": backend,
        "status": 200,
        "duration_ms": 0,
        "error": None,
    }
    worker_line = one(workers[backend], logger="modelgate.worker.access", request_id="client-1")
    assert (worker_line["model"], worker_line["version"], worker_line["status"]) == (
        "m",
        "1.0.0",
        200,
    )
    assert worker_line["batch_size"] >= 1
    for rid, status in (
        (made.headers["x-request-id"], 200),
        (unknown.headers["x-request-id"], 404),
        (bad.headers["x-request-id"], 400),
    ):
        assert one(gateway, logger="modelgate.access", request_id=rid)["status"] == status
    assert "^^1" in one(gateway, logger="modelgate.access", status=400)["reference"]
    retried = [d for d in gateway if d["logger"] == "modelgate.access" and d["retries"] == 1]
    assert retried
    assert all(d["status"] == 200 and d["worker"] == "w1" for d in retried)
    assert any(d["status"] == 500 for d in workers["w2"] if d["logger"].endswith(".access"))
    ejected = [d for d in gateway if d.get("event") == "worker.ejected"]
    assert ejected[0]["worker"] == "w2"
    assert ejected[0]["reason"]
    grpc_line = one(gateway, logger="modelgate.access", request_id="grpc-1")
    assert (grpc_line["protocol"], grpc_line["status"]) == ("grpc", 200)
    grpc_worker = [
        w for w, docs in workers.items() if any(d.get("request_id") == "grpc-1" for d in docs)
    ]
    assert grpc_worker, "no worker logged the gRPC request's id"
    # uvicorn's own lines, start-up to shutdown, went through the same configuration
    uvicorn = [d["msg"] for d in gateway if d["logger"].startswith("uvicorn")]
    assert any("startup complete" in m for m in uvicorn), uvicorn
    assert any("Finished server process" in m for m in uvicorn), uvicorn
