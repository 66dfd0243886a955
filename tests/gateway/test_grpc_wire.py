"""The protobuf wire fields the gateway reads and writes without decoding tensors, checked
against protobuf's own parser and tritonclient's messages."""

from __future__ import annotations

import pytest
import tritonclient.grpc.service_pb2 as triton

from gateway.errors import BadGatewayRequest
from gateway.grpc import wire
from modelgate.core.proto import inference_pb2 as pb


def infer_request(**fields: str) -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(**fields)
    tensor = message.inputs.add(name="x", datatype="FP32", shape=[1, 300])
    tensor.parameters["binary_data_size"].int64_param = 1200
    message.parameters["priority"].int64_param = 3
    message.raw_input_contents.append(bytes(range(256)) * 5)
    return message


def test_routing_reads_name_version_and_id_skipping_everything_else() -> None:
    message = infer_request(model_name="resnet", model_version=">=1.0 <2 || 3.x", id="é1")
    data = message.SerializeToString()
    assert wire.routing(data) == wire.Routing("resnet", ">=1.0 <2 || 3.x", "é1")
    assert wire.routing(b"") == wire.Routing("", "", "")


def test_the_last_value_wins_as_protobuf_reads_it() -> None:
    data = (
        infer_request(model_name="a", model_version="1").SerializeToString()
        + pb.ModelInferRequest(model_name="b", model_version="^2").SerializeToString()
    )
    parsed = pb.ModelInferRequest.FromString(data)
    assert wire.routing(data) == wire.Routing(parsed.model_name, parsed.model_version, "")
    assert wire.routing(data).model == "b"


def test_renamed_requests_parse_with_the_new_names_and_the_same_tensors() -> None:
    original = infer_request(model_name="m", model_version="^1", id="r")
    data = original.SerializeToString()
    current = wire.routing(data)
    out = wire.renamed(data, current, "remote-m", "1.2.0")
    theirs = triton.ModelInferRequest.FromString(out)
    assert (theirs.model_name, theirs.model_version, theirs.id) == ("remote-m", "1.2.0", "r")
    assert theirs.raw_input_contents == original.raw_input_contents
    assert theirs.inputs[0].parameters["binary_data_size"].int64_param == 1200
    assert out.startswith(data)
    only_version = wire.renamed(data, current, "m", "1.2.0")
    assert len(only_version) == len(data) + 2 + len("1.2.0")
    assert wire.renamed(data, current, "m", "^1") is data  # nothing to change: no copy


def test_stream_frames_parse_as_stream_responses() -> None:
    response = pb.ModelInferResponse(model_name="m", model_version="1.0.0", id="7")
    response.raw_output_contents.append(b"\x00" * 300)
    framed = triton.ModelStreamInferResponse.FromString(
        wire.stream_reply(response.SerializeToString())
    )
    assert framed.error_message == ""
    assert framed.infer_response.model_version == "1.0.0"
    assert framed.infer_response.raw_output_contents[0] == b"\x00" * 300
    error = triton.ModelStreamInferResponse.FromString(wire.stream_error("no 🙂" * 50, "m", "7"))
    assert error.error_message == "no 🙂" * 50
    assert (error.infer_response.model_name, error.infer_response.id) == ("m", "7")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x0a\x05ab", "field 1 runs past the end"),
        (b"\x08\x01", "model_name (field 1) is not a string"),
        (b"\x0a\x02\xff\xfe", "model_name is not UTF-8"),
        (b"\x00", "field number 0"),
        (b"\x3b", "wire type 3"),
        (b"\x20" + b"\xff" * 11, "longer than 10 bytes"),
        (b"\x20\xff", "truncated"),
        (b"\x21\x00", "runs past the end"),
    ],
)
def test_malformed_top_level_fields_are_a_400_naming_what(data: bytes, message: str) -> None:
    with pytest.raises(BadGatewayRequest, match="not a valid protobuf message") as caught:
        wire.routing(data)
    assert message in caught.value.message
