"""Running one job per item with a bound on how many run at once.

A consumer that must do a slow, independent thing for each child in a batch (read the
directory over NATS, write under the child's lock) spends most of its time waiting for
answers; doing a few children at once keeps the batch's wall time down without letting a
large batch open more database connections or directory requests than the service has.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

T = TypeVar("T")


async def each_at_most(
    limit: int, items: Iterable[T], job: Callable[[T], Awaitable[object]]
) -> None:
    """Run `job` for every item, at most `limit` at once. Every job runs to its end (one
    failure cancels no other, so no work is left half done); then the first failure, in
    the items' order, is raised."""
    slots = asyncio.Semaphore(limit)

    async def one(item: T) -> None:
        async with slots:
            await job(item)

    outcomes = await asyncio.gather(*(one(item) for item in items), return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
