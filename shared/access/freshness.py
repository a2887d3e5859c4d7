"""Deciding on a mirror that is current: no release after a withdrawal has been answered.

A service decides on its mirror of the consent state (`shared.access.view`), which a
key-value watch keeps, a few milliseconds behind the bucket. A withdrawal, an ended
parental responsibility or an ended care order is in the bucket before its writer hears
its answer (`shared.store.outbox.OutboxRelay.drained`); so a request that arrives after
that answer is decided on a mirror that holds every revision the bucket held when the
request arrived. `BucketRevision` asks the bucket for its last revision; the view waits
until its watch has delivered that far (`ConsentView.caught_up`).

One question serves every request that arrived before it was sent: a request that
arrives while a question is out waits for the next one (the answer to the first may
predate a revision that was stored before the request arrived). Under load that is one
question per round trip, not one per request.
"""

from __future__ import annotations

import asyncio

import orjson
from nats.aio.client import Client as NATS

from shared.transport.stopping import stop_task

ASK_TIMEOUT = 2.0


class BucketUnreadable(Exception):
    """The bucket's last revision could not be learnt (NATS down, the stream missing)."""


def bucket_stream(bucket: str) -> str:
    """The JetStream stream that holds a key-value bucket."""
    return f"KV_{bucket}"


class BucketRevision:
    """The last revision of one key-value bucket, asked for at most once at a time."""

    def __init__(self, nc: NATS, bucket: str) -> None:
        self._nc = nc
        self._subject = f"$JS.API.STREAM.INFO.{bucket_stream(bucket)}"
        self._next: asyncio.Future[int] | None = None
        """The answer the callers that arrived since the last question was sent share."""
        self._asker: asyncio.Task[None] | None = None

    async def last(self) -> int:
        """The bucket's last revision, as of a moment after this call."""
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
        waiting = self._next
        if self._asker is None or self._asker.done():
            self._asker = asyncio.create_task(self._ask_while_waited_for())
        return await asyncio.shield(waiting)

    async def stop(self) -> None:
        await stop_task(self._asker)

    async def _ask_while_waited_for(self) -> None:
        while self._next is not None:
            waiting, self._next = self._next, None  # callers from now on wait for the next
            try:
                waiting.set_result(await self._ask())
            except asyncio.CancelledError:  # stopping: the waiting requests are refused
                waiting.set_exception(BucketUnreadable("the consent view is stopping"))
                waiting.exception()
                raise
            except Exception as exc:
                waiting.set_exception(BucketUnreadable(repr(exc)))
                waiting.exception()  # retrieved here: a caller that gave up never reads it

    async def _ask(self) -> int:
        answer = await self._nc.request(self._subject, b"", timeout=ASK_TIMEOUT)
        info = orjson.loads(answer.data)
        if "error" in info:
            raise BucketUnreadable(str(info["error"]))
        return int(info["state"]["last_seq"])
