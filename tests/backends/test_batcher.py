"""The dynamic batcher, driven in-process with a numpy "model" and a gate that holds the
executor busy so that requests pile up deterministically (no sleeps, no timing)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import numpy as np
import pytest

from backends.batcher import Batcher, BatchPolicy
from backends.errors import InvalidTensor, QueueFull


class Model:
    """``y = 2x + row_sum(x)``; records each batch; ``hold()`` blocks the next run."""

    def __init__(self, aligned: bool = True) -> None:
        self.batches: list[int] = []
        self.aligned = aligned
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def hold(self) -> None:
        self.gate.clear()
        self.entered.clear()

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.entered.set()
        self.gate.wait(timeout=30)
        x = inputs["x"]
        if np.isnan(x).any():
            raise InvalidTensor("x holds NaN")
        self.batches.append(x.shape[0])
        y = 2 * x + x.sum(axis=1, keepdims=True)
        if not self.aligned:
            return {"y": y, "total": x.sum(keepdims=True)}
        return {"y": y}


def expected(x: np.ndarray) -> np.ndarray:
    return 2 * x + x.sum(axis=1, keepdims=True)


@pytest.fixture
def model() -> Iterator[Model]:
    m = Model()
    yield m
    m.gate.set()


async def wait_entered(model: Model) -> None:
    await asyncio.to_thread(model.entered.wait, 30)


def make(model: Model, batch: int = 8, queue: int = 64, batchable: bool = True,
         delay_us: int = 0) -> Batcher:  # fmt: skip
    policy = BatchPolicy(max_batch_size=batch, max_queue_size=queue, max_queue_delay_us=delay_us)
    batcher = Batcher(model, policy, model="m", version="1.0.0", batchable=batchable)
    batcher.start()
    return batcher


async def run_held(batcher: Batcher, model: Model,
                   requests: list[np.ndarray]) -> list[np.ndarray]:  # fmt: skip
    """Submit one request, hold it in the executor, queue the rest, then release."""
    model.hold()
    first = asyncio.create_task(batcher.submit({"x": requests[0]}))
    await wait_entered(model)
    rest = [asyncio.create_task(batcher.submit({"x": x})) for x in requests[1:]]
    await asyncio.sleep(0)  # let every submission reach the queue
    model.gate.set()
    results = await asyncio.gather(first, *rest)
    return [r.outputs["y"] for r in results]


async def test_results_split_back_exactly_with_mixed_sizes(model: Model) -> None:
    batcher = make(model, batch=8)
    rng = np.random.default_rng(0)
    requests = [rng.standard_normal((int(n), 3)) for n in [1, 1, 3, 1, 2, 4, 1, 1, 5, 2, 1]]
    outputs = await run_held(batcher, model, requests)
    for x, y in zip(requests, outputs, strict=True):
        np.testing.assert_array_equal(y, expected(x))
    assert model.batches[0] == 1
    assert max(model.batches) == 8
    assert all(b <= 8 for b in model.batches)
    assert sum(model.batches) == sum(x.shape[0] for x in requests)
    await batcher.close()


async def test_max_batch_size_one_turns_batching_off(model: Model) -> None:
    batcher = make(model, batch=1)
    requests = [np.full((1, 2), float(i)) for i in range(6)]
    outputs = await run_held(batcher, model, requests)
    assert model.batches == [1] * 6
    for x, y in zip(requests, outputs, strict=True):
        np.testing.assert_array_equal(y, expected(x))
    await batcher.close()


async def test_unbatchable_model_runs_each_request_alone(model: Model) -> None:
    batcher = make(model, batchable=False)
    requests = [np.ones((2, 2)) * i for i in range(5)]
    await run_held(batcher, model, requests)
    assert model.batches == [2] * 5
    await batcher.close()


async def test_different_trailing_shapes_and_oversized_requests_do_not_mix(model: Model) -> None:
    batcher = make(model, batch=4)
    requests = [np.ones((1, 2)), np.ones((1, 3)), np.ones((1, 2)), np.ones((6, 2)),
                np.ones((1, 3)), np.ones((2, 2))]  # fmt: skip
    outputs = await run_held(batcher, model, requests)
    for x, y in zip(requests, outputs, strict=True):
        np.testing.assert_array_equal(y, expected(x))
    # [1,2] runs first; then both [1,3]; then [1,2] + [2,2]; the [6,2] is over the max: alone
    assert model.batches == [1, 2, 3, 6]
    await batcher.close()


async def test_outputs_that_do_not_follow_the_batch_disable_batching() -> None:
    model = Model(aligned=False)
    batcher = make(model, batch=8)
    requests = [np.full((1, 2), float(i)) for i in range(5)]
    outputs = await run_held(batcher, model, requests)
    for x, y in zip(requests, outputs, strict=True):
        np.testing.assert_array_equal(y, expected(x))
    assert not batcher.batchable
    await batcher.close()
    model.gate.set()


async def test_a_failing_batch_is_retried_request_by_request(model: Model) -> None:
    batcher = make(model, batch=8)
    model.hold()
    first = asyncio.create_task(batcher.submit({"x": np.ones((1, 2))}))
    await wait_entered(model)
    good = asyncio.create_task(batcher.submit({"x": np.ones((1, 2))}))
    bad = asyncio.create_task(batcher.submit({"x": np.full((1, 2), np.nan)}))
    await asyncio.sleep(0)
    model.gate.set()
    await first
    np.testing.assert_array_equal((await good).outputs["y"], expected(np.ones((1, 2))))
    with pytest.raises(InvalidTensor, match="NaN"):
        await bad
    await batcher.close()


async def test_full_queue_answers_503_with_retry_after(model: Model) -> None:
    batcher = make(model, queue=3)
    model.hold()
    running = asyncio.create_task(batcher.submit({"x": np.ones((1, 2))}))
    await wait_entered(model)
    queued = [asyncio.create_task(batcher.submit({"x": np.ones((1, 2))})) for _ in range(3)]
    await asyncio.sleep(0)
    assert batcher.queue_depth == 3
    with pytest.raises(QueueFull) as full:
        await batcher.submit({"x": np.ones((1, 2))})
    assert full.value.status_code == 503
    assert full.value.headers == {"Retry-After": "1"}
    assert 'queue of "m" 1.0.0 is full (3 requests waiting)' in full.value.message
    model.gate.set()
    await asyncio.gather(running, *queued)
    await batcher.close()


async def test_queue_delay_fills_a_batch_without_waiting_once_full(model: Model) -> None:
    batcher = make(model, batch=4, delay_us=60_000_000)
    results = await asyncio.gather(*(batcher.submit({"x": np.ones((1, 2))}) for _ in range(4)))
    assert model.batches == [4]
    assert all(r.batch_size == 4 for r in results)
    await batcher.close()


async def test_cancelled_requests_are_skipped_and_close_finishes_the_queue(model: Model) -> None:
    batcher = make(model, batch=2)
    model.hold()
    first = asyncio.create_task(batcher.submit({"x": np.ones((1, 2))}))
    await wait_entered(model)
    gone = asyncio.create_task(batcher.submit({"x": np.ones((1, 2)) * 5}))
    kept = [asyncio.create_task(batcher.submit({"x": np.ones((1, 2)) * i})) for i in range(3)]
    await asyncio.sleep(0)
    gone.cancel()
    closing = asyncio.create_task(batcher.close())
    await asyncio.sleep(0)
    model.gate.set()
    await closing
    await first
    assert [(await k).outputs["y"][0, 0] for k in kept] == [0.0, 4.0, 8.0]
    assert sum(model.batches) == 4
    with pytest.raises(QueueFull):
        await batcher.submit({"x": np.ones((1, 2))})
