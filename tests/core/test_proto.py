"""The committed gRPC messages match inference.proto, and speak Triton's wire format."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import tritonclient.grpc.service_pb2 as triton

from modelgate.core.proto import inference_pb2 as pb
from modelgate.core.proto.service import METHODS, path

ROOT = Path(__file__).resolve().parents[2]
PROTO = "modelgate/core/proto/inference.proto"


def test_generated_modules_are_up_to_date(tmp_path: Path) -> None:
    (tmp_path / "modelgate/core/proto").mkdir(parents=True)
    shutil.copy(ROOT / PROTO, tmp_path / PROTO)
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I", ".", "--python_out=.", "--pyi_out=.",
         PROTO],
        cwd=tmp_path,
        check=True,
    )  # fmt: skip
    for suffix in ("_pb2.py", "_pb2.pyi"):
        name = f"modelgate/core/proto/inference{suffix}"
        assert (tmp_path / name).read_text() == (ROOT / name).read_text(), f"run make proto: {name}"


def test_messages_round_trip_through_tritons_own() -> None:
    ours = pb.ModelInferRequest(model_name="m", model_version="^1.2", id="r1")
    tensor = ours.inputs.add(name="x", datatype="FP32", shape=[1, 2])
    tensor.parameters["binary_data_size"].int64_param = 8
    ours.raw_input_contents.append(b"\0" * 8)
    theirs = triton.ModelInferRequest.FromString(ours.SerializeToString())
    assert (theirs.model_name, theirs.model_version, theirs.id) == ("m", "^1.2", "r1")
    assert list(theirs.inputs[0].shape) == [1, 2]
    assert theirs.inputs[0].parameters["binary_data_size"].int64_param == 8
    config = pb.ModelConfigResponse()
    config.config.name = "m"
    config.config.max_batch_size = 8
    config.config.input.add(name="x", data_type=pb.TYPE_FP32, dims=[-1, 4])
    config.config.dynamic_batching.max_queue_delay_microseconds = 500
    back = triton.ModelConfigResponse.FromString(config.SerializeToString())
    assert back.config.input[0].data_type == triton.model__config__pb2.TYPE_FP32
    assert back.config.dynamic_batching.max_queue_delay_microseconds == 500


def test_every_call_has_tritons_path() -> None:
    assert path("ModelInfer") == "/inference.GRPCInferenceService/ModelInfer"
    service = triton.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    for name, method in METHODS.items():
        theirs = service.methods_by_name[name]
        assert theirs.input_type.name == method.request.DESCRIPTOR.name
        assert theirs.output_type.name == method.response.DESCRIPTOR.name
        assert theirs.server_streaming == method.streaming


def test_status_codes_map_both_ways() -> None:
    import grpc

    from modelgate.core.proto.status import grpc_code, http_status

    for status in (400, 401, 403, 404, 429, 503, 504):
        assert http_status(grpc_code(status)) == status
    assert grpc_code(418) is grpc.StatusCode.INVALID_ARGUMENT
    assert grpc_code(500) is grpc.StatusCode.INTERNAL
    assert http_status(grpc.StatusCode.INTERNAL) == 500
    assert http_status(grpc.StatusCode.UNKNOWN) == 500
