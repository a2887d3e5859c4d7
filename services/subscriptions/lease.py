"""Holding a lease for as long as the work under it lasts, and no longer.

A lease in the database says which instance does a piece of work (leads the fan-out,
delivers a subscription). It must be short, so that the work moves to another instance
soon after its holder dies, yet outlast anything the holder does under it, such as a send
that waits for a slow partner. So the lease is short and renewed in the background, every
third of its length, while the work runs: a live holder keeps it through a slow send, and
a dead one loses it at most one lease length after its last renewal.

Renewal never takes a lease back: once a renewal finds the lease held by another (or
gone), `held` stays False and the work stops at its next check. What must happen once
under a lease (recording the fan-out's progress, numbering a subscription's events) is
guarded by the lease owner in the same statement, so a holder that lost its lease cannot
do it again beside its successor even before it notices.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from types import TracebackType

from shared.transport.stopping import stop_task

log = logging.getLogger(__name__)

RENEWALS_PER_LEASE = 3


class KeptLease:
    """`async with KeptLease(renew, seconds):` renews while the block runs."""

    def __init__(self, renew: Callable[[], Awaitable[bool]], seconds: float) -> None:
        self._renew = renew
        self._every = seconds / RENEWALS_PER_LEASE
        self._task: asyncio.Task[None] | None = None
        self.held = True

    async def __aenter__(self) -> KeptLease:
        self._task = asyncio.create_task(self._keep())
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await stop_task(self._task)

    async def _keep(self) -> None:
        while self.held:
            await asyncio.sleep(self._every)
            try:
                self.held = await self._renew()
            except asyncio.CancelledError:
                raise
            except Exception:
                # Not reachable now (the database is down): the lease runs out unless a
                # later renewal succeeds, and no other instance can take it meanwhile
                # without the same database.
                log.warning("renewing a lease failed; trying again", exc_info=True)
