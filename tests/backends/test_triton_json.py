"""``backends.triton.triton_json``: Triton's JSON for protobuf messages, 64-bit integers as
numbers at every depth (repeated, nested, map values), zeros and empty lists present."""

from __future__ import annotations

from backends.triton import triton_json
from modelgate.core.proto import inference_pb2 as pb


def test_64_bit_integers_are_numbers_in_repeated_nested_and_map_fields() -> None:
    config = pb.ModelConfig(name="m", input=[pb.ModelInput(name="x", dims=[-1, 2**40])])
    config.dynamic_batching.max_queue_delay_microseconds = 2**63
    assert triton_json(config) == {
        "name": "m", "platform": "", "backend": "", "max_batch_size": 0,
        "input": [{"name": "x", "data_type": "TYPE_INVALID", "dims": [-1, 2**40]}],
        "output": [],
        "dynamic_batching": {"preferred_batch_size": [], "max_queue_delay_microseconds": 2**63},
    }  # fmt: skip
    request = pb.ModelInferRequest(parameters={"p": pb.InferParameter(int64_param=-5)})
    assert triton_json(request)["parameters"] == {"p": {"int64_param": -5}}


def test_statistics_keep_zero_counts() -> None:
    stats = pb.ModelStatistics(name="m", version="1.0.0")
    stats.inference_stats.success.SetInParent()
    shown = triton_json(stats)
    assert shown["inference_stats"] == {"success": {"count": 0, "ns": 0}}
    assert (shown["last_inference"], shown["inference_count"], shown["batch_stats"]) == (0, 0, [])
