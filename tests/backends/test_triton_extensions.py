"""Triton's extensions on real worker processes, driven by unmodified tritonclient.http:
model configuration (a batching and a non-batching worker), statistics after a known
sequence of requests, the nv_inference_* metrics, and the worker's exact-version rule."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.utils import InferenceServerException

from tests.support.workers import WorkerProcess, start_worker

#: The batching worker waits up to a minute for a batch of 4 rows to fill: a 4-row request
#: runs at once, and 4 concurrent 1-row requests run as one batch whatever their timing.
BATCH, DELAY_US = 4, 60_000_000


def _files(model_dir: Path) -> list[str]:
    files = [f"scale@1.0.0={model_dir / 'scale-1.onnx'}",
             f"scale@2.0.0-rc.1={model_dir / 'scale-2.onnx'}",
             f"pre@1.0.0-rc.1={model_dir / 'scale-1.onnx'}",
             f"fixed@1.0.0={model_dir / 'fixed.onnx'}"]  # fmt: skip
    return [a for f in files for a in ("--model-file", f)]


def _start(model_dir: Path, tmp: Path, *batching: str) -> Iterator[WorkerProcess]:
    proc = start_worker([*_files(model_dir), *batching], tmp / "worker.log")
    yield proc
    assert proc.stop() == 0, proc.output()


@pytest.fixture(scope="module")
def batched(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    tmp = tmp_path_factory.mktemp("batched")
    yield from _start(model_dir, tmp, "--max-batch-size", str(BATCH),
                      "--max-queue-delay-us", str(DELAY_US))  # fmt: skip


@pytest.fixture(scope="module")
def unbatched(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    yield from _start(model_dir, tmp_path_factory.mktemp("unbatched"), "--max-batch-size", "1")


def client_of(worker: WorkerProcess) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(worker.address, concurrency=BATCH)


def scale_input(rows: int, width: int = 4) -> list[triton.InferInput]:
    tensor = triton.InferInput("input", [rows, width], "FP32")
    tensor.set_data_from_numpy(np.ones((rows, width), dtype=np.float32))
    return [tensor]


def refused(call: object) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as caught:
        call()  # type: ignore[operator]
    return caught.value


# -- model configuration -----------------------------------------------------------------


def test_config_of_a_batching_worker_leaves_out_the_batch_dimension(
    batched: WorkerProcess,
) -> None:
    config = client_of(batched).get_model_config("scale", "1.0.0")
    assert config == {
        "name": "scale", "platform": "onnxruntime_onnx", "backend": "onnxruntime",
        "max_batch_size": BATCH,
        "input": [{"name": "input", "data_type": "TYPE_FP32", "dims": [4]}],
        "output": [{"name": "output", "data_type": "TYPE_FP32", "dims": [4]}],
        "dynamic_batching": {"max_queue_delay_microseconds": DELAY_US,
                             "preferred_batch_size": [BATCH]},
    }  # fmt: skip
    fixed = client_of(batched).get_model_config("fixed")
    assert (fixed["max_batch_size"], fixed["input"][0]["dims"]) == (0, [2, 3])
    assert "dynamic_batching" not in fixed


def test_config_of_a_worker_without_batching_keeps_the_full_shapes(
    unbatched: WorkerProcess,
) -> None:
    config = client_of(unbatched).get_model_config("scale")
    assert config["max_batch_size"] == 0
    assert config["input"] == [{"name": "input", "data_type": "TYPE_FP32", "dims": [-1, 4]}]
    assert "dynamic_batching" not in config


def test_config_of_an_unknown_model_is_a_404_naming_what_is_loaded(
    unbatched: WorkerProcess,
) -> None:
    response = httpx.get(f"{unbatched.url}/v2/models/nope/config")
    assert response.status_code == 404
    assert response.json() == {
        "error": 'model "nope" is not loaded on this worker (loaded: fixed@1.0.0, '
        "pre@1.0.0-rc.1, scale@1.0.0, scale@2.0.0-rc.1)"
    }


# -- statistics and metrics --------------------------------------------------------------


def test_statistics_and_nv_metrics_count_requests_rows_and_batches(
    batched: WorkerProcess,
) -> None:
    client = client_of(batched)
    for _ in range(2):  # two full batches, one request each
        client.infer("scale", scale_input(BATCH), model_version="1.0.0")
    pending = [client.async_infer("scale", scale_input(1), model_version="1.0.0")
               for _ in range(BATCH)]  # fmt: skip
    for p in pending:  # one batch of four requests
        p.get_result()
    bad = refused(lambda: client.infer("scale", scale_input(1, 5), model_version="1.0.0"))
    assert bad.status() == "400"

    (stats,) = client.get_inference_statistics("scale", "1.0.0")["model_stats"]
    inference = stats["inference_stats"]
    assert (stats["name"], stats["version"]) == ("scale", "1.0.0")
    assert (stats["inference_count"], stats["execution_count"]) == (2 * BATCH + BATCH, 3)
    counts = {k: v["count"] for k, v in inference.items()}
    assert counts == {"success": 6, "fail": 1, "queue": 6, "compute_input": 6,
                      "compute_infer": 6, "compute_output": 6, "cache_hit": 0,
                      "cache_miss": 0}  # fmt: skip
    assert inference["success"]["ns"] > inference["compute_infer"]["ns"] > 0
    assert [(b["batch_size"], b["compute_infer"]["count"]) for b in stats["batch_stats"]] == [
        (BATCH, 3)
    ]
    assert stats["last_inference"] > 1_700_000_000_000  # ms since the epoch

    everything = client.get_inference_statistics()["model_stats"]
    assert [(s["name"], s["version"]) for s in everything] == [
        ("fixed", "1.0.0"), ("pre", "1.0.0-rc.1"), ("scale", "1.0.0"), ("scale", "2.0.0-rc.1")
    ]  # fmt: skip
    assert everything[2] == stats
    both = client.get_inference_statistics("scale")["model_stats"]
    assert [s["version"] for s in both] == ["1.0.0", "2.0.0-rc.1"]
    assert both[1]["inference_count"] == 0

    text = httpx.get(f"{batched.url}/metrics").text
    assert {f.name: f.type for f in text_string_to_metric_families(text)
            if f.name.startswith("nv_")}.keys() >= set(NV)  # fmt: skip
    labels = 'model="scale",version="1.0.0"'
    nv = {
        name: _sample(text, name, labels) for name in NV if name != "nv_inference_request_failure"
    }
    assert nv == {
        "nv_inference_request_success": 6,
        "nv_inference_count": 12,
        "nv_inference_exec_count": 3,
        "nv_inference_request_duration_us": inference["success"]["ns"] // 1000,
        "nv_inference_queue_duration_us": inference["queue"]["ns"] // 1000,
        "nv_inference_compute_infer_duration_us": inference["compute_infer"]["ns"] // 1000,
    }
    failures = re.findall(rf'^nv_inference_request_failure\{{{labels},reason="(\w+)"\}} (\d+)$',
                          text, re.M)  # fmt: skip
    assert dict(failures) == {"REJECTED": "0", "CANCELED": "0", "BACKEND": "0", "OTHER": "1"}
    assert "# TYPE nv_inference_count counter" in text


NV = ("nv_inference_request_success", "nv_inference_request_failure", "nv_inference_count",
      "nv_inference_exec_count", "nv_inference_request_duration_us",
      "nv_inference_queue_duration_us", "nv_inference_compute_infer_duration_us")  # fmt: skip


def _sample(text: str, name: str, labels: str) -> int:
    found = re.findall(rf"^{name}\{{{labels}\}} (\d+)$", text, re.M)
    assert len(found) == 1, f"{name}{{{labels}}} in:\n{text}"
    return int(found[0])


def test_without_batching_each_request_is_one_inference_and_one_execution(
    unbatched: WorkerProcess,
) -> None:
    client = client_of(unbatched)
    for rows in (3, 1, 2):
        client.infer("scale", scale_input(rows), model_version="1.0.0")
    (stats,) = client.get_inference_statistics("scale", "1.0.0")["model_stats"]
    assert (stats["inference_count"], stats["execution_count"]) == (3, 3)
    assert [(b["batch_size"], b["compute_infer"]["count"]) for b in stats["batch_stats"]] == [
        (1, 3)
    ]
    text = httpx.get(f"{unbatched.url}/metrics").text
    assert _sample(text, "nv_inference_count", 'model="scale",version="1.0.0"') == 3


def test_statistics_of_an_unknown_model_or_a_range_are_refused(
    unbatched: WorkerProcess,
) -> None:
    client = client_of(unbatched)
    assert refused(lambda: client.get_inference_statistics("nope")).status() == "404"
    assert refused(lambda: client.get_inference_statistics("scale", "^1")).status() == "400"


# -- the exact-version rule --------------------------------------------------------------

LOADED = "(loaded: 2.0.0-rc.1, 1.0.0)"


@pytest.mark.parametrize("reference", ["^1.0", "stable", "latest", "prod", "1.x"])
def test_a_reference_in_the_path_that_is_not_an_exact_version_is_a_400(
    unbatched: WorkerProcess, reference: str
) -> None:
    error = refused(
        lambda: client_of(unbatched).infer("scale", scale_input(1), model_version=reference)
    )
    assert error.status() == "400"
    assert f'"{reference}" is not an exact version of "scale"' in error.message()
    assert LOADED in error.message()


def test_a_range_in_x_model_version_is_refused_not_served_by_a_prerelease(
    unbatched: WorkerProcess,
) -> None:
    client = client_of(unbatched)
    headers = {"X-Model-Version": ">=1.0.0 <1.1.0"}
    error = refused(lambda: client.infer("scale", scale_input(1), headers=headers))
    assert error.status() == "400"
    assert '">=1.0.0 <1.1.0" is not an exact version of "scale"' in error.message()
    assert LOADED in error.message()
    exact = client.infer("scale", scale_input(1), headers={"X-Model-Version": "2.0.0-rc.1"})
    assert exact.get_response()["model_version"] == "2.0.0-rc.1"


def test_a_version_that_is_not_loaded_is_a_400_listing_the_loaded_ones(
    unbatched: WorkerProcess,
) -> None:
    client = client_of(unbatched)
    for call in (lambda: client.infer("scale", scale_input(1), model_version="1.1.0"),
                 lambda: client.get_model_config("scale", "1.1.0"),
                 lambda: client.get_model_metadata("scale", "1.1.0")):  # fmt: skip
        error = refused(call)
        assert error.status() == "400"
        assert 'version "1.1.0" of "scale" is not loaded on this worker' in error.message()
        assert LOADED in error.message()
    assert not client.is_model_ready("scale", "1.1.0")


def test_path_and_header_must_agree(unbatched: WorkerProcess) -> None:
    client = client_of(unbatched)
    differ = {"X-Model-Version": "2.0.0-rc.1"}
    error = refused(
        lambda: client.infer("scale", scale_input(1), model_version="1.0.0", headers=differ)
    )
    assert error.status() == "400"
    assert 'the path names version "1.0.0" but X-Model-Version says "2.0.0-rc.1"' in (
        error.message()
    )
    same = {"X-Model-Version": "1.0.0"}
    result = client.infer("scale", scale_input(1), model_version="1.0.0", headers=same)
    assert result.get_response()["model_version"] == "1.0.0"


def test_without_a_version_the_highest_release_serves_never_a_prerelease(
    unbatched: WorkerProcess,
) -> None:
    client = client_of(unbatched)
    assert client.infer("scale", scale_input(1)).get_response()["model_version"] == "1.0.0"
    assert client.get_model_config("scale")["name"] == "scale"
    assert client.is_model_ready("scale")
    with httpx.Client(base_url=unbatched.url) as http:
        served = http.post("/v2/models/scale/infer", json=_json_body())
        assert served.headers["x-model-version"] == "1.0.0"
        meta = http.get("/v2/models/scale").json()
        assert meta["versions"] == ["2.0.0-rc.1", "1.0.0"]


def test_without_a_version_only_prereleases_loaded_is_a_400_naming_them(
    unbatched: WorkerProcess,
) -> None:
    client = client_of(unbatched)
    error = refused(lambda: client.infer("pre", scale_input(1)))
    assert error.status() == "400"
    assert error.message() == (
        '"pre" has only prereleases loaded on this worker (loaded: 1.0.0-rc.1); '
        "name one: /versions/{version} or X-Model-Version"
    )
    assert not client.is_model_ready("pre")
    assert client.is_model_ready("pre", "1.0.0-rc.1")
    named = client.infer("pre", scale_input(1), model_version="1.0.0-rc.1")
    assert named.get_response()["model_version"] == "1.0.0-rc.1"


def _json_body() -> dict[str, object]:
    return {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1] * 4}]}
