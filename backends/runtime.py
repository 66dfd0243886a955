"""ONNX Runtime sessions: execution provider chosen once per process, signature, inference.

``choose_device`` decides between CUDA and CPU the first time it is called and caches the
answer: CUDA only when a probe session really runs on it (``onnxruntime-gpu`` lists the
CUDA provider even where no GPU or CUDA library exists). The probe's log noise is
suppressed; the decision is logged once. ``OnnxModel.run`` is blocking and thread-safe;
callers run it off the event loop. onnxruntime exceptions become ``BackendError`` here.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import onnxruntime as ort

from backends.errors import BackendError, InferenceFailed, InvalidTensor, LoadFailed
from backends.signature import NUMPY_DTYPES, Signature, TensorSpec

__all__ = [
    "DeviceChoice",
    "OnnxModel",
    "RuntimeOptions",
    "choose_device",
    "synthetic_inputs",
    "translate_failure",
]

log = logging.getLogger("modelgate.worker.runtime")

_ORT_TYPES = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(bfloat16)": "BF16",
    "tensor(string)": "BYTES",
}
_BF16_ONNX = 16  # onnx.TensorProto.BFLOAT16
_OPT_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
# A one-node Identity model (x -> y, FP32 [1], IR 8, opset 17), serialized with onnx.helper;
# kept as bytes so that choosing the device needs no onnx import.
_PROBE_MODEL = bytes.fromhex(
    "080812003a3b0a100a017812017922084964656e74697479120570726f62655a0f0a0178120a0a0808"
    "0112040a020801620f0a0179120a0a08080112040a02080142040a001011"
)


@dataclass(frozen=True, slots=True)
class RuntimeOptions:
    """Session options. ``providers``: ``auto`` (CUDA when it really runs), ``cpu``, ``cuda``.

    Thread counts of 0 leave ONNX Runtime's defaults.

    NOTE: ``allow_spinning`` is off by default: ONNX Runtime's pool threads otherwise
    busy-wait after every run, taking CPU from the event loop that parses requests on the
    same cores; on the 2-core bench machine batch-1 latency was equal or better without it
    and batched throughput higher.
    """

    providers: str = "auto"
    cuda_device_id: int = 0
    intra_op_threads: int = 0
    inter_op_threads: int = 0
    graph_optimization: str = "all"
    parallel_execution: bool = False
    allow_spinning: bool = False
    log_severity: int = 3


@dataclass(frozen=True, slots=True)
class DeviceChoice:
    """The providers every session of this process uses, and a short device name."""

    providers: tuple[str | tuple[str, dict[str, Any]], ...]
    device: str


_choice: DeviceChoice | None = None
_choice_lock = threading.Lock()


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2 while the CUDA probe loads libraries that print errors.

    NOTE: this redirects the whole process's stderr for the duration of the probe, which
    runs once at start-up before any server or worker thread exists.
    """
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _probe_cuda(device_id: int) -> str | None:
    """Why CUDA cannot be used, or ``None`` when a probe session really runs on it."""
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return "this onnxruntime build has no CUDA execution provider"
    provider = ("CUDAExecutionProvider", {"device_id": device_id})
    options = ort.SessionOptions()
    options.log_severity_level = 4
    ort.set_default_logger_severity(4)
    try:
        with _quiet_stderr():
            session = ort.InferenceSession(
                _PROBE_MODEL, options, providers=[provider, "CPUExecutionProvider"]
            )
            session.run(None, {"x": np.zeros(1, dtype=np.float32)})
    except Exception as exc:
        return f"probe session failed: {exc}"
    if "CUDAExecutionProvider" not in session.get_providers():
        return "CUDA libraries or a GPU are missing (the probe session fell back to CPU)"
    return None


def choose_device(options: RuntimeOptions) -> DeviceChoice:
    """Decide the execution providers once for this process and log the decision once."""
    global _choice
    with _choice_lock:
        if _choice is not None:
            return _choice
        cpu = DeviceChoice(("CPUExecutionProvider",), "cpu")
        if options.providers == "cpu":
            _choice = cpu
            log.info("execution provider: CPU (configured)")
        else:
            reason = _probe_cuda(options.cuda_device_id)
            if reason is None:
                cuda = ("CUDAExecutionProvider", {"device_id": options.cuda_device_id})
                _choice = DeviceChoice(
                    (cuda, "CPUExecutionProvider"), f"cuda:{options.cuda_device_id}"
                )
                log.info("execution provider: CUDA device %d", options.cuda_device_id)
            elif options.providers == "cuda":
                raise LoadFailed(f"CUDA execution provider was required but {reason}")
            else:
                _choice = cpu
                log.info("execution provider: CPU (%s)", reason)
        ort.set_default_logger_severity(options.log_severity)
        return _choice


def _session_options(options: RuntimeOptions) -> ort.SessionOptions:
    so = ort.SessionOptions()
    so.log_severity_level = options.log_severity
    so.intra_op_num_threads = options.intra_op_threads
    so.inter_op_num_threads = options.inter_op_threads
    level = _OPT_LEVELS.get(options.graph_optimization)
    if level is None:
        raise LoadFailed(
            f'unknown graph optimization "{options.graph_optimization}" '
            f"(use one of {', '.join(_OPT_LEVELS)})"
        )
    so.graph_optimization_level = level
    if options.parallel_execution:
        so.execution_mode = ort.ExecutionMode.ORT_PARALLEL
    if not options.allow_spinning:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return so


def _spec(node: Any, what: str) -> TensorSpec:
    datatype = _ORT_TYPES.get(node.type)
    if datatype is None:
        raise LoadFailed(f'{what} "{node.name}" has type {node.type}; only tensors are supported')
    shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in (node.shape or ()))
    return TensorSpec(node.name, datatype, shape)


def synthetic_inputs(signature: Signature, batch: int) -> dict[str, np.ndarray]:
    """Zero-filled inputs for warm-up: the first variable dimension is ``batch``, others 1."""
    inputs: dict[str, np.ndarray] = {}
    for spec in signature.inputs:
        shape = tuple((batch if i == 0 else 1) if d == -1 else d for i, d in enumerate(spec.shape))
        if spec.datatype == "BYTES":
            array = np.full(shape, b"", dtype=object)
        else:
            array = np.zeros(shape, dtype=NUMPY_DTYPES[spec.datatype])
        inputs[spec.name] = array
    return inputs


class OnnxModel:
    """One ONNX Runtime session over a model file, with its signature."""

    def __init__(self, source: Path | bytes, options: RuntimeOptions) -> None:
        choice = choose_device(options)
        self.device = choice.device
        model = str(source) if isinstance(source, Path) else source
        try:
            self._session = ort.InferenceSession(
                model, _session_options(options), providers=list(choice.providers)
            )
        except Exception as exc:
            raise LoadFailed(f"onnxruntime cannot load the model: {exc}") from None
        inputs = tuple(_spec(n, "input") for n in self._session.get_inputs())
        outputs = tuple(_spec(n, "output") for n in self._session.get_outputs())
        self.signature = Signature(inputs, outputs)
        self.providers: list[str] = self._session.get_providers()
        self._output_names = [t.name for t in outputs]
        self._bf16 = any(t.datatype == "BF16" for t in inputs + outputs)
        self._strings = [t.name for t in inputs if t.datatype == "BYTES"]
        if self._bf16 and self._strings:
            raise LoadFailed(
                "models with both BF16 tensors and BYTES inputs are not supported "
                "(onnxruntime takes BF16 only as OrtValues, which cannot hold strings)"
            )

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on validated inputs; returns every output by name.

        Raises ``InvalidTensor`` when the inputs are at fault and ``InferenceFailed`` when
        the worker is (`translate_failure`).
        """
        feed = dict(inputs)
        for name in self._strings:
            feed[name] = _as_text(name, feed[name])
        try:
            if self._bf16:
                return self._run_ort_values(feed)
            results = self._session.run(self._output_names, feed)
        except Exception as exc:
            raise translate_failure(exc) from None
        return dict(zip(self._output_names, results, strict=True))

    def _run_ort_values(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run through OrtValues: numpy cannot hand BF16 to or from onnxruntime directly."""
        values = {}
        for name, array in feed.items():
            if array.dtype == NUMPY_DTYPES["BF16"]:
                bits = np.ascontiguousarray(array).view(np.uint16)
                values[name] = ort.OrtValue.ortvalue_from_numpy_with_onnx_type(bits, _BF16_ONNX)
            else:
                values[name] = ort.OrtValue.ortvalue_from_numpy(array)
        results = self._session.run_with_ort_values(self._output_names, values)
        out: dict[str, np.ndarray] = {}
        for name, value in zip(self._output_names, results, strict=True):
            if value.data_type() == "tensor(bfloat16)":
                raw = ctypes.string_at(value.data_ptr(), value.tensor_size_in_bytes())
                bits = np.frombuffer(raw, dtype=np.uint16).reshape(value.shape())
                out[name] = bits.view(ml_dtypes.bfloat16)
            else:
                out[name] = value.numpy()
        return out


def _as_text(name: str, array: np.ndarray) -> np.ndarray:
    """ONNX string tensors hold text: onnxruntime would ``str()`` a ``bytes`` object."""
    if not any(isinstance(v, bytes) for v in array.flat):
        return array
    out = np.empty(array.shape, dtype=object)
    try:
        out.flat[:] = [v.decode() if isinstance(v, bytes) else v for v in array.flat]
    except UnicodeDecodeError:
        raise InvalidTensor(
            f'input "{name}": BYTES element is not UTF-8 text, which ONNX string tensors need'
        ) from None
    return out


_ORT = ort.capi.onnxruntime_pybind11_state
# What a failure of the machine (not of the inputs) says: memory, the device, its libraries.
_MACHINE_FAULT = re.compile(
    r"fail(?:ed|ure)? to allocate|bad_alloc|out of memory|cudaError|"
    r"(?:CUDA|CUBLAS|CUDNN|CURAND|CUFFT|NCCL|TensorRT|MIGraphX|ROCm)\s*(?:failure|error)",
    re.IGNORECASE,
)
_REQUESTED = re.compile(r"requested buffer of size (\d{1,30})")


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 0


def translate_failure(exc: Exception) -> BackendError:
    """What an onnxruntime failure of ``run`` means: the client's inputs (400) or the worker.

    ``InvalidArgument`` is onnxruntime's own input validation. A kernel failing while running
    a node (``Fail``/``RuntimeException`` "... while running Gather node ...": a broadcast
    mismatch, an index out of range, a reshape that does not fit) is also caused by the
    inputs of a model that warm-up has run, unless it is a memory or device failure, which
    stays a 500 so that the gateway can eject a worker in trouble. An allocation larger than
    the machine's whole memory can never succeed, so it is the inputs' fault too.
    """
    text = _short(exc)
    if isinstance(exc, _ORT.InvalidArgument):
        return InvalidTensor(f"the model rejected the inputs: {text}")
    if isinstance(exc, _ORT.Fail | _ORT.RuntimeException) and "while running" in text:
        requested = _REQUESTED.search(text)
        impossible = requested is not None and int(requested[1]) > _physical_memory() > 0
        if impossible or not _MACHINE_FAULT.search(text):
            return InvalidTensor(f"the model cannot run on these inputs: {text}")
    return InferenceFailed(f"inference failed: {text}")


def _short(exc: Exception) -> str:
    text = str(exc).replace("[ONNXRuntimeError] : ", "").strip()
    return " ".join(text.split())[:500]
