"""Places for the requests of one service instance: so many served at once, a bounded
queue of those waiting for a place, and every decision taken at once.

nats-py hands a subscription's messages to its callback one at a time, so the callback must
never wait for a place: a request held there would hold up every request after it on the
same subject. `take` says at once whether a request has its place, waits in turn for one,
or is refused because the queue is full.
"""

from __future__ import annotations

import asyncio
from collections import deque


class Refused(Exception):
    """The instance is stopping: a request still waiting for a place will not be served."""


class Places:
    def __init__(self, size: int, max_waiting: int) -> None:
        self._free = size
        self._max_waiting = max_waiting
        self._waiting: deque[asyncio.Future[None]] = deque()

    def take(self) -> asyncio.Future[None] | None:
        """A place: done now when one is free, else done when one is handed over (in turn);
        None when `max_waiting` requests wait already. Its holder gives it back."""
        place: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._free > 0:
            self._free -= 1
            place.set_result(None)
            return place
        while self._waiting and self._waiting[0].done():  # waiters that gave up
            self._waiting.popleft()
        if len(self._waiting) >= self._max_waiting:
            return None
        self._waiting.append(place)
        return place

    def give_back(self) -> None:
        while self._waiting:
            place = self._waiting.popleft()
            if not place.done():
                place.set_result(None)  # handed over: its holder gives it back in turn
                return
        self._free += 1

    def refuse_waiting(self) -> None:
        """Every request still waiting learns that it will not be served (`Refused`)."""
        while self._waiting:
            place = self._waiting.popleft()
            if not place.done():
                place.set_exception(Refused())
