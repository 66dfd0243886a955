"""Tensor datatypes and a model's signature, with the checks a request must pass.

One table maps protocol datatypes to numpy dtypes (BF16 uses ``ml_dtypes.bfloat16``, which
onnx already depends on; BYTES is an object array of ``bytes``/``str``). ``Signature.check``
produces the precise 400s for inputs that do not fit the model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import ml_dtypes
import numpy as np

from backends.errors import InvalidTensor

__all__ = [
    "NUMPY_DTYPES",
    "Signature",
    "TensorSpec",
    "datatype_of",
    "format_shape",
]

NUMPY_DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "BYTES": np.dtype(object),
}
_BY_DTYPE = {dtype: name for name, dtype in NUMPY_DTYPES.items()}


def datatype_of(array: np.ndarray) -> str:
    """The protocol datatype of an array (``str``/``bytes`` arrays count as BYTES)."""
    name = _BY_DTYPE.get(array.dtype)
    if name is not None:
        return name
    if array.dtype.kind in "USO":
        return "BYTES"
    raise InvalidTensor(f"numpy dtype {array.dtype} has no protocol datatype")


def format_shape(shape: tuple[int, ...] | list[int]) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """A model input or output: ``-1`` in ``shape`` is a variable dimension."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def describe(self) -> str:
        return f"{self.name} {self.datatype} {format_shape(self.shape)}"

    def accepts_shape(self, shape: tuple[int, ...]) -> bool:
        if len(shape) != len(self.shape):
            return False
        return all(want in (-1, got) for want, got in zip(self.shape, shape, strict=True))


@dataclass(frozen=True, slots=True)
class Signature:
    """Inputs and outputs of one model version, in the model's order."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def batchable(self) -> bool:
        """True when every input and output has a variable first dimension.

        NOTE: this is necessary, not sufficient: warm-up also checks that outputs really
        follow the batch size before the batcher concatenates requests.
        """
        tensors = self.inputs + self.outputs
        return bool(self.inputs) and all(t.shape and t.shape[0] == -1 for t in tensors)

    def input(self, name: str) -> TensorSpec | None:
        return next((t for t in self.inputs if t.name == name), None)

    def output(self, name: str) -> TensorSpec | None:
        return next((t for t in self.outputs if t.name == name), None)

    def check(self, model: str, inputs: Mapping[str, np.ndarray]) -> None:
        """Raise ``InvalidTensor`` naming the first input that does not fit the model."""
        takes = ", ".join(t.describe() for t in self.inputs)
        for name in inputs:
            if self.input(name) is None:
                raise InvalidTensor(f'unknown input "{name}"; model "{model}" takes {takes}')
        for spec in self.inputs:
            array = inputs.get(spec.name)
            if array is None:
                raise InvalidTensor(f'missing input "{spec.name}"; model "{model}" takes {takes}')
            datatype = datatype_of(array)
            if datatype != spec.datatype:
                raise InvalidTensor(
                    f'input "{spec.name}" has datatype {datatype} but model "{model}" '
                    f"expects {spec.datatype}"
                )
            if not spec.accepts_shape(array.shape):
                raise InvalidTensor(
                    f'input "{spec.name}" has shape {format_shape(array.shape)} but model '
                    f'"{model}" expects {format_shape(spec.shape)} (-1 = any size)'
                )

    def check_outputs(self, model: str, names: list[str]) -> None:
        for name in names:
            if self.output(name) is None:
                gives = ", ".join(t.name for t in self.outputs)
                raise InvalidTensor(f'unknown output "{name}"; model "{model}" gives {gives}')
