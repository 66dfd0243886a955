"""Triton's model configuration and statistics extensions, transport-free.

``model_config`` describes a loaded version as Triton's ``ModelConfig``: what its ONNX
signature says and how this worker batches it. ``model_statistics`` and ``statistics``
turn a version's counters (`backends.metrics.VersionMetrics`) into Triton's
``ModelStatistics``. Both return the protobuf messages of `modelgate.core.proto`, which
the gRPC server sends as they are; ``triton_json`` renders them as Triton's HTTP JSON.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from backends.batcher import BatchPolicy
from backends.metrics import Duration, VersionMetrics
from backends.signature import Signature, TensorSpec
from modelgate.core.proto import inference_pb2 as pb

__all__ = [
    "BACKEND",
    "PLATFORM",
    "model_config",
    "model_statistics",
    "statistics",
    "triton_json",
]

PLATFORM = "onnxruntime_onnx"
BACKEND = "onnxruntime"


def model_config(
    name: str, signature: Signature, policy: BatchPolicy, *, batching: bool
) -> pb.ModelConfig:
    """Triton's configuration of ``name`` from its signature and the batching policy.

    ``batching`` says whether this worker batches the version (`Batcher.batchable`). Then
    ``max_batch_size`` is the policy's maximum, ``dims`` leave out the batch dimension
    (as Triton's do) and ``dynamic_batching`` carries the queue delay; otherwise
    ``max_batch_size`` is 0 and ``dims`` are the full shapes. ``-1`` is a variable size.

    NOTE: ``preferred_batch_size`` is ``[max_batch_size]`` only with a queue delay: the
    batcher then waits for a full batch; without one it runs what has queued at once.
    """
    config = pb.ModelConfig(name=name, platform=PLATFORM, backend=BACKEND)
    config.max_batch_size = policy.max_batch_size if batching else 0
    skip = 1 if batching else 0
    for spec in signature.inputs:
        config.input.append(pb.ModelInput(name=spec.name, data_type=_data_type(spec),
                                          dims=spec.shape[skip:]))  # fmt: skip
    for spec in signature.outputs:
        config.output.append(pb.ModelOutput(name=spec.name, data_type=_data_type(spec),
                                            dims=spec.shape[skip:]))  # fmt: skip
    if batching:
        delay = policy.max_queue_delay_us
        config.dynamic_batching.max_queue_delay_microseconds = delay
        if delay > 0:
            config.dynamic_batching.preferred_batch_size.append(policy.max_batch_size)
    return config


def _data_type(spec: TensorSpec) -> str:
    """Triton's ``DataType`` name of a protocol datatype (BYTES is ``TYPE_STRING``)."""
    return "TYPE_STRING" if spec.datatype == "BYTES" else f"TYPE_{spec.datatype}"


def _set(target: pb.StatisticDuration, source: Duration) -> None:
    target.count = source.count
    target.ns = source.ns


def model_statistics(name: str, version: str, metrics: VersionMetrics) -> pb.ModelStatistics:
    """Triton's statistics of one version since this worker first loaded it.

    Every duration is present, zeros included (perf_analyzer reads each one). The worker
    has no response cache (``cache_hit``/``cache_miss`` stay 0), and it times the input
    and output work per request (decoding, encoding), not per batch, so the batch entries'
    ``compute_input``/``compute_output`` are 0.
    """
    stats = pb.ModelStatistics(
        name=name,
        version=version,
        last_inference=metrics.last_inference_ms,
        inference_count=metrics.inference_count,
        execution_count=metrics.execution_count,
    )
    inference = stats.inference_stats
    _set(inference.success, metrics.success)
    _set(inference.fail, metrics.fail)
    _set(inference.queue, metrics.queue)
    _set(inference.compute_input, metrics.compute_input)
    _set(inference.compute_infer, metrics.compute_infer)
    _set(inference.compute_output, metrics.compute_output)
    inference.cache_hit.SetInParent()
    inference.cache_miss.SetInParent()
    for size in sorted(metrics.batches):
        executed = metrics.batches[size]
        batch = stats.batch_stats.add(batch_size=size)
        _set(batch.compute_infer, executed)
        batch.compute_input.SetInParent()
        batch.compute_output.SetInParent()
    return stats


def statistics(versions: Iterable[tuple[str, str, VersionMetrics]]) -> pb.ModelStatisticsResponse:
    """``{model_stats: [...]}`` for ``(model, version, metrics)`` triples, in that order."""
    return pb.ModelStatisticsResponse(
        model_stats=[model_statistics(m, v, metrics) for m, v, metrics in versions]
    )


_INT64 = frozenset(
    {
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_FIXED64,
        FieldDescriptor.TYPE_SFIXED64,
    }
)


def triton_json(message: Message) -> dict[str, Any]:
    """``message`` as Triton writes it in JSON: proto field names, every scalar field even
    when zero, enums by name, and 64-bit integers as JSON numbers.

    NOTE: proto3's JSON mapping writes 64-bit integers as strings; Triton turns them back
    into numbers, and perf_analyzer (``GetUint64``) and scripts reading ``dims`` or
    counts depend on that.
    """
    data = MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    _numbers(message.DESCRIPTOR, data)
    return data


def _numbers(descriptor: Any, data: dict[str, Any]) -> None:
    for field in descriptor.fields:
        value = data.get(field.name)
        if value is None:
            continue
        repeated = field.is_repeated
        if field.message_type is not None:
            if field.message_type.GetOptions().map_entry:
                entry = field.message_type.fields_by_name["value"]
                if entry.message_type is not None:
                    for item in value.values():
                        _numbers(entry.message_type, item)
                elif entry.type in _INT64:
                    data[field.name] = {k: int(v) for k, v in value.items()}
            elif repeated:
                for item in value:
                    _numbers(field.message_type, item)
            else:
                _numbers(field.message_type, value)
        elif field.type in _INT64:
            data[field.name] = [int(v) for v in value] if repeated else int(value)
