"""A scheduled job stops when its service stops, even when the job swallowed the
cancellation (nats-py's waits can, `shared.transport.stopping`): a stop that waited for
ever would hang the service's shutdown."""

from __future__ import annotations

import asyncio

from shared.periodic import Periodic
from tests.support import SwallowsItsCancellation


async def test_stop_ends_a_job_that_swallowed_the_cancellation() -> None:
    swallowing = SwallowsItsCancellation()
    job = Periodic("swallowing", swallowing, interval=3600, done="did %d")
    await job.start()
    task = job._task
    assert task is not None
    async with asyncio.timeout(5):
        await swallowing.running.wait()
    async with asyncio.timeout(2):
        await job.stop()
    assert task.done()
    assert swallowing.runs == 1, "the job ran again after it was told to stop"


async def test_a_job_runs_at_start_and_again_when_woken_by_a_moved_clock() -> None:
    ran = asyncio.Queue[int]()

    async def counted() -> int:
        ran.put_nowait(1)
        return 1

    job = Periodic("counted", counted, interval=3600, done="did %d")
    await job.start()
    try:
        async with asyncio.timeout(5):
            await ran.get()
        job._wake.set()  # what a move of the test clock does (`clock.on_moved`)
        async with asyncio.timeout(5):
            await ran.get()
    finally:
        await job.stop()
