"""Running a service's scheduled job: at start, then every interval, until stopped.

Sweeps and deadline monitors are idempotent jobs over the service's own data; a run that
fails is logged and tried again within a minute rather than waiting a whole interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

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

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
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
            await asyncio.sleep(delay)
