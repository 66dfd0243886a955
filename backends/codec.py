"""The wire codec: inference request bodies to named numpy arrays, and results back.

Implements JSON tensors (``data`` flat or nested, row-major) and Triton's binary tensor
extension both ways (``Inference-Header-Content-Length``, ``binary_data_size``,
``binary_data``, ``binary_data_output``). Every malformed body raises ``InvalidRequest``
or ``InvalidTensor`` (400) with a message that names the offending tensor and value;
nothing here raises anything else for bad input. Nesting, rank, element counts and the
header length are bounded (`backends.limits`) before anything is decoded deeply or
allocated.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np

from backends.errors import InvalidRequest, InvalidTensor, Unsupported
from backends.limits import RequestLimits, check_json_depth, parse_byte_count, shown
from backends.oip import InferenceRequest, InferenceResponse, RequestInput, ResponseOutput
from backends.signature import NUMPY_DTYPES, datatype_of, format_shape

__all__ = [
    "HEADER_LENGTH",
    "DecodedRequest",
    "check_input",
    "decode_request",
    "encode_response",
    "from_binary",
    "from_json",
    "serialize_bytes",
    "tensor_bytes",
]

HEADER_LENGTH = "inference-header-content-length"
_DATATYPES = ", ".join(NUMPY_DTYPES)
_decoder = msgspec.json.Decoder(InferenceRequest)
_encoder = msgspec.json.Encoder()
_LENGTH = struct.Struct("<I")
_DEFAULT_LIMITS = RequestLimits()
_FLOAT64_MAX = float(np.finfo(np.float64).max)


@dataclass(slots=True)
class DecodedRequest:
    """A decoded request: inputs by name, and which outputs to return how.

    ``outputs`` is ``None`` when the client asked for every output; ``binary`` holds each
    explicitly requested output's ``binary_data`` choice, ``binary_default`` the rest.
    """

    inputs: dict[str, np.ndarray]
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    outputs: list[str] | None = None
    binary: dict[str, bool] = field(default_factory=dict)
    binary_default: bool = False

    def wants_binary(self, name: str) -> bool:
        return self.binary.get(name, self.binary_default)


def _parse_json(body: bytes, end: int, trailing: bool, depth: int) -> InferenceRequest:
    if not end:
        raise InvalidRequest("empty request body; expected an inference request JSON object")
    check_json_depth(body, end, depth)
    try:
        return _decoder.decode(memoryview(body)[:end])
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"invalid inference request: {exc}") from None
    except msgspec.DecodeError as exc:
        hint = ""
        if trailing and "trailing" in str(exc):
            hint = " (binary tensor data needs the Inference-Header-Content-Length header)"
        raise InvalidRequest(f"invalid JSON in request body: {exc}{hint}") from None


def _flag(params: dict[str, Any] | None, key: str, where: str) -> bool | None:
    if not params or key not in params:
        return None
    value = params[key]
    if not isinstance(value, bool):
        raise InvalidRequest(f'parameter "{key}" of {where} must be true or false, not {value!r}')
    return value


def decode_request(
    body: bytes, header_length: str | None = None, limits: RequestLimits = _DEFAULT_LIMITS
) -> DecodedRequest:
    """Decode a request body; ``header_length`` is the ``Inference-Header-Content-Length``.

    ``limits`` are checked before anything they bound is parsed or allocated.
    """
    length = parse_byte_count("Inference-Header-Content-Length", header_length, len(body))
    end = len(body) if length is None else length
    blob = memoryview(body)[end:]
    request = _parse_json(body, end, length is None, limits.max_json_depth)
    if not request.inputs:
        raise InvalidRequest("request has no inputs")
    inputs: dict[str, np.ndarray] = {}
    offset = 0
    for item in request.inputs:
        if item.name in inputs:
            raise InvalidTensor(f'input "{item.name}" appears more than once')
        array, used = _decode_input(item, blob, offset, limits)
        inputs[item.name] = array
        offset += used
    if offset != len(blob):
        raise InvalidRequest(
            f"body carries {len(blob)} bytes of binary tensor data but the inputs declare "
            f"{offset} (sum of binary_data_size)"
        )
    decoded = DecodedRequest(inputs=inputs, id=request.id, parameters=request.parameters or {})
    decoded.binary_default = bool(_flag(request.parameters, "binary_data_output", "the request"))
    if request.outputs is not None:
        decoded.outputs = []
        for out in request.outputs:
            if out.name in decoded.binary:
                raise InvalidTensor(f'output "{out.name}" is requested more than once')
            if out.parameters and out.parameters.get("classification"):
                raise Unsupported(
                    f'output "{out.name}" asks for classification, which this worker does '
                    "not support; request the raw tensor"
                )
            choice = _flag(out.parameters, "binary_data", f'output "{out.name}"')
            decoded.binary[out.name] = decoded.binary_default if choice is None else choice
            decoded.outputs.append(out.name)
    return decoded


def check_input(item: RequestInput, limits: RequestLimits) -> tuple[np.dtype[Any], int]:
    """The numpy dtype and element count of an input whose datatype is known and whose
    shape is within ``limits``; ``InvalidTensor`` otherwise."""
    dtype = NUMPY_DTYPES.get(item.datatype)
    if dtype is None:
        raise InvalidTensor(
            f'input "{shown(item.name)}" has unknown datatype "{shown(item.datatype)}" '
            f"(use one of {_DATATYPES})"
        )
    return dtype, limits.check_shape(item.name, item.shape)


def _decode_input(
    item: RequestInput, blob: memoryview, offset: int, limits: RequestLimits
) -> tuple[np.ndarray, int]:
    dtype, count = check_input(item, limits)
    size = item.parameters.get("binary_data_size") if item.parameters else None
    if size is None:
        if item.data is None:
            raise InvalidTensor(f'input "{item.name}" has neither "data" nor binary_data_size')
        return from_json(item, dtype, count), 0
    if item.data is not None:
        raise InvalidTensor(f'input "{item.name}" has both "data" and binary_data_size')
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidTensor(
            f'input "{item.name}": binary_data_size must be a non-negative integer, not {size!r}'
        )
    left = len(blob) - offset
    if size > left:
        raise InvalidTensor(
            f'input "{item.name}": binary_data_size {size} runs past the end of the body '
            f"({left} bytes of binary data left)"
        )
    return from_binary(item, dtype, count, blob[offset : offset + size]), size


def from_binary(
    item: RequestInput,
    dtype: np.dtype[Any],
    count: int,
    raw: memoryview,
    source: str = "binary_data_size",
) -> Any:
    """The tensor in ``raw`` (the binary extension's layout: little-endian elements, BYTES
    as 4-byte lengths and bytes); ``source`` names where the size came from in errors."""
    shape = tuple(item.shape)
    if item.datatype == "BYTES":
        return _parse_bytes(item.name, raw, count).reshape(shape)
    expected = count * dtype.itemsize
    if len(raw) != expected:
        raise InvalidTensor(
            f'input "{item.name}": {source} is {len(raw)} bytes but {item.datatype} '
            f"shape {format_shape(shape)} needs {expected}"
        )
    if item.datatype == "BOOL":
        flags = np.frombuffer(raw, dtype=np.uint8)
        if flags.size and int(flags.max()) > 1:
            raise InvalidTensor(f'input "{item.name}": BOOL bytes must be 0 or 1')
        return flags.view(np.bool_).reshape(shape)
    return (
        np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype, copy=False).reshape(shape)
    )


def _parse_bytes(name: str, raw: memoryview, count: int) -> np.ndarray:
    if count * _LENGTH.size > len(raw):
        raise InvalidTensor(
            f'input "{name}": {len(raw)} bytes cannot hold {count} BYTES elements '
            "(each needs a 4-byte length)"
        )
    items: list[bytes] = []
    pos = 0
    for index in range(count):
        if pos + _LENGTH.size > len(raw):
            raise InvalidTensor(f'input "{name}": BYTES element {index} is missing its length')
        (n,) = _LENGTH.unpack_from(raw, pos)
        pos += _LENGTH.size
        if pos + n > len(raw):
            raise InvalidTensor(
                f'input "{name}": BYTES element {index} declares {n} bytes but only '
                f"{len(raw) - pos} remain"
            )
        items.append(bytes(raw[pos : pos + n]))
        pos += n
    if pos != len(raw):
        raise InvalidTensor(
            f'input "{name}": {len(raw) - pos} bytes left over after {count} BYTES elements'
        )
    array = np.empty(count, dtype=object)
    array[:] = items
    return array


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    if not any(isinstance(x, list) for x in data):
        return data
    flat: list[Any] = []
    for x in data:
        flat.extend(_flatten(x))
    return flat


def _bad_element(item: RequestInput, kind: str, ok: Any) -> InvalidTensor:
    """The error for the first element that ``ok`` rejects (only built on the error path)."""
    flat = _flatten(item.data)
    for index, value in enumerate(flat):
        if not ok(value):
            text = msgspec.json.encode(value).decode()[:60]
            return InvalidTensor(
                f'input "{item.name}": {item.datatype} data holds {text} at flat index '
                f"{index}, which is not {kind}"
            )
    return InvalidTensor(f'input "{item.name}": data is not a regular nested list of {kind}')


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def from_json(item: RequestInput, dtype: np.dtype[Any], count: int) -> np.ndarray:
    """The tensor in ``item.data`` (a flat or nested list), checked element by element
    against the datatype: kind, range, count and nesting."""
    shape = tuple(item.shape)
    data = item.data
    if not isinstance(data, list):
        kind = type(data).__name__
        raise InvalidTensor(f'input "{item.name}": "data" must be a list, not {kind}')
    if item.datatype == "BYTES":
        flat = _flatten(data)
        _check_count(item, len(flat), count)
        if not all(isinstance(x, str) for x in flat):
            raise _bad_element(item, "a string", lambda v: isinstance(v, str))
        array = np.empty(count, dtype=object)
        array[:] = [x.encode() for x in flat]
        return array.reshape(shape)
    try:
        parsed = np.array(data)
    except (ValueError, TypeError, OverflowError):
        raise _bad_element(item, "a number", _is_number) from None
    if parsed.ndim > 1 and parsed.shape != shape:
        raise InvalidTensor(
            f'input "{item.name}": data is nested as {format_shape(parsed.shape)} but shape '
            f"is {format_shape(shape)}"
        )
    _check_count(item, parsed.size, count)
    return _convert(item, parsed, dtype).reshape(shape)


def _check_count(item: RequestInput, got: int, want: int) -> None:
    if got != want:
        raise InvalidTensor(
            f'input "{item.name}": data has {got} elements but shape {format_shape(item.shape)} '
            f"needs {want}"
        )


def _convert(item: RequestInput, parsed: np.ndarray, dtype: np.dtype[Any]) -> np.ndarray:
    kind = parsed.dtype.kind
    if parsed.size == 0:
        return parsed.astype(dtype)
    if item.datatype == "BOOL":
        if kind != "b":
            raise _bad_element(item, "true or false", lambda v: isinstance(v, bool))
        return parsed
    if kind == "O" and all(_is_number(v) for v in parsed.flat):
        # NOTE: numpy keeps integers beyond 64 bits as Python ints in an object array.
        if dtype.kind in "iu":
            return _integers_from_floats(item, dtype)
        parsed = _floats(item, parsed)
    elif kind not in "iuf":
        raise _bad_element(item, "a number", _is_number)
    if dtype.kind == "f" or item.datatype == "BF16":
        return _to_float(item, parsed, dtype)
    if kind == "f":
        return _integers_from_floats(item, dtype)
    _check_range(item, dtype, parsed.min(), parsed.max())
    return parsed.astype(dtype)


def _floats(item: RequestInput, parsed: np.ndarray) -> np.ndarray:
    """Python ints (some beyond 64 bits) as float64; those beyond float64 are refused."""
    try:
        return parsed.astype(np.float64)
    except OverflowError:
        value = next(v for v in parsed.flat if abs(v) > _FLOAT64_MAX)
        raise InvalidTensor(
            f'input "{item.name}": value {shown(str(value))} is out of range for {item.datatype}'
        ) from None


def _to_float(item: RequestInput, parsed: np.ndarray, dtype: np.dtype[Any]) -> np.ndarray:
    """Cast to a float type, refusing values beyond its range instead of making them inf."""
    with np.errstate(over="ignore", invalid="ignore"):
        out = parsed.astype(dtype)
    finite = np.isfinite(out.astype(np.float32) if item.datatype == "BF16" else out)
    if not finite.all():
        value = parsed.reshape(-1)[int(np.argmin(finite.reshape(-1)))]
        raise InvalidTensor(
            f'input "{item.name}": value {value} is out of range for {item.datatype}'
        )
    return out


def _integers_from_floats(item: RequestInput, dtype: np.dtype[Any]) -> np.ndarray:
    """Integer data that numpy inferred as floats: integral floats (``1.0``), or Python ints
    beyond int64 mixed with small ones, which numpy would round through float64."""
    flat = _flatten(item.data)
    values: list[int] = []
    for index, value in enumerate(flat):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not _is_integer(value):
            text = msgspec.json.encode(value).decode()[:60]
            raise InvalidTensor(
                f'input "{item.name}": {item.datatype} data holds {text} at flat index '
                f"{index}, which is not an integer"
            )
        values.append(value)
    _check_range(item, dtype, min(values), max(values))
    return np.array(values, dtype=dtype)


def _check_range(item: RequestInput, dtype: np.dtype[Any], low: Any, high: Any) -> None:
    info = np.iinfo(dtype)
    if low < info.min or high > info.max:
        value = low if low < info.min else high
        raise InvalidTensor(
            f'input "{item.name}": value {shown(str(value))} is out of range for '
            f"{item.datatype} [{info.min}, {info.max}]"
        )


def serialize_bytes(array: np.ndarray) -> bytes:
    """BYTES tensor → the binary extension's layout: 4-byte LE length + raw bytes, each."""
    parts: list[bytes] = []
    for value in array.ravel():
        raw = value.encode() if isinstance(value, str) else bytes(value)
        parts.append(_LENGTH.pack(len(raw)))
        parts.append(raw)
    return b"".join(parts)


def tensor_bytes(array: np.ndarray, datatype: str) -> bytes:
    """A tensor in the binary extension's layout (little-endian; BYTES length-prefixed)."""
    if datatype == "BYTES":
        return serialize_bytes(array)
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def _json_data(array: np.ndarray, datatype: str) -> list[Any] | None:
    """Flat JSON data, or ``None`` when the tensor has no JSON form (non-UTF-8 BYTES)."""
    if datatype == "BYTES":
        out: list[Any] = []
        for value in array.ravel():
            if isinstance(value, bytes):
                try:
                    value = value.decode()
                except UnicodeDecodeError:
                    return None
            out.append(value)
        return out
    if datatype == "BF16":
        array = array.astype(np.float32)
    data: list[Any] = array.ravel().tolist()
    return data


def encode_response(
    *,
    model_name: str,
    model_version: str | None,
    request_id: str | None,
    outputs: list[tuple[str, np.ndarray, bool]],
) -> tuple[bytes, int | None]:
    """Encode ``(name, array, binary)`` outputs; returns the body and the JSON header length
    (``None`` when the body is JSON only).

    NOTE: a BYTES output that is not valid UTF-8 is sent binary even if JSON was asked,
    since JSON cannot carry it; clients read binary whenever the size parameter is set.
    """
    blobs: list[bytes] = []
    items: list[ResponseOutput] = []
    for name, array, binary in outputs:
        datatype = datatype_of(array)
        shape = list(array.shape)
        data = None if binary else _json_data(array, datatype)
        if data is None:
            raw = tensor_bytes(array, datatype)
            blobs.append(raw)
            params = {"binary_data_size": len(raw)}
            items.append(
                ResponseOutput(name=name, shape=shape, datatype=datatype, parameters=params)
            )
        else:
            items.append(ResponseOutput(name=name, shape=shape, datatype=datatype, data=data))
    response = InferenceResponse(
        model_name=model_name, model_version=model_version, id=request_id, outputs=items
    )
    head = _encoder.encode(response)
    if not blobs:
        return head, None
    return head + b"".join(blobs), len(head)
