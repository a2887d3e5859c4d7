"""Concurrent calls answered together, so that under load many requests share one round
trip (an acknowledged publish, a statement) instead of paying one each.

A call joins the batch that is gathering, or begins one. A batch gathers until it holds a
slot (at most `in_flight` batches run at once) and, with a linger, a little longer; then it
takes every call gathered and answers them with one run of the batch function per part
(`cut`). A call made alone waits for nothing but the next turn of the event loop (and the
linger).

The invariant: every call is answered exactly once, with its own result from its part's
run, with the exception its part's run raised, or, when the batch's task is stopped
midway, with `stopping()`; never left waiting. It holds because the calls are taken out of
the gathering list in one step with no await between, and whatever the batch's task has
taken and not yet answered when it ends is answered by its `finally` path. A call whose
caller was cancelled meanwhile is skipped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def whole(items: list[T]) -> list[list[T]]:
    """One part: the batch as gathered."""
    return [items] if items else []


def _answer_all(waiting: Sequence[tuple[T, asyncio.Future[R]]], failure: BaseException) -> None:
    for _, future in waiting:
        if not future.done():
            future.set_exception(failure)


class Gathered(Generic[T, R]):
    """`await gathered(item)`: the result `run` gave for `item`, run with the calls that
    gathered with it (in the order made; `run` answers one result per item, in order)."""

    def __init__(
        self,
        run: Callable[[list[T]], Awaitable[Sequence[R]]],
        *,
        in_flight: int,
        stopping: Callable[[], BaseException],
        linger: float = 0.0,
        cut: Callable[[list[T]], list[list[T]]] = whole,
    ) -> None:
        """`stopping`: the exception for calls whose batch was stopped midway (the service
        stopping); `cut`: the parts one batch is run in, in order, which together are the
        batch (a size limit)."""
        self._run = run
        self._slots = asyncio.Semaphore(in_flight)
        self._stopping = stopping
        self._linger = linger
        self._cut = cut
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._gathering = False
        """A batch is gathering: calls made now go in it."""
        self.flushing: set[asyncio.Task[None]] = set()
        """The batches' tasks, gathering or running."""
        self.runs = 0
        """Runs of the batch function (parts), answered or failed."""
        self.calls = 0
        """Calls taken into a batch."""

    async def __call__(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if not self._gathering:
            self._gathering = True
            task = asyncio.create_task(self._flush())
            self.flushing.add(task)
            task.add_done_callback(self.flushing.discard)
        return await future

    async def _flush(self) -> None:
        taken: list[tuple[T, asyncio.Future[R]]] = []
        try:
            async with self._slots:
                if self._linger:
                    await asyncio.sleep(self._linger)
                self._gathering = False
                taken, self._waiting = self._waiting, []
                self.calls += len(taken)
                await self._answer(taken)
        except BaseException:
            if not taken:  # stopped while gathering: the gathered calls are this task's
                self._gathering = False
                taken, self._waiting = self._waiting, []
            _answer_all(taken, self._stopping())
            raise

    async def _answer(self, taken: list[tuple[T, asyncio.Future[R]]]) -> None:
        start = 0
        for part in self._cut([item for item, _ in taken]):
            waiting, start = taken[start : start + len(part)], start + len(part)
            self.runs += 1
            try:
                results = await self._run(part)
            except Exception as exc:
                _answer_all(waiting, exc)
                continue
            for (_, future), result in zip(waiting, results, strict=True):
                if not future.done():
                    future.set_result(result)
        if start != len(taken):
            raise RuntimeError("cut must return the batch's items, in order, in parts")
