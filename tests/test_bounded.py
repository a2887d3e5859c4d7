"""`each_at_most`: every job runs, never more than the bound at once, failures after."""

from __future__ import annotations

import asyncio

import pytest

from shared.bounded import each_at_most


async def test_jobs_run_at_most_the_bound_at_once_and_all_of_them_run() -> None:
    running, most, done = 0, 0, []

    async def job(item: int) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.01)
        running -= 1
        done.append(item)

    await each_at_most(3, range(10), job)
    assert most == 3
    assert sorted(done) == list(range(10))


async def test_a_failure_stops_no_other_job_and_the_first_is_raised() -> None:
    done = []

    async def job(item: int) -> None:
        await asyncio.sleep(0.01 * (5 - item))
        if item in (1, 3):
            raise ValueError(f"item {item}")
        done.append(item)

    with pytest.raises(ValueError, match="item 1"):
        await each_at_most(2, range(5), job)
    assert sorted(done) == [0, 2, 4]
