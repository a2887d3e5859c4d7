"""Calls gathered into batches are each answered exactly once: with their own result, with
their part's failure, or, when the batch is stopped, with the stopping answer; never left
waiting, and never more batches running at once than allowed."""

from __future__ import annotations

import asyncio

import pytest

from shared.gathered import Gathered

pytestmark = pytest.mark.unit


class Stopping(Exception):
    pass


class Runs:
    """A batch function that doubles its items, recording each batch and how many ran at
    once; `release` holds every run until it is set."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.running = 0
        self.most_at_once = 0
        self.release = asyncio.Event()
        self.release.set()
        self.fail_on = fail_on

    async def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(items)
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            await self.release.wait()
            if self.fail_on in items:
                raise ValueError(f"batch with {self.fail_on}")
            return [2 * item for item in items]
        finally:
            self.running -= 1


def pairs(items: list[int]) -> list[list[int]]:
    return [items[n : n + 2] for n in range(0, len(items), 2)]


async def test_calls_made_together_share_a_run_and_each_gets_its_own_result() -> None:
    runs = Runs()
    gathered = Gathered(runs, in_flight=1, stopping=Stopping)
    assert await asyncio.gather(*(gathered(n) for n in range(10))) == [2 * n for n in range(10)]
    assert runs.batches == [list(range(10))]
    assert await gathered(7) == 14, "a call alone is answered too"
    assert gathered.runs == 2 and gathered.calls == 11


async def test_calls_made_while_every_slot_is_busy_gather_for_the_next_run() -> None:
    runs = Runs()
    runs.release.clear()
    gathered = Gathered(runs, in_flight=2, stopping=Stopping)
    first = [asyncio.create_task(gathered(n)) for n in range(3)]
    await asyncio.sleep(0.01)
    second = [asyncio.create_task(gathered(n)) for n in range(3, 5)]
    await asyncio.sleep(0.01)
    third = [asyncio.create_task(gathered(n)) for n in range(5, 9)]
    await asyncio.sleep(0.01)
    assert runs.batches == [[0, 1, 2], [3, 4]], "two running, the rest gathering"
    runs.release.set()
    results = await asyncio.gather(*first, *second, *third)
    assert results == [2 * n for n in range(9)]
    assert runs.batches == [[0, 1, 2], [3, 4], [5, 6, 7, 8]]
    assert runs.most_at_once == 2


async def test_a_failing_part_fails_only_its_own_calls() -> None:
    runs = Runs(fail_on=3)
    gathered = Gathered(runs, in_flight=1, stopping=Stopping, cut=pairs)
    answers = await asyncio.gather(*(gathered(n) for n in range(6)), return_exceptions=True)
    assert answers[:2] == [0, 2] and answers[4:] == [8, 10]
    assert all(isinstance(a, ValueError) for a in answers[2:4]), answers
    assert runs.batches == [[0, 1], [2, 3], [4, 5]]


@pytest.mark.parametrize("while_", ["gathering", "running"])
async def test_a_stopped_batch_answers_its_calls_and_the_next_call_is_served(
    while_: str,
) -> None:
    runs = Runs()
    runs.release.clear()
    gathered = Gathered(runs, in_flight=1, stopping=Stopping, linger=0.5)
    waiting = [asyncio.create_task(gathered(n)) for n in range(3)]
    await asyncio.sleep(0.01 if while_ == "gathering" else 0.6)
    assert runs.batches == ([] if while_ == "gathering" else [[0, 1, 2]])
    for task in list(gathered.flushing):
        task.cancel()
    answers = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(a, Stopping) for a in answers), answers
    runs.release.set()
    assert await gathered(4) == 8


async def test_a_caller_that_gives_up_leaves_the_others_answered() -> None:
    runs = Runs()
    runs.release.clear()
    gathered = Gathered(runs, in_flight=1, stopping=Stopping)
    waiting = [asyncio.create_task(gathered(n)) for n in range(3)]
    await asyncio.sleep(0.01)
    waiting[1].cancel()
    runs.release.set()
    assert await waiting[0] == 0 and await waiting[2] == 4
    assert waiting[1].cancelled()


async def test_a_cut_that_loses_calls_answers_them_with_the_stopping_answer() -> None:
    runs = Runs()
    gathered = Gathered(runs, in_flight=1, stopping=Stopping, cut=lambda items: [items[:1]])
    answers = await asyncio.gather(*(gathered(n) for n in range(3)), return_exceptions=True)
    assert answers[0] == 0
    assert all(isinstance(a, Stopping) for a in answers[1:]), answers
