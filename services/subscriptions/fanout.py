"""Matching every domain event to the subscriptions it concerns, once, in stream order.

One instance at a time leads the fan-out (a lease in the database, renewed while it leads;
another takes over within `BARNEBRO_SUBSCRIPTION_LEASE_SECONDS` when a leader dies). The
leader reads the event stream with an ordered JetStream consumer starting just after the
last stream sequence it recorded, matches each batch in memory against the subscriptions
that take events (topic, filters, and only events raised after the subscription was made and
before its `end`), and queues the matches in the same transaction that records the batch's
last sequence. A crash, a lost lease or a broken NATS connection therefore resumes exactly
after the last committed batch: no event is skipped, none is queued twice, and each
subscription's queue is in stream order. The consent decision is not taken here but at
delivery, as late and as current as it can be.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy
from pydantic import ValidationError

from services.subscriptions.domain.criteria import matches
from services.subscriptions.domain.settings import (
    SubscriptionSettings,
    instant_of,
    read_settings,
)
from services.subscriptions.lease import KeptLease
from services.subscriptions.queue import Delivery, DeliveryQueue, Matched, parse_instant
from shared.config import Settings
from shared.events import DomainEvent, events_subject_filter
from shared.transport.stopping import stop_task

log = logging.getLogger(__name__)

BATCH = 200
IDLE_CHECK_SECONDS = 5.0
"""After this long without an event, the leader checks that the stream has nothing it
has missed (a consumer lost in a NATS restart) and resubscribes if it has."""


class LostLease(Exception):
    """Another instance leads the fan-out now."""


class FanOut:
    def __init__(
        self,
        nc: NATS,
        settings: Settings,
        queue: DeliveryQueue,
        queued: Callable[[set[str]], None],
        *,
        lease: float,
        poll: float,
    ) -> None:
        self._nc = nc
        self._js = nc.jetstream()
        self._stream = settings.stream_name
        self._subject = events_subject_filter(settings.nats_prefix)
        self._queue = queue
        self._queued = queued
        self._lease = lease
        self._poll = poll
        self._worker = str(uuid.uuid4())
        self._parsed: dict[tuple[str, bytes], SubscriptionSettings | None] = {}
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._stream_identity = ""
        self.matched = 0
        self.handled = 0
        self.leading = False
        """This instance follows the stream now: it queues the matches, and hears of them."""

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self._stopping = True
        await stop_task(self._task)
        with contextlib.suppress(Exception):
            await self._queue.resign_fanout(self._worker)

    async def _run(self) -> None:
        while not self._stopping:
            try:
                watermark = await self._queue.lead_fanout(
                    self._worker, self._lease, await self._stream_end() + 1
                )
                if watermark is not None:
                    info = await self._js.stream_info(self._stream)
                    self._stream_identity = str(info.created)
                    if await self._queue.adopt_stream(self._worker, self._stream_identity):
                        log.warning("the event stream was made anew; following it from its start")
                        watermark = 0
                    async with KeptLease(self._renew, self._lease) as lease:
                        self.leading = True
                        try:
                            await self._follow(watermark, lease)
                        finally:
                            self.leading = False
            except asyncio.CancelledError:
                raise
            except LostLease:
                log.info("another instance leads the fan-out now")
            except Exception:
                log.exception("the fan-out stopped; resuming from the last recorded event")
            await asyncio.sleep(self._poll)

    async def _renew(self) -> bool:
        return await self._queue.lead_fanout(self._worker, self._lease, 0) is not None

    async def _stream_end(self) -> int:
        info = await self._js.stream_info(self._stream)
        return int(info.state.last_seq)

    async def _follow(self, watermark: int, lease: KeptLease) -> None:
        """Queue events from just after `watermark` while this instance leads."""
        # Bounded: while a batch is being matched, a long backlog waits in NATS (the
        # consumer's flow control), not in this process's memory.
        inbox: asyncio.Queue[Msg] = asyncio.Queue(maxsize=2 * BATCH)

        async def arrived(msg: Msg) -> None:
            await inbox.put(msg)

        subscription = await self._js.subscribe(
            self._subject,
            stream=self._stream,
            cb=arrived,
            ordered_consumer=True,
            config=ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=watermark + 1
            ),
        )
        try:
            idle = 0.0
            while not self._stopping:
                try:
                    async with asyncio.timeout(self._poll):
                        first = await inbox.get()
                except TimeoutError:
                    idle += self._poll
                    if not lease.held:
                        raise LostLease from None
                    if idle >= IDLE_CHECK_SECONDS:
                        idle = 0.0
                        info = await self._js.stream_info(self._stream)
                        if info.state.last_seq > watermark or (
                            str(info.created) != self._stream_identity
                        ):
                            log.warning("the event consumer fell behind; following it again")
                            return
                    continue
                idle = 0.0
                batch = [first]
                while len(batch) < BATCH and not inbox.empty():
                    batch.append(inbox.get_nowait())
                watermark = await self.match(batch, watermark)
        finally:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

    def _settings(self, delivery: Delivery) -> SubscriptionSettings | None:
        key = (delivery.subscription, delivery.stored)
        if key not in self._parsed:
            if len(self._parsed) > 10_000:
                self._parsed.clear()
            self._parsed[key] = read_settings(delivery.resource, allow_http=True)[0]
        return self._parsed[key]

    async def match(self, messages: list[Msg], watermark: int) -> int:
        """Queue the matches of a batch that follows `watermark`; the new watermark."""
        events = []
        last = watermark
        for message in messages:
            sequence = message.metadata.sequence.stream
            if sequence <= last:
                continue  # delivered again after a consumer reset
            last = sequence
            try:
                event = DomainEvent.model_validate_json(message.data)
            except ValidationError:
                log.error("ignoring an unreadable event on %s", message.subject)
                continue
            raised = instant_of(event.time)
            if raised is None:
                log.error("ignoring event %s: its time %r is not an instant", event.id, event.time)
                continue
            events.append((event, raised, message.data))
        if last == watermark:
            return watermark
        async with self._queue.db.reader() as conn:
            candidates = await self._queue.matching_candidates(conn)
        matched: list[Matched] = []
        for delivery in candidates:
            settings = self._settings(delivery)
            if settings is None:
                continue
            created = parse_instant(delivery.created)
            end = instant_of(delivery.resource.get("end"))
            for event, raised, body in events:
                if (
                    raised >= created
                    and (end is None or raised <= end)
                    and matches(settings.topic, list(settings.criteria), event)
                ):
                    matched.append((delivery.subscription, event.id, body))
        if not await self._queue.queue_matched(self._worker, self._lease, last, matched):
            raise LostLease
        self.handled += len(events)
        self.matched += len(matched)
        if matched:
            self._queued({subscription for subscription, _, _ in matched})
        return last
