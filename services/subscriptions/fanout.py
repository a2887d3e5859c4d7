"""Matching every domain event to the subscriptions it concerns, durably and in order.

A durable JetStream consumer shared by every instance hands the event stream over in
order, one batch at a time across all instances (`in_order`). Each batch is matched in
memory against the subscriptions that take events (topic, filters, and only events
raised after the subscription was made) and queued in one transaction; only then are
the messages acknowledged. A crash before the commit hands the batch over again, and the
queue keeps each (subscription, event) once. The consent decision is not taken here but
at delivery, so that it is as late, and as current, as it can be.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import orjson
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from pydantic import ValidationError

from services.subscriptions.domain.criteria import matches
from services.subscriptions.domain.settings import SubscriptionSettings, read_settings
from services.subscriptions.queue import Delivery, DeliveryQueue, parse_instant
from shared.config import Settings
from shared.events import DomainEvent, events_subject_filter
from shared.transport.consumer import DurableConsumer

log = logging.getLogger(__name__)


class FanOut:
    def __init__(
        self, nc: NATS, settings: Settings, queue: DeliveryQueue, queued: Callable[[], None]
    ) -> None:
        self._queue = queue
        self._queued = queued
        self._parsed: dict[tuple[str, bytes], SubscriptionSettings | None] = {}
        self.consumer = DurableConsumer(
            nc,
            stream=settings.stream_name,
            durable="subscriptions-fanout",
            subject=events_subject_filter(settings.nats_prefix),
            handler=self.match,
            batch=200,
            in_order=True,
        )
        self.matched = 0

    async def start(self) -> None:
        await self.consumer.start()

    async def stop(self) -> None:
        await self.consumer.stop()

    def _settings(self, delivery: Delivery) -> SubscriptionSettings | None:
        key = (delivery.subscription, orjson.dumps(delivery.resource))
        if key not in self._parsed:
            if len(self._parsed) > 10_000:
                self._parsed.clear()
            self._parsed[key] = read_settings(delivery.resource, allow_http=True)[0]
        return self._parsed[key]

    async def match(self, messages: list[Msg]) -> None:
        events = []
        for message in messages:
            try:
                events.append((DomainEvent.model_validate_json(message.data), message.data))
            except ValidationError:
                log.error("ignoring an unreadable event on %s", message.subject)
        async with self._queue.db.transaction() as conn:
            subscriptions = await self._queue.matching_candidates(conn)
            matched = []
            for delivery in subscriptions:
                settings = self._settings(delivery)
                if settings is None:
                    continue
                created = parse_instant(delivery.created)
                for event, body in events:
                    if matches(settings.topic, list(settings.criteria), event) and (
                        parse_instant(event.time) >= created
                    ):
                        matched.append((delivery.subscription, event.id, body))
            if matched:
                await self._queue.enqueue(conn, matched)
        self.matched += len(matched)
        if matched:
            self._queued()
