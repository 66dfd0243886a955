"""The gateway's background loops (`gateway.control.background`): ``poll`` runs its work on
a wake or a timer, and `Tasks.stop` ends it even when the stop meets a wake."""

from __future__ import annotations

import asyncio

from gateway.control.background import Tasks, poll


async def test_a_wake_runs_the_work_at_once() -> None:
    wake, done = asyncio.Event(), asyncio.Event()

    async def work() -> None:
        done.set()

    tasks = Tasks()
    tasks.spawn(poll(wake, 3600, work), "poll")
    wake.set()
    async with asyncio.timeout(5):
        await done.wait()
    await tasks.stop()


async def test_stop_ends_a_loop_whose_wake_has_just_fired() -> None:
    """A registry commit pokes the sync loop as the gateway shuts down: the cancellation
    must not be lost (asyncio.wait_for on 3.11 returned the wake's result instead, and the
    loop ran on while stop() waited for it)."""
    runs: list[int] = []

    async def work() -> None:
        runs.append(1)

    for _ in range(20):
        wake = asyncio.Event()
        tasks = Tasks()
        tasks.spawn(poll(wake, 3600, work), "poll")
        await asyncio.sleep(0)  # the loop waits on the wake
        wake.set()
        await asyncio.sleep(0)  # the wake's waiter is done; the loop has not resumed yet
        stopper = asyncio.create_task(tasks.stop())
        done, _ = await asyncio.wait({stopper}, timeout=5)
        assert stopper in done, "stop() waits for a loop that lost its cancellation"
