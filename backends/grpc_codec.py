"""The gRPC tensor codec: ``ModelInferRequest`` to the `backends.codec.DecodedRequest` the
REST codec produces, and outputs back to a ``ModelInferResponse``.

Inputs come from ``raw_input_contents`` (one entry per input, in order, in the binary
extension's layout: what tritonclient.grpc sends) or from each input's typed ``contents``
(Triton's mapping: INT8/16/32 in ``int_contents``, UINT8/16/32 in ``uint_contents``, FP16
and BF16 only raw). Both go through the REST codec's per-tensor decoders, so datatypes,
limits, range checks and error messages are the same over both transports. Responses
always carry ``raw_output_contents``, as Triton's server does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from backends.codec import DecodedRequest, check_input, from_binary, from_json, tensor_bytes
from backends.errors import InvalidRequest, InvalidTensor, Unsupported
from backends.limits import RequestLimits
from backends.oip import RequestInput
from backends.signature import datatype_of, format_shape
from modelgate.core.proto import inference_pb2 as pb

__all__ = ["decode_infer", "encode_infer"]

#: The typed ``contents`` field of each datatype; FP16 and BF16 have none (raw only).
CONTENTS_FIELD: dict[str, str] = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


def _parameters(params: Any) -> dict[str, Any]:
    """An ``InferParameter`` map as plain values."""
    out: dict[str, Any] = {}
    for key, param in params.items():
        choice = param.WhichOneof("parameter_choice")
        out[key] = getattr(param, choice) if choice is not None else None
    return out


def decode_infer(request: pb.ModelInferRequest, limits: RequestLimits) -> DecodedRequest:
    """Decode ``request``'s inputs and requested outputs; ``InvalidRequest`` or
    ``InvalidTensor`` (400) naming the offending tensor and value for anything malformed."""
    if not request.inputs:
        raise InvalidRequest("request has no inputs")
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InvalidRequest(
            f"request has {len(raw)} raw_input_contents for {len(request.inputs)} inputs "
            "(give one per input, in order, or none)"
        )
    inputs: dict[str, np.ndarray] = {}
    for index, tensor in enumerate(request.inputs):
        if tensor.name in inputs:
            raise InvalidTensor(f'input "{tensor.name}" appears more than once')
        blob = raw[index] if raw else None
        inputs[tensor.name] = _decode_input(tensor, blob, index, limits)
    decoded = DecodedRequest(
        inputs=inputs, id=request.id or None, parameters=_parameters(request.parameters)
    )
    if request.outputs:
        decoded.outputs = []
        for out in request.outputs:
            if out.name in decoded.binary:
                raise InvalidTensor(f'output "{out.name}" is requested more than once')
            if _parameters(out.parameters).get("classification"):
                raise Unsupported(
                    f'output "{out.name}" asks for classification, which this worker does '
                    "not support; request the raw tensor"
                )
            decoded.binary[out.name] = True
            decoded.outputs.append(out.name)
    return decoded


def _decode_input(tensor: Any, blob: bytes | None, index: int, limits: RequestLimits) -> np.ndarray:
    item = RequestInput(name=tensor.name, shape=list(tensor.shape), datatype=tensor.datatype)
    dtype, count = check_input(item, limits)
    given = [f.name for f, _ in tensor.contents.ListFields()] if tensor.HasField("contents") else []
    if blob is not None:
        if given:
            raise InvalidTensor(f'input "{item.name}" has both contents and raw_input_contents')
        source = f"raw_input_contents[{index}]"
        return np.asarray(from_binary(item, dtype, count, memoryview(blob), source))
    field = CONTENTS_FIELD.get(item.datatype)
    if not given:
        if count:
            raise InvalidTensor(f'input "{item.name}" has neither contents nor raw_input_contents')
        return np.empty(item.shape, dtype=dtype)
    if field is None or given != [field]:
        where = f"{field} or raw_input_contents" if field is not None else "raw_input_contents"
        raise InvalidTensor(
            f'input "{item.name}": {item.datatype} data goes in {where}, not {", ".join(given)}'
        )
    values = getattr(tensor.contents, field)
    if item.datatype == "BYTES":
        return _bytes_tensor(item, values, count)
    item.data = list(values)
    return from_json(item, dtype, count)


def _bytes_tensor(item: RequestInput, values: Sequence[bytes], count: int) -> np.ndarray:
    if len(values) != count:
        raise InvalidTensor(
            f'input "{item.name}": contents has {len(values)} elements but shape '
            f"{format_shape(item.shape)} needs {count}"
        )
    array = np.empty(count, dtype=object)
    array[:] = list(values)
    return array.reshape(item.shape)


def encode_infer(
    model: str, version: str, request_id: str | None, outputs: list[tuple[str, np.ndarray, bool]]
) -> pb.ModelInferResponse:
    """The response naming the concrete ``version``, with every output in
    ``raw_output_contents`` (in the order of ``outputs``)."""
    response = pb.ModelInferResponse(model_name=model, model_version=version, id=request_id or "")
    for name, array, _ in outputs:
        datatype = datatype_of(array)
        response.outputs.add(name=name, datatype=datatype, shape=array.shape)
        response.raw_output_contents.append(tensor_bytes(array, datatype))
    return response
