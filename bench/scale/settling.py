"""Waiting until the stack has done what a load set off after its last answer.

A write's answer leaves before its consequences are done: the outbox relay publishes its
events, the consent service folds them into the children's access states (relations,
parents) and stores the audit trail. The next party's import needs some of that (a BUP
writes a child's care team on the relation its referral gave it), and a measurement taken
while it is still going on measures the backlog. So the run asks the stack, as `barnebro
status` does over NATS, until every service's outbox is empty and every durable consumer
of the event and audit streams has nothing pending or unacknowledged, twice in a row.
"""

from __future__ import annotations

import asyncio
import time

from nats.aio.client import Client as NATS

from services.operator.status import Status, gather
from shared.config import Settings

QUIET_ROUNDS = 2
"""Looks in a row that must find nothing to do: one look reads the outboxes and the
consumers one after the other, and work can move from one to the other in between."""
ANSWER_WINDOW = 0.25
"""Seconds a look waits for the services' answers; a service that has not answered by
then counts as busy (on this stack each service runs one instance)."""
PAUSE = 0.25


def backlog(status: Status) -> int | None:
    """Events not yet published by an outbox, and messages a consumer has not yet done;
    None when a service did not answer."""
    if not all(status.instances.values()):
        return None
    unpublished = sum(
        int(answer.get("outbox_backlog") or 0)
        for answers in status.instances.values()
        for answer in answers
    )
    undone = sum(int(c["pending"]) + int(c["awaiting_ack"]) for c in status.consumers)
    return unpublished + undone


async def settle(nc: NATS, settings: Settings, stall_limit: float) -> float:
    """Wait until the stack has no backlog; the seconds it took. A backlog may take long
    to work off (a large import leaves the consent service hours of events), so this
    gives up only when it has not shrunk for `stall_limit` seconds."""
    started = last_progress = time.perf_counter()
    quiet = 0
    smallest: int | None = None
    while True:
        left = backlog(await gather(nc, settings, ANSWER_WINDOW))
        quiet = quiet + 1 if left == 0 else 0
        if quiet >= QUIET_ROUNDS:
            return time.perf_counter() - started
        now = time.perf_counter()
        if left is not None and (smallest is None or left < smallest):
            smallest, last_progress = left, now
        elif now - last_progress > stall_limit:
            doing = "a service does not answer" if left is None else f"{left} left to do"
            raise RuntimeError(f"the stack's backlog has not shrunk for {stall_limit:g} s: {doing}")
        await asyncio.sleep(PAUSE)
