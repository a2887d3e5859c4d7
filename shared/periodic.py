"""Running a service's scheduled job: at start, then every interval, until stopped.

Sweeps and deadline monitors are idempotent jobs over the service's own data; a run that
fails is logged and tried again within a minute rather than waiting a whole interval.
When the test clock is moved (`shared.clock.moved`) the job runs at once, so what the new
date brings (a deadline passed, a 16th birthday) shows without waiting an interval.
A job waits on NATS, where a cancellation can be swallowed (`shared.transport.stopping`):
the loop also ends on a flag of its own, so `stop` never waits for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from shared import clock
from shared.transport.stopping import stop_task

log = logging.getLogger(__name__)

RETRY_SECONDS = 60.0


class Periodic:
    def __init__(
        self, name: str, job: Callable[[], Awaitable[int]], interval: float, done: str
    ) -> None:
        """`job` returns how many things it did; `done` is logged with that count when it
        is not 0, e.g. "marked %d referrals past a deadline"."""
        self.name = name
        self._job = job
        self._interval = interval
        self._done = done
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._unlisten: Callable[[], None] | None = None
        self._stopping = False

    async def start(self) -> None:
        self._stopping = False
        self._unlisten = clock.on_moved(self._wake.set)
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = None
        self._stopping = True
        self._wake.set()
        await stop_task(self._task)
        self._task = None

    async def _run(self) -> None:
        while not self._stopping:
            delay = self._interval
            try:
                count = await self._job()
                if count:
                    log.info(self._done, count)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s failed; it runs again within a minute", self.name)
                delay = min(delay, RETRY_SECONDS)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            self._wake.clear()
