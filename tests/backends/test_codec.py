"""The wire codec: JSON and binary tensors both ways, and a precise 400 for each bad body."""

from __future__ import annotations

import json
import struct
from typing import Any

import ml_dtypes
import numpy as np
import pytest
import tritonclient.http as triton
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from backends.codec import decode_request, encode_response, serialize_bytes
from backends.errors import InvalidRequest, InvalidTensor, Unsupported
from backends.signature import Signature, TensorSpec


def body(*inputs: dict[str, Any], **extra: Any) -> bytes:
    return json.dumps({"inputs": list(inputs), **extra}).encode()


def tensor(name: str = "x", shape: list[int] | None = None, datatype: str = "FP32",
           **fields: Any) -> dict[str, Any]:  # fmt: skip
    return {"name": name, "shape": [2, 2] if shape is None else shape, "datatype": datatype,
            **fields}  # fmt: skip


def binary_body(inputs: list[tuple[dict[str, Any], bytes]], **extra: Any) -> tuple[bytes, str]:
    head = json.dumps({"inputs": [t for t, _ in inputs], **extra}).encode()
    return head + b"".join(raw for _, raw in inputs), str(len(head))


# -- decoding JSON -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("datatype", "data", "expected"),
    [
        ("FP32", [1, 2.5, -3, 4], np.array([[1, 2.5], [-3, 4]], np.float32)),
        ("FP32", [[1, 2.5], [-3, 4]], np.array([[1, 2.5], [-3, 4]], np.float32)),
        ("FP64", [0.1, 0.2, 0.3, 0.4], np.array([[0.1, 0.2], [0.3, 0.4]])),
        ("FP16", [1, 2, 3, 65504], np.array([[1, 2], [3, 65504]], np.float16)),
        ("BF16", [1, 2, 3, 0.5], np.array([[1, 2], [3, 0.5]], ml_dtypes.bfloat16)),
        ("INT8", [-128, 127, 0, 1], np.array([[-128, 127], [0, 1]], np.int8)),
        ("INT64", [2**62, -(2**62), 0, 1], np.array([[2**62, -(2**62)], [0, 1]], np.int64)),
        ("UINT8", [0, 255, 1, 2], np.array([[0, 255], [1, 2]], np.uint8)),
        ("UINT64", [2**64 - 1, 0, 1, 2], np.array([[2**64 - 1, 0], [1, 2]], np.uint64)),
        ("INT32", [1.0, 2.0, 3.0, 4.0], np.array([[1, 2], [3, 4]], np.int32)),
        ("BOOL", [True, False, False, True], np.array([[True, False], [False, True]])),
        ("BYTES", ["a", "bé", "", "d"], np.array([[b"a", "bé".encode()], [b"", b"d"]], object)),
        ("BYTES", [["a", "b"], ["c", "d"]], np.array([[b"a", b"b"], [b"c", b"d"]], object)),
    ],
)
def test_json_data_flat_or_nested(datatype: str, data: list[Any], expected: np.ndarray) -> None:
    decoded = decode_request(body(tensor(datatype=datatype, data=data)))
    array = decoded.inputs["x"]
    assert array.dtype == expected.dtype
    assert array.shape == (2, 2)
    np.testing.assert_array_equal(array, expected)


def test_empty_tensor_and_request_fields() -> None:
    outputs = [{"name": "y", "parameters": {"binary_data": False}}, {"name": "z"}]
    raw = body(tensor(shape=[0, 3], data=[]), id="r1", parameters={"binary_data_output": True},
               outputs=outputs)  # fmt: skip
    decoded = decode_request(raw)
    assert decoded.inputs["x"].shape == (0, 3)
    assert decoded.id == "r1"
    assert decoded.outputs == ["y", "z"]
    assert not decoded.wants_binary("y")
    assert decoded.wants_binary("z")
    assert decoded.wants_binary("not-listed")


def test_outputs_default_to_json_and_all() -> None:
    decoded = decode_request(body(tensor(data=[1, 2, 3, 4])))
    assert decoded.outputs is None
    assert not decoded.wants_binary("y")


# -- decoding binary -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("datatype", "array"),
    [
        ("FP32", np.arange(6, dtype=np.float32).reshape(2, 3)),
        ("FP16", np.arange(6, dtype=np.float16).reshape(2, 3)),
        ("FP64", np.arange(6, dtype=np.float64).reshape(2, 3)),
        ("BF16", np.arange(6).astype(ml_dtypes.bfloat16).reshape(2, 3)),
        ("INT16", np.arange(-3, 3, dtype=np.int16).reshape(2, 3)),
        ("UINT32", np.arange(6, dtype=np.uint32).reshape(2, 3)),
        ("BOOL", np.array([[True, False, True], [False, True, False]])),
    ],
)
def test_binary_fixed_size(datatype: str, array: np.ndarray) -> None:
    raw = array.tobytes()
    params = {"binary_data_size": len(raw)}
    data, length = binary_body([(tensor(shape=[2, 3], datatype=datatype, parameters=params), raw)])
    decoded = decode_request(data, length)
    assert decoded.inputs["x"].dtype == array.dtype
    np.testing.assert_array_equal(decoded.inputs["x"], array)


def test_binary_bytes_and_mixed_json_inputs_in_order() -> None:
    words = np.array([b"", b"\xff\x00raw", "ü".encode()], dtype=object)
    first = np.array([1.5, 2.5], dtype=np.float32).tobytes()
    second = serialize_bytes(words)
    data, length = binary_body([
        (tensor("a", [2], parameters={"binary_data_size": len(first)}), first),
        (tensor("b", [1], "INT32", data=[7]), b""),
        (tensor("c", [3], "BYTES", parameters={"binary_data_size": len(second)}), second),
    ])  # fmt: skip
    decoded = decode_request(data, length)
    np.testing.assert_array_equal(decoded.inputs["a"], [1.5, 2.5])
    np.testing.assert_array_equal(decoded.inputs["b"], [7])
    assert list(decoded.inputs["c"]) == list(words)


# -- errors name the problem ---------------------------------------------------------------


def _framed(
    inputs: list[tuple[dict[str, Any], bytes]], header: bool = True
) -> tuple[bytes, str | None]:
    data, length = binary_body(inputs)
    return data, (length if header else None)


def _fp32(n: int, size: int | None = None) -> tuple[dict[str, Any], bytes]:
    raw = np.zeros(n, np.float32).tobytes()
    size = len(raw) if size is None else size
    return tensor(shape=[n], parameters={"binary_data_size": size}), raw


def _bytes(shape: list[int], size: int, raw: bytes) -> tuple[bytes, str | None]:
    params = {"binary_data_size": size}
    return _framed([(tensor(shape=shape, datatype="BYTES", parameters=params), raw)])


def case(name: str, framed: tuple[bytes, str | None] | bytes, error: type[Exception],
         message: str) -> Any:  # fmt: skip
    data, header = framed if isinstance(framed, tuple) else (framed, None)
    return pytest.param(data, header, error, message, id=name)


FOUR = [1, 2, 3, 4]
BOOL2 = tensor(shape=[2], datatype="BOOL", parameters={"binary_data_size": 2})
CLASSIFY = [{"name": "y", "parameters": {"classification": 3}}]
BAD = [
    case("empty body", b"", InvalidRequest, "empty request body"),
    case("invalid JSON", b"{nope", InvalidRequest, "invalid JSON"),
    case("not an object", b"[1, 2]", InvalidRequest, "invalid inference request"),
    case("inputs missing", b"{}", InvalidRequest, "missing required field `inputs`"),
    case("no inputs", body(), InvalidRequest, "request has no inputs"),
    case("shape not ints", body(tensor(shape=["a"], data=[1])), InvalidRequest,
         "$.inputs[0].shape[0]"),
    case("duplicate input", body(tensor(data=FOUR), tensor(data=FOUR)), InvalidTensor,
         'input "x" appears more than once'),
    case("unknown datatype", body(tensor(datatype="FLOAT32", data=[1])), InvalidTensor,
         'unknown datatype "FLOAT32" (use one of BOOL'),
    case("negative dim", body(tensor(shape=[-1, 2], data=[1, 2])), InvalidTensor,
         "negative dimension in shape [-1,2]"),
    case("no data", body(tensor()), InvalidTensor, 'neither "data" nor binary_data_size'),
    case("data not a list", body(tensor(data=5)), InvalidTensor,
         '"data" must be a list, not int'),
    case("too few elements", body(tensor(data=[1, 2, 3])), InvalidTensor,
         'input "x": data has 3 elements but shape [2,2] needs 4'),
    case("nested wrong", body(tensor(shape=[4], data=[[1, 2], [3, 4]])), InvalidTensor,
         "data is nested as [2,2] but shape is [4]"),
    case("ragged", body(tensor(data=[[1, 2], [3]])), InvalidTensor, "not a regular nested list"),
    case("string in FP32", body(tensor(data=[1, "a", 3, 4])), InvalidTensor,
         'FP32 data holds "a" at flat index 1, which is not a number'),
    case("null in FP32", body(tensor(data=[1, None, 3, 4])), InvalidTensor,
         "holds null at flat index 1"),
    case("float in INT32", body(tensor(datatype="INT32", data=[1, 2.5, 3, 4])), InvalidTensor,
         "holds 2.5 at flat index 1, which is not an integer"),
    case("out of range", body(tensor(datatype="INT8", data=[1, 300, 3, 4])), InvalidTensor,
         "value 300 is out of range for INT8 [-128, 127]"),
    case("beyond FP16", body(tensor(datatype="FP16", data=[1, 70000, 3, 4])), InvalidTensor,
         "value 70000 is out of range for FP16"),
    case("beyond FP32", body(tensor(data=[1, 2, 1e300, 4])), InvalidTensor,
         "value 1e+300 is out of range for FP32"),
    case("number in BOOL", body(tensor(datatype="BOOL", data=[1, 0, 1, 0])), InvalidTensor,
         "which is not true or false"),
    case("number in BYTES", body(tensor(datatype="BYTES", data=["a", 1, "b", "c"])),
         InvalidTensor, "holds 1 at flat index 1, which is not a string"),
    case("data and binary", body(tensor(data=FOUR, parameters={"binary_data_size": 16})),
         InvalidTensor, 'has both "data" and binary_data_size'),
    case("header not a number", (body(tensor(data=FOUR)), "x1"), InvalidRequest,
         'must be a non-negative integer, not "x1"'),
    case("header larger than body", (b"{}", "99"), InvalidRequest,
         "Inference-Header-Content-Length 99 is larger than the body (2 bytes)"),
    case("binary without header", _framed([_fp32(2)], header=False), InvalidRequest,
         "binary tensor data needs the Inference-Header-Content-Length header"),
    case("negative binary size", _framed([_fp32(2, size=-1)]), InvalidTensor,
         "binary_data_size must be a non-negative integer"),
    case("binary past the end", _framed([_fp32(2, size=9)]), InvalidTensor,
         "binary_data_size 9 runs past the end of the body (8"),
    case("binary size vs shape", _framed([_fp32(2, size=4)]), InvalidTensor,
         "binary_data_size is 4 bytes but FP32 shape [2] needs 8"),
    case("binary left over", _framed([_fp32(2), (tensor("y", [1], data=[1]), b"junk")]),
         InvalidRequest, "body carries 12 bytes of binary tensor data but the inputs declare 8"),
    case("BOOL byte 2", _framed([(BOOL2, b"\x01\x02")]), InvalidTensor,
         "BOOL bytes must be 0 or 1"),
    case("BYTES no length", _bytes([2], 8, struct.pack("<I", 1) + b"azzz"), InvalidTensor,
         "BYTES element 1 is missing its length"),
    case("BYTES too long", _bytes([1], 6, struct.pack("<I", 5) + b"ab"), InvalidTensor,
         "declares 5 bytes but only 2 remain"),
    case("BYTES left over", _bytes([1], 7, struct.pack("<I", 1) + b"abc"), InvalidTensor,
         "2 bytes left over after 1 BYTES"),
    case("BYTES too many", _bytes([9], 4, struct.pack("<I", 0)), InvalidTensor,
         "4 bytes cannot hold 9 BYTES elements"),
    case("duplicate output", body(tensor(data=FOUR), outputs=[{"name": "y"}, {"name": "y"}]),
         InvalidTensor, 'output "y" is requested more than once'),
    case("classification", body(tensor(data=FOUR), outputs=CLASSIFY), Unsupported,
         "classification, which this worker does not support"),
    case("binary_data not bool", body(tensor(data=FOUR), parameters={"binary_data_output": 1}),
         InvalidRequest, 'parameter "binary_data_output" of the request must be true or false'),
]  # fmt: skip


@pytest.mark.parametrize(("data", "header", "error", "message"), BAD)
def test_bad_bodies_raise_precise_400s(data: bytes, header: str | None, error: type[Exception],
                                       message: str) -> None:  # fmt: skip
    with pytest.raises(error) as caught:
        decode_request(data, header)
    assert message in str(caught.value)
    assert getattr(caught.value, "status_code", None) == 400


# -- checks against a model's signature ----------------------------------------------------

SIG = Signature(
    inputs=(TensorSpec("x", "FP32", (-1, 2)), TensorSpec("k", "INT64", (1,))),
    outputs=(TensorSpec("y", "FP32", (-1, 2)),),
)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"x": np.zeros((1, 2), np.float32), "k": np.zeros(1, np.int64), "z": np.zeros(1)},
         'unknown input "z"; model "m" takes x FP32 [-1,2], k INT64 [1]'),
        ({"x": np.zeros((1, 2), np.float32)}, 'missing input "k"'),
        ({"x": np.zeros((1, 2)), "k": np.zeros(1, np.int64)},
         'input "x" has datatype FP64 but model "m" expects FP32'),
        ({"x": np.zeros((1, 3), np.float32), "k": np.zeros(1, np.int64)},
         'input "x" has shape [1,3] but model "m" expects [-1,2]'),
        ({"x": np.zeros(2, np.float32), "k": np.zeros(1, np.int64)},
         'input "x" has shape [2] but model "m" expects [-1,2]'),
    ],
)  # fmt: skip
def test_signature_check_names_the_input(inputs: dict[str, np.ndarray], message: str) -> None:
    with pytest.raises(InvalidTensor) as caught:
        SIG.check("m", inputs)
    assert message in str(caught.value)


def test_signature_unknown_output_and_batchable() -> None:
    with pytest.raises(InvalidTensor, match='unknown output "q"; model "m" gives y'):
        SIG.check_outputs("m", ["y", "q"])
    assert not SIG.batchable
    assert Signature(SIG.inputs[:1], SIG.outputs).batchable


# -- encoding, checked with tritonclient's own response parser -----------------------------


def test_encode_json_and_binary_outputs_parse_in_tritonclient() -> None:
    fp = np.arange(6, dtype=np.float32).reshape(2, 3)
    words = np.array([b"ok", b"\xff\xfe"], dtype=object)
    half = np.array([1.5, -2], dtype=ml_dtypes.bfloat16)
    data, length = encode_response(
        model_name="m", model_version="1.0.0", request_id="r",
        outputs=[("fp", fp, False), ("words", words, False), ("half", half, True),
                 ("flag", np.array([True, False]), False)],
    )  # fmt: skip
    assert length is not None
    head = json.loads(data[:length])
    assert head["id"] == "r"
    assert head["model_version"] == "1.0.0"
    assert head["outputs"][0]["data"] == [0, 1, 2, 3, 4, 5]
    assert head["outputs"][1]["parameters"]["binary_data_size"] == 12  # not UTF-8: binary
    result = triton.InferResult.from_response_body(data, header_length=length)
    np.testing.assert_array_equal(result.as_numpy("fp"), fp)
    assert list(result.as_numpy("words")) == [b"ok", b"\xff\xfe"]
    np.testing.assert_array_equal(result.as_numpy("half").astype(np.float32), [1.5, -2])
    np.testing.assert_array_equal(result.as_numpy("flag"), [True, False])


def test_encode_json_only_has_no_header_and_omits_nulls() -> None:
    data, length = encode_response(model_name="m", model_version=None, request_id=None,
                                   outputs=[("y", np.zeros(2, np.int32), False)])  # fmt: skip
    assert length is None
    assert json.loads(data) == {
        "model_name": "m", "outputs": [{"name": "y", "shape": [2], "datatype": "INT32",
                                        "data": [0, 0]}]}  # fmt: skip


# -- round trips through tritonclient, over random tensors ---------------------------------

NUMERIC = {"FP32": np.float32, "FP64": np.float64, "FP16": np.float16, "INT8": np.int8,
           "INT32": np.int32, "INT64": np.int64, "UINT8": np.uint8, "UINT16": np.uint16,
           "BOOL": np.bool_}  # fmt: skip


@st.composite
def tensors(draw: st.DrawFn) -> tuple[str, np.ndarray]:
    datatype = draw(st.sampled_from([*NUMERIC, "BYTES"]))
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=4))
    if datatype == "BYTES":
        items = draw(st.lists(st.binary(max_size=6), min_size=int(np.prod(shape)),
                              max_size=int(np.prod(shape))))  # fmt: skip
        array = np.empty(len(items), dtype=object)
        array[:] = items
        return datatype, array.reshape(shape)
    elements = None
    if datatype.startswith("FP"):
        width = 16 if datatype == "FP16" else 32
        elements = st.floats(width=width, allow_nan=False, allow_infinity=False)
    return datatype, draw(hnp.arrays(NUMERIC[datatype], shape, elements=elements))


@settings(max_examples=150, deadline=None)
@given(st.lists(tensors(), min_size=1, max_size=3), st.lists(st.booleans(), min_size=3, max_size=3))
def test_round_trip_through_tritonclient(items: list[tuple[str, np.ndarray]],
                                         binary: list[bool]) -> None:  # fmt: skip
    inputs = []
    for i, (datatype, array) in enumerate(items):
        as_binary = binary[i] or (datatype == "BYTES" and any(
            not _is_utf8(v) for v in array.flat))  # fmt: skip
        tensor_in = triton.InferInput(f"t{i}", list(array.shape), datatype)
        tensor_in.set_data_from_numpy(array, binary_data=as_binary)
        inputs.append(tensor_in)
    raw, json_size = triton.InferenceServerClient.generate_request_body(inputs)
    decoded = decode_request(raw, None if json_size is None else str(json_size))
    outputs = []
    for i, (datatype, array) in enumerate(items):
        got = decoded.inputs[f"t{i}"]
        assert got.shape == array.shape
        if datatype == "BYTES":
            assert list(got.flat) == list(array.flat)
        else:
            np.testing.assert_array_equal(got, array)
        outputs.append((f"t{i}", got, binary[i]))
    data, length = encode_response(model_name="m", model_version="1", request_id=None,
                                   outputs=outputs)  # fmt: skip
    result = triton.InferResult.from_response_body(data, header_length=length)
    for i, (datatype, array) in enumerate(items):
        back = result.as_numpy(f"t{i}")
        if datatype == "BYTES":
            assert [v if isinstance(v, bytes) else v.encode() for v in back.flat] == list(
                array.flat
            )
        else:
            np.testing.assert_array_equal(back, array)


def _is_utf8(value: bytes) -> bool:
    try:
        value.decode()
    except UnicodeDecodeError:
        return False
    return True
