"""Hostile input the worker must answer with a 400 naming the value, never a 500: JSON
nesting, shapes numpy refuses, integer headers, compressed bombs, and model failures that
the inputs cause (as opposed to the worker's own)."""

from __future__ import annotations

import gzip
import json
import tracemalloc
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from litestar.testing import AsyncTestClient
from onnx import TensorProto, helper

from backends.app import WorkerApp, _decompress, create_worker_app
from backends.codec import decode_request
from backends.control import ControlAccess
from backends.dataplane import DataPlane, WorkerOptions
from backends.errors import InferenceFailed, InflatedTooLarge, InvalidRequest, InvalidTensor
from backends.limits import MAX_JSON_DEPTH, RequestLimits, check_json_depth
from backends.runtime import OnnxModel, RuntimeOptions, translate_failure
from backends.source import FileSource
from backends.synthetic import IR_VERSION, OPSET

ORT = ort.capi.onnxruntime_pybind11_state


def body(shape: Any, data: Any = None, datatype: str = "FP32", **extra: Any) -> bytes:
    tensor: dict[str, Any] = {"name": "input", "shape": shape, "datatype": datatype}
    if data is not None:
        tensor["data"] = data
    tensor.update(extra)
    return json.dumps({"inputs": [tensor]}).encode()


def nested(depth: int, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


def data_nested(depth: int) -> bytes:
    return b'{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":%s}]}' % (
        nested(depth).encode()
    )


HOSTILE = [
    (data_nested(1000), None, "nested deeper than 64 levels"),
    (data_nested(30), None, "data is nested as [1,1,1,"),
    (b'{"inputs":[], "x": %s}' % nested(30_000, "").encode(), None, "deeper than 64"),
    (b'{"inputs":[], "parameters": {"a": %s}}' % nested(5000, "").encode(), None, "deeper"),
    (body([0, 2**62], []), None, "shape [0,4611686018427387904] is too large"),
    (body([2**64, 0], []), None, "shape [18446744073709551616,0] is too large"),
    (body([2**70, 0], [], "BYTES"), None, "is too large (more than 65536 elements)"),
    (body([1] * 65, [1]), None, 'input "input" has 65 dimensions; at most 32'),
    (body([0] * 40, []), None, "has 40 dimensions"),
    (body([2**40, 2**40], None, parameters={"binary_data_size": 0}), "0", "empty request"),
    (body([1, 4], [1] * 4), "9" * 5000, "Inference-Header-Content-Length 99999999"),
    (body([1, 4], [1] * 4), "9" * 5000, "(5000 characters) is larger than the body"),
    (body([1, 4], [1] * 4), "\u00b2", 'must be a non-negative integer, not "²"'),
    (body([1, 4], [1] * 4), "-3", 'not "-3"'),
    (body([2], [2**70, 1], "INT64"), None, "value 1180591620717411303424 is out of range"),
    (body([2], [2**70, 1], "UINT8"), None, "out of range for UINT8"),
    (body([1], None, "FP32", parameters={"binary_data_size": 2**70}), None, "runs past the end"),
    (body([1], [1], "FP32" * 100), None, "unknown datatype"),
    (b'{"inputs":[{"name":"\xff","shape":[1],"datatype":"FP32","data":[1]}]}', None, "UTF-8"),
]


@pytest.mark.parametrize(("data", "header", "message"), HOSTILE)
def test_hostile_bodies_are_400s_naming_the_value(
    data: bytes, header: str | None, message: str
) -> None:
    with pytest.raises((InvalidRequest, InvalidTensor)) as caught:
        decode_request(data, header, RequestLimits(max_elements=65536))
    assert caught.value.status_code == 400
    assert message in caught.value.message


def test_big_integers_are_numbers_where_the_datatype_holds_them() -> None:
    decoded = decode_request(body([2], [2**70, 1], "FP32"))
    assert decoded.inputs["input"].tolist() == [float(2**70), 1.0]
    with pytest.raises(InvalidTensor, match="value 1e\\+300 is out of range for FP32"):
        decode_request(body([2], [10**300, 1], "FP32"))


def test_a_shape_within_the_limits_still_decodes() -> None:
    empty = decode_request(body([0, 65536], []), limits=RequestLimits(max_elements=65536))
    assert empty.inputs["input"].shape == (0, 65536)
    deep = [0.5]
    for _ in range(31):
        deep = [deep]
    decoded = decode_request(body([1] * 32, deep))
    assert decoded.inputs["input"].shape == (1,) * 32


@pytest.mark.parametrize(
    ("text", "deep"),
    [
        (nested(MAX_JSON_DEPTH), False),
        (nested(MAX_JSON_DEPTH + 1), True),
        ('["' + "[" * 5000 + '"]', False),  # brackets in strings do not count
        ('["\\"' + "[" * 5000 + '"]', False),  # nor after an escaped quote
        ('["\\\\", ' + nested(MAX_JSON_DEPTH) + "]", True),  # an escaped backslash ends it
        ("[" + "[1]," * 300_000 + "[2]]", False),  # many brackets, shallow (chunked scan)
        ("[1]," * 300_000 + nested(MAX_JSON_DEPTH + 1), True),  # deep past the first chunk
        ('{"a":' * (MAX_JSON_DEPTH + 1) + "1" + "}" * (MAX_JSON_DEPTH + 1), True),
    ],
)
def test_json_depth_counts_only_real_nesting(text: str, deep: bool) -> None:
    data = text.encode()
    if deep:
        with pytest.raises(InvalidRequest, match="nested deeper than 64 levels"):
            check_json_depth(data, len(data), MAX_JSON_DEPTH)
    else:
        check_json_depth(data, len(data), MAX_JSON_DEPTH)


# -- model failures: the inputs' fault or the worker's ------------------------------------


def broadcast_model(path: Path) -> Path:
    """``c = a + b`` over two ``[n, any]`` inputs: mismatched widths fail inside the kernel."""
    spec = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["n", d]) for n, d in
            (("a", "p"), ("b", "q"))]  # fmt: skip
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["c"])],
        "g",
        spec,
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.save(model, path)
    return path


def test_a_kernel_refusing_the_inputs_is_a_400(tmp_path: Path) -> None:
    model = OnnxModel(broadcast_model(tmp_path / "add.onnx"), RuntimeOptions())
    good = model.run({"a": np.ones((1, 3), np.float32), "b": np.ones((1, 3), np.float32)})
    assert good["c"].tolist() == [[2.0, 2.0, 2.0]]
    with pytest.raises(InvalidTensor, match=r"cannot run on these inputs: .*Add node"):
        model.run({"a": np.ones((1, 3), np.float32), "b": np.ones((1, 5), np.float32)})


NODE = "Non-zero status code returned while running Expand node. Name:'' Status Message: "


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (ORT.InvalidArgument("Got invalid dimensions for input"), InvalidTensor),
        (ORT.Fail(NODE + "axis == 1 || axis == largest was false"), InvalidTensor),
        (ORT.RuntimeException(NODE + "indices element out of data bounds"), InvalidTensor),
        (
            ORT.Fail(NODE + "Failed to allocate memory for requested buffer of size 1024"),
            InferenceFailed,
        ),
        (
            ORT.Fail(NODE + f"Failed to allocate memory for requested buffer of size {2**62}"),
            InvalidTensor,
        ),  # more than the machine has: it can never succeed
        (
            ORT.RuntimeException(NODE + "CUDA failure 700: an illegal memory access"),
            InferenceFailed,
        ),
        (ORT.RuntimeException(NODE + "CUBLAS failure 13"), InferenceFailed),
        (ORT.Fail("the session was closed"), InferenceFailed),
        (RuntimeError("something else broke"), InferenceFailed),
    ],
)
def test_onnxruntime_failures_are_the_inputs_or_the_worker(
    exc: Exception, kind: type[Exception]
) -> None:
    translated = translate_failure(exc)
    assert type(translated) is kind
    assert translated.status_code == (400 if kind is InvalidTensor else 500)


# -- the app: compressed bodies, the repository body --------------------------------------

INFER = "/v2/models/scale/versions/1.0.0/infer"
LIMIT = 64 * 1024


@pytest.fixture
async def client(model_dir: Path) -> AsyncIterator[AsyncTestClient[WorkerApp]]:
    source = FileSource({("scale", "1.0.0"): model_dir / "scale-1.onnx"})
    plane = DataPlane(WorkerOptions(max_body_bytes=LIMIT), source=source)
    control = ControlAccess(open=True)
    app = create_worker_app(plane, startup_loads=[("scale", "1.0.0")], control=control)
    async with AsyncTestClient(app=app) as test_client:
        for _ in range(1000):
            if (await test_client.get("/v2/health/ready")).status_code == 200:
                break
        yield test_client


GOOD = body([1, 4], [1, 2, 3, 4])


@pytest.mark.parametrize(
    ("content", "encoding", "status", "message"),
    [
        (gzip.compress(b" " * (100 * LIMIT)), "gzip", 413, "inflates to more than the limit"),
        (zlib.compress(b" " * (LIMIT + 1)), "deflate", 413, "of 65536 bytes"),
        (gzip.compress(GOOD)[:-12], "gzip", 400, "the gzip body ends early"),
        (gzip.compress(GOOD) + b"junk", "gzip", 400, "has data after its end"),
        (GOOD, "gzip", 400, "not valid gzip data"),
        (GOOD, "br" * 100, 400, 'unsupported Content-Encoding "brbrbr'),
        (gzip.compress(GOOD), " GZIP ", 200, ""),
        (GOOD, "Identity", 200, ""),
    ],
)
async def test_compressed_bodies_are_bounded(
    client: AsyncTestClient[WorkerApp], content: bytes, encoding: str, status: int, message: str
) -> None:
    response = await client.post(INFER, content=content, headers={"Content-Encoding": encoding})
    assert response.status_code == status, response.text
    if message:
        assert message in response.json()["error"]


async def test_every_hostile_body_is_a_400_through_the_app(
    client: AsyncTestClient[WorkerApp],
) -> None:
    for data, header, _ in HOSTILE:
        headers = (
            {} if header is None else {"Inference-Header-Content-Length": header.encode("latin-1")}
        )
        response = await client.post(INFER, content=data, headers=headers)
        assert response.status_code == 400, (data[:80], response.text)
        assert list(response.json()) == ["error"]
    ready = await client.get("/v2/models/scale/versions/1.0.0/ready")
    assert ready.status_code == 200


async def test_a_deep_repository_body_is_a_400(client: AsyncTestClient[WorkerApp]) -> None:
    deep = b'{"parameters": {"version": %s}}' % nested(5000, "").encode()
    response = await client.post("/v2/repository/index", content=deep)
    assert response.status_code == 200  # the index reads no body
    for path in ("/v2/repository/models/scale/load", "/v2/repository/models/scale/unload"):
        refused = await client.post(path, content=deep)
        assert refused.status_code == 400
        assert "nested deeper than 64 levels" in refused.json()["error"]
    assert (await client.get("/v2/models/scale/ready")).status_code == 200


def test_a_zip_bomb_costs_at_most_the_limit_in_memory() -> None:
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024), 1)
    tracemalloc.start()
    try:
        with pytest.raises(InflatedTooLarge):
            _decompress(bomb, "gzip", LIMIT)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * LIMIT, f"inflating took {peak} bytes at its peak"  # not 64 MiB


def test_the_header_length_allows_only_http_whitespace() -> None:
    head = body([1, 4], None, parameters={"binary_data_size": 16})
    data = head + np.arange(4, dtype=np.float32).tobytes()
    assert decode_request(data, f" {len(head)}\t").inputs["input"].tolist() == [[0, 1, 2, 3]]
    for odd in ("\u00a0", "\u0085", "\u00b2"):
        with pytest.raises(InvalidRequest, match="must be a non-negative integer"):
            decode_request(data, f"{odd}{len(head)}")
