"""Stopping a background loop that waits on NATS.

nats-py waits with `asyncio.wait_for`, which on Python 3.11 can swallow a cancellation
that arrives as the wait ends: the loop then runs on. Such loops also check a stop flag
of their own, and the task is given a few seconds to end rather than waited for forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

log = logging.getLogger(__name__)
STOP_WAIT_SECONDS = 5.0


async def stop_task(task: asyncio.Task[None] | None) -> None:
    """Cancel `task` and wait (a few seconds at most) for it to end. A cancellation of the
    caller itself is not swallowed: it goes on up, while the task's own does not."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(STOP_WAIT_SECONDS):
            await asyncio.wait({task})
    if not task.done():
        log.warning(
            "%s did not end within %ss of being stopped", task.get_name(), STOP_WAIT_SECONDS
        )
    elif not task.cancelled():
        task.result()  # an error it ended with is the stopper's to see


async def stop_watch(watcher: Any, task: asyncio.Task[None] | None) -> None:
    """Stop a key-value `watcher` (its errors do not matter once stopping) and the task that
    follows it."""
    if watcher is not None:
        with contextlib.suppress(Exception):
            await watcher.stop()
    await stop_task(task)
