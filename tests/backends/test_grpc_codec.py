"""The gRPC tensor codec: raw and typed contents of every datatype, the REST codec's
limits and messages for the same faults, and responses tritonclient.grpc reads back."""

from __future__ import annotations

import json
from typing import Any

import ml_dtypes
import numpy as np
import pytest
import tritonclient.grpc as tgrpc
from tritonclient.grpc import service_pb2

from backends.codec import decode_request, tensor_bytes
from backends.errors import InvalidRequest, InvalidTensor, Unsupported
from backends.grpc_codec import CONTENTS_FIELD, decode_infer, encode_infer
from backends.limits import RequestLimits
from backends.signature import NUMPY_DTYPES
from modelgate.core.proto import inference_pb2 as pb

LIMITS = RequestLimits(max_elements=1000)

ARRAYS: dict[str, np.ndarray] = {
    "BOOL": np.array([[True, False], [False, True]]),
    "UINT8": np.array([[0, 255], [1, 2]], np.uint8),
    "UINT16": np.array([[0, 65535], [1, 2]], np.uint16),
    "UINT32": np.array([[0, 2**32 - 1], [1, 2]], np.uint32),
    "UINT64": np.array([[0, 2**64 - 1], [1, 2]], np.uint64),
    "INT8": np.array([[-128, 127], [0, 1]], np.int8),
    "INT16": np.array([[-(2**15), 2**15 - 1], [0, 1]], np.int16),
    "INT32": np.array([[-(2**31), 2**31 - 1], [0, 1]], np.int32),
    "INT64": np.array([[-(2**63), 2**63 - 1], [0, 1]], np.int64),
    "FP16": np.array([[0.5, -1], [2, 65504]], np.float16),
    "FP32": np.array([[1.5, -2], [0, 3.25]], np.float32),
    "FP64": np.array([[0.1, 0.2], [0.3, 1e300]], np.float64),
    "BF16": np.array([[1.5, -2], [0.25, 1024]], ml_dtypes.bfloat16),
    "BYTES": np.array([[b"a", "bé".encode()], [b"", b"\xff\x00"]], dtype=object),
}


def request(*tensors: tuple[str, str, list[int]], raw: list[bytes] | None = None,
            **fields: Any) -> pb.ModelInferRequest:  # fmt: skip
    message = pb.ModelInferRequest(model_name="m", raw_input_contents=raw or [], **fields)
    for name, datatype, shape in tensors:
        message.inputs.add(name=name, datatype=datatype, shape=shape)
    return message


def rest_error(item: dict[str, Any]) -> str:
    """The REST codec's message for the same tensor (JSON data, or binary when it has none)."""
    with pytest.raises(InvalidRequest) as caught:
        decode_request(json.dumps({"inputs": [item]}).encode(), None, LIMITS)
    return caught.value.message


def grpc_error(message: pb.ModelInferRequest, error: type[Exception] = InvalidRequest) -> str:
    with pytest.raises(error) as caught:
        decode_infer(message, LIMITS)
    assert isinstance(caught.value, InvalidRequest)
    return caught.value.message


@pytest.mark.parametrize("datatype", list(ARRAYS))
def test_raw_contents_of_every_datatype(datatype: str) -> None:
    array = ARRAYS[datatype]
    decoded = decode_infer(request(("x", datatype, [2, 2]), raw=[tensor_bytes(array, datatype)]),
                           LIMITS)  # fmt: skip
    got = decoded.inputs["x"]
    assert got.dtype == NUMPY_DTYPES[datatype]
    np.testing.assert_array_equal(got, array)


@pytest.mark.parametrize("datatype", [d for d in ARRAYS if d in CONTENTS_FIELD])
def test_typed_contents_of_every_datatype_that_has_them(datatype: str) -> None:
    array = ARRAYS[datatype]
    message = request(("x", datatype, [2, 2]))
    getattr(message.inputs[0].contents, CONTENTS_FIELD[datatype]).extend(array.ravel().tolist())
    got = decode_infer(message, LIMITS).inputs["x"]
    assert got.dtype == NUMPY_DTYPES[datatype]
    np.testing.assert_array_equal(got, array)


def test_tritonclient_requests_decode_off_the_wire() -> None:
    """A request built with tritonclient.grpc's own messages parses as ours (same wire)."""
    theirs = service_pb2.ModelInferRequest(model_name="m", model_version="1.0.0", id="r-7")
    theirs.inputs.add(name="x", datatype="FP16", shape=[2, 2])
    theirs.outputs.add(name="y")
    theirs.raw_input_contents.append(ARRAYS["FP16"].tobytes())
    ours = pb.ModelInferRequest.FromString(theirs.SerializeToString())
    decoded = decode_infer(ours, LIMITS)
    np.testing.assert_array_equal(decoded.inputs["x"], ARRAYS["FP16"])
    assert (decoded.id, decoded.outputs) == ("r-7", ["y"])


def test_empty_tensor_needs_no_contents_and_request_fields_carry_over() -> None:
    message = request(("x", "FP32", [0, 4]), id="abc")
    message.parameters["priority"].int64_param = 3
    message.outputs.add(name="b")
    message.outputs.add(name="a")
    decoded = decode_infer(message, LIMITS)
    assert decoded.inputs["x"].shape == (0, 4)
    assert decoded.id == "abc"
    assert decoded.parameters == {"priority": 3}
    assert decoded.outputs == ["b", "a"]
    assert decode_infer(request(("x", "FP32", [0])), LIMITS).outputs is None


@pytest.mark.parametrize(
    ("shape", "datatype"),
    [([2, -1], "FP32"), ([1] * 33, "FP32"), ([1001], "FP32"), ([2, 2], "FP8"), ([2], "fp32")],
)
def test_shape_and_datatype_faults_say_what_rest_says(shape: list[int], datatype: str) -> None:
    expected = rest_error({"name": "x", "shape": shape, "datatype": datatype, "data": [1]})
    assert grpc_error(request(("x", datatype, shape), raw=[b""])) == expected


def test_range_faults_in_typed_contents_say_what_rest_says() -> None:
    message = request(("x", "INT8", [2]))
    message.inputs[0].contents.int_contents.extend([1, 300])
    expected = rest_error({"name": "x", "shape": [2], "datatype": "INT8", "data": [1, 300]})
    assert grpc_error(message, InvalidTensor) == expected
    assert "value 300 is out of range for INT8 [-128, 127]" in expected


@pytest.mark.parametrize(
    ("message", "text"),
    [
        (pb.ModelInferRequest(model_name="m"), "request has no inputs"),
        (request(("x", "FP32", [2]), raw=[b"\0" * 7]),
         'input "x": raw_input_contents[0] is 7 bytes but FP32 shape [2] needs 8'),
        (request(("x", "FP32", [1]), ("y", "FP32", [1]), raw=[b"\0" * 4]),
         "request has 1 raw_input_contents for 2 inputs (give one per input, in order, or none)"),
        (request(("x", "FP32", [1]), ("x", "FP32", [1]), raw=[b"\0" * 4] * 2),
         'input "x" appears more than once'),
        (request(("x", "FP32", [2])), 'input "x" has neither contents nor raw_input_contents'),
        (request(("x", "BYTES", [1]), raw=[b"\x05\0\0\0ab"]),
         'input "x": BYTES element 0 declares 5 bytes but only 2 remain'),
        (request(("x", "BOOL", [1]), raw=[b"\x02"]), 'input "x": BOOL bytes must be 0 or 1'),
    ],
)  # fmt: skip
def test_framing_faults_name_the_tensor(message: pb.ModelInferRequest, text: str) -> None:
    assert grpc_error(message) == text


def test_contents_in_the_wrong_field_or_beside_raw_are_refused() -> None:
    wrong = request(("x", "FP32", [1]))
    wrong.inputs[0].contents.int_contents.append(1)
    assert grpc_error(wrong) == (
        'input "x": FP32 data goes in fp32_contents or raw_input_contents, not int_contents'
    )
    half = request(("x", "FP16", [1]))
    half.inputs[0].contents.fp32_contents.append(1.0)
    assert grpc_error(half) == 'input "x": FP16 data goes in raw_input_contents, not fp32_contents'
    both = request(("x", "FP32", [1]), raw=[b"\0" * 4])
    both.inputs[0].contents.fp32_contents.append(1.0)
    assert grpc_error(both) == 'input "x" has both contents and raw_input_contents'
    short = request(("x", "BYTES", [2]))
    short.inputs[0].contents.bytes_contents.append(b"a")
    assert grpc_error(short) == 'input "x": contents has 1 elements but shape [2] needs 2'


def test_requested_outputs_once_each_and_no_classification() -> None:
    twice = request(("x", "FP32", [0]))
    twice.outputs.add(name="y")
    twice.outputs.add(name="y")
    assert grpc_error(twice) == 'output "y" is requested more than once'
    classify = request(("x", "FP32", [0]))
    classify.outputs.add(name="y").parameters["classification"].int64_param = 2
    assert grpc_error(classify, Unsupported).startswith('output "y" asks for classification')


def test_responses_carry_raw_outputs_that_tritonclient_reads() -> None:
    outputs = [("text", ARRAYS["BYTES"], False), ("half", ARRAYS["FP16"], True)]
    ours = encode_infer("m", "2.0.0+b.1", "r-1", outputs)
    theirs = service_pb2.ModelInferResponse.FromString(ours.SerializeToString())
    result = tgrpc.InferResult(theirs)
    np.testing.assert_array_equal(result.as_numpy("text"), ARRAYS["BYTES"])
    np.testing.assert_array_equal(result.as_numpy("half"), ARRAYS["FP16"])
    assert (theirs.model_name, theirs.model_version, theirs.id) == ("m", "2.0.0+b.1", "r-1")
    assert [o.datatype for o in theirs.outputs] == ["BYTES", "FP16"]
    assert encode_infer("m", "1.0.0", None, []).id == ""
