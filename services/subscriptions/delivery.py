"""Delivering each subscription's queue: handshake, notifications in order, heartbeats,
retries. The part of the service that makes "nothing is lost" true.

Every instance runs a `Dispatcher`. It looks for subscriptions that are due, takes a
subscription's lease (one instance at a time delivers a subscription; it is renewed in the
background while the instance delivers, and a crashed instance's lease runs out within
`BARNEBRO_SUBSCRIPTION_LEASE_SECONDS` and another takes over), and then, for up to
`max_count` events at a time: decides each with the consent gate (withheld events are never
sent and never numbered), numbers the rest, sends one Bundle, and marks them sent only after
the partner has it. Each batch is read with the subscription's row as it is then, so a
partner's change ends the turn before the next send. With nothing left to send, a turn
keeps the lease for a moment (`hold`) and is woken by the next events queued for it, in
the instance that leads the fan-out (which queues them, so hears of them at once). A
failure leaves them queued, with the same numbers, for a retry after an exponential,
jittered backoff; after the retry period the subscription shows `error` and is still
retried, so it resumes by itself when the endpoint returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import orjson
from opentelemetry import trace

from services.subscriptions.channels import NatsChannel, RestHook
from services.subscriptions.content import ResourceReader, subscriber_caller
from services.subscriptions.domain.notification import (
    NotifiedEvent,
    notification_bundle,
    status_resource,
)
from services.subscriptions.domain.retry import RetryPolicy
from services.subscriptions.domain.settings import (
    NATS,
    SubscriptionSettings,
    channel_type,
    read_settings,
)
from services.subscriptions.gate import ConsentGate, focus_of
from services.subscriptions.lease import KeptLease
from services.subscriptions.queue import Delivery, DeliveryQueue, instant, parse_instant
from services.subscriptions.status import StatusWriter, asked
from shared.events import DomainEvent
from shared.fhir.errors import FhirError
from shared.metrics import subscription_failures, subscription_notifications
from shared.transport.stopping import STOP_WAIT_SECONDS, stop_task

log = logging.getLogger(__name__)
tracer = trace.get_tracer("barnebro.subscriptions")

MAX_BATCHES_PER_TURN = 20
"""Notifications one subscription sends before others get a turn."""


@dataclass(frozen=True)
class DispatchTimings:
    poll: float
    lease: float
    retry: RetryPolicy
    linger: float = 0.0
    """Seconds a turn waits before its first batch, for the events that follow closely to
    share its notification (`BARNEBRO_SUBSCRIPTION_LINGER_SECONDS`)."""
    hold: float = 0.0
    """Seconds a turn with nothing left to send keeps its lease for the next events (at
    most `poll`; `BARNEBRO_SUBSCRIPTION_HOLD_SECONDS`): at a steady rate a subscription's
    notifications follow one another in one turn, instead of each being looked for,
    claimed and given back."""


def _seconds_since(moment: str | None) -> float:
    if moment is None:
        return 0.0
    return (datetime.now(UTC) - parse_instant(moment)).total_seconds()


class Failed(Exception):
    """A notification did not reach the partner; the message says why."""


class LostLease(Exception):
    """Another instance delivers this subscription now."""


class Changed(Exception):
    """The partner changed its Subscription during the turn (`off`, a new endpoint that
    needs its handshake): the turn ends, and the next one starts from the change."""


def _unchanged(now: Delivery, asking: dict[str, Any]) -> None:
    """Raise `Changed` unless `now` is still on and asks for `asking`."""
    if now.status in ("off", "requested") or asked(now.resource) != asking:
        raise Changed


class Dispatcher:
    def __init__(
        self,
        *,
        queue: DeliveryQueue,
        gate: ConsentGate,
        reader: ResourceReader,
        rest_hook: RestHook,
        nats: NatsChannel,
        status: StatusWriter,
        timings: DispatchTimings,
        base_url: str,
        max_parallel: int = 64,
        hears_of_events: Callable[[], bool] = lambda: True,
    ) -> None:
        """`hears_of_events`: whether `queued` is told of the events queued now (this
        instance leads the fan-out); a turn holds on for more only while it is."""
        self._queue = queue
        self._gate = gate
        self._reader = reader
        self._rest_hook = rest_hook
        self._nats = nats
        self._status = status
        self._timings = timings
        self._base_url = base_url
        self._hears_of_events = hears_of_events
        self._slots = asyncio.Semaphore(max_parallel)
        self._wake = asyncio.Event()
        self._worker = f"{uuid.uuid4()}"
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._running: dict[str, asyncio.Task[None]] = {}
        self._arrived: dict[str, asyncio.Event] = {}
        """Per turn under way: set when events are queued for its subscription."""
        self.sent = 0

    def queued(self, subscriptions: set[str]) -> None:
        """Events were queued for `subscriptions`. A turn under way reads its queue again
        before it ends (one that holds on, at once), and one that ends wakes the loop, so
        the loop need look for due subscriptions only if some of these have no turn."""
        for subscription in subscriptions & self._arrived.keys():
            self._arrived[subscription].set()
        if not subscriptions <= self._running.keys():
            self._wake.set()

    async def start(self) -> None:
        await self._rest_hook.start()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop taking subscriptions, and let each turn under way finish the batch it is
        sending (a few seconds at most): a batch cut off between the partner receiving it
        and its being marked sent would go to the partner again from the next instance."""
        self._stopping = True
        for arrived in self._arrived.values():
            arrived.set()  # a turn holding on ends now
        await stop_task(self._task)
        running = list(self._running.values())
        if running:
            _, unfinished = await asyncio.wait(running, timeout=STOP_WAIT_SECONDS)
            for task in unfinished:
                task.cancel()
            await asyncio.gather(*unfinished, return_exceptions=True)
        await self._rest_hook.stop()

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                for subscription in await self._queue.due(64):
                    if subscription in self._running:
                        continue
                    claimed = await self._queue.claim(
                        subscription, self._worker, self._timings.lease
                    )
                    if claimed is None:
                        continue
                    await self._slots.acquire()
                    self._arrived[subscription] = asyncio.Event()
                    task = asyncio.create_task(self._turn(claimed))
                    self._running[subscription] = task
                    task.add_done_callback(self._finished(subscription))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("looking for due subscriptions failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._timings.poll):
                    await self._wake.wait()

    def _finished(self, subscription: str) -> Callable[[asyncio.Task[None]], None]:
        def done(_: asyncio.Task[None]) -> None:
            self._running.pop(subscription, None)
            self._arrived.pop(subscription, None)
            self._slots.release()
            self._wake.set()  # its queue may have grown meanwhile

        return done

    async def _turn(self, claimed: Delivery) -> None:
        """Deliver one subscription (its row as claimed) while holding its lease; always
        give the lease back with when it is next due."""
        subscription = claimed.subscription
        due_at: str | None = None
        try:
            with tracer.start_as_current_span(
                "subscription delivery", attributes={"subscription": subscription}
            ):
                renew = partial(self._queue.extend, subscription, self._worker, self._timings.lease)
                async with KeptLease(renew, self._timings.lease) as lease:
                    due_at = await self._deliver(claimed, lease)
        except asyncio.CancelledError:
            due_at = instant()
            raise
        except Exception:
            log.exception("delivering subscription %s failed", subscription)
            due_at = instant(datetime.now(UTC) + timedelta(seconds=self._timings.poll))
        finally:
            with contextlib.suppress(Exception):
                await self._queue.release(subscription, self._worker, due_at)

    async def _deliver(self, row: Delivery, lease: KeptLease) -> str | None:
        subscription = row.subscription
        if row.status == "off":
            return None
        settings, _ = read_settings(row.resource, allow_http=True)
        if settings is None:
            return None  # only valid Subscriptions are stored; nothing to do for others
        try:
            asking = asked(row.resource)
            if row.status in ("requested", "error"):
                # A handshake proves the endpoint answers before the subscription is
                # active: at the start, and as the probe of each retry while in error.
                if not lease.held:
                    return None
                await self._send(row, settings, "handshake", [])
                await self._queue.delivered(subscription, [])
                await self._status.change(
                    subscription, ("requested", "error"), "active", None, as_delivered=asking
                )
                row = await self._reload(subscription)
            if self._timings.linger and not row.failures:
                # Events come in bursts (a referral's Task and its plan change together):
                # those of the next moment share this notification, its number, audit
                # record and send, instead of each having its own turn.
                await asyncio.sleep(self._timings.linger)
            arrived = self._arrived[subscription]
            idle = False  # this read follows a hold that brought nothing
            for _ in range(MAX_BATCHES_PER_TURN):
                if self._stopping:
                    return instant()  # another instance carries on at once
                if not lease.held:
                    return None
                arrived.clear()
                after = await self._next_notification(row, settings, asking)
                if after is None:
                    break
                row, read = after
                if read == settings.max_count or arrived.is_set():
                    idle = False
                    continue  # more may be queued already
                if idle and not read:
                    break
                # Nothing more was queued here. Another instance's fan-out may have queued
                # some, so a hold that brings nothing is followed by one more read.
                idle = not await self._held_on(arrived)
                if idle and not read:
                    break
            else:
                return instant()
        except Changed:
            return instant()  # start a new turn with the partner's change
        except Failed as exc:
            return await self._failed(row, str(exc))
        except LostLease:
            return None
        if row.failures:
            # What failed was withheld meanwhile (its consent ended): nothing is failing.
            await self._queue.delivered(subscription, [])
        return self._heartbeat_due(row, settings)

    async def _held_on(self, arrived: asyncio.Event) -> bool:
        """Nothing is queued: wait a while for more while no other subscription needs the
        slot. True if events arrived meanwhile (after the linger, so they share one
        notification with those that follow closely)."""
        hold = min(self._timings.hold, self._timings.poll)
        if hold <= 0 or self._stopping or self._slots.locked() or not self._hears_of_events():
            return False
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(hold):
                await arrived.wait()
        if not arrived.is_set() or self._stopping:
            return False
        if self._timings.linger:
            await asyncio.sleep(self._timings.linger)
        return True

    async def _reload(self, subscription: str) -> Delivery:
        async with self._queue.db.reader() as conn:
            row = await self._queue.load(conn, subscription)
        assert row is not None
        return row

    def _heartbeat_due(self, row: Delivery, settings: SubscriptionSettings) -> str | None:
        if not settings.heartbeat:
            return None
        last = parse_instant(row.last_sent) if row.last_sent else datetime.now(UTC)
        return instant(last + timedelta(seconds=settings.heartbeat))

    async def _next_notification(
        self, row: Delivery, settings: SubscriptionSettings, asking: dict[str, Any]
    ) -> tuple[Delivery, int] | None:
        """Send the next batch of queued events (or a heartbeat when one is due and nothing
        is queued): the subscription's row after it, and how many queued events it read
        (sent or withheld; 0 if none were). None if the subscription is gone; `Changed`
        if the partner changed what it asks for (`asking`) since the turn began."""
        found = await self._queue.next_batch(row.subscription, settings.max_count)
        if found is None:
            return None
        row, queued = found
        _unchanged(row, asking)
        if not queued:
            if settings.heartbeat and _seconds_since(row.last_sent) >= settings.heartbeat:
                await self._send(row, settings, "heartbeat", [])
                row = await self._queue.delivered(row.subscription, []) or row
            return row, 0
        subscriber = subscriber_caller(row.owner, row.owner_kind)
        withheld: list[int] = []
        passing = []
        try:
            await self._gate.current()
        except FhirError as exc:
            raise Failed("The consent state is not available yet") from exc
        for item in queued:
            event = DomainEvent.model_validate_json(item.event)
            try:
                decision = self._gate.decide(subscriber, event)
            except FhirError as exc:
                raise Failed("The consent state is not available yet") from exc
            if decision.permit:
                passing.append((item, event, decision))
            else:
                withheld.append(item.seq)
        numbers = await self._queue.number(
            row.subscription,
            self._worker,
            withheld,
            [item.seq for item, _, _ in passing if item.number is None],
        )
        if numbers is None:
            raise LostLease
        notified = []
        for item, event, _ in passing:
            resource = None
            if settings.content == "full-resource":
                try:
                    resource = await self._reader.version(subscriber, focus_of(event))
                except FhirError as exc:
                    raise Failed(
                        exc.issues[0].diagnostics if exc.issues else "read failed"
                    ) from exc
            number = item.number if item.number is not None else numbers[item.seq]
            notified.append(NotifiedEvent(number, event.time, focus_of(event), resource))
        if notified:
            await self._send(row, settings, "event-notification", notified)
            await self._gate.record(
                subscriber, [(event, decision) for _, event, decision in passing], "notify"
            )
            after = await self._queue.delivered(
                row.subscription, [item.seq for item, _, _ in passing]
            )
            self.sent += len(notified)
            subscription_notifications.add(len(notified), {"channel": settings.channel})
            if after is not None:
                return after, len(queued)
        return row, len(queued)  # every event was withheld

    async def _send(
        self, row: Delivery, settings: SubscriptionSettings, kind: str, events: list[NotifiedEvent]
    ) -> None:
        since_start = max([row.events_since_start, *(e.number for e in events)])
        status = status_resource(
            subscription=row.subscription,
            topic=settings.topic.url,
            status="requested" if kind == "handshake" else "active",
            kind=kind,
            events_since_start=since_start,
            events=events,
            content=settings.content,
            base_url=self._base_url,
        )
        body = orjson.dumps(notification_bundle(status, events, settings.content, self._base_url))
        if settings.channel == NATS:
            first_last = f"{events[0].number}-{events[-1].number}" if events else uuid.uuid4().hex
            reason = await self._nats.send(
                row.subscription, row.owner, f"{row.subscription}:{kind}:{first_last}", body
            )
        else:
            reason = await self._rest_hook.send(row.subscription, settings, body)
        if reason is not None:
            raise Failed(reason)

    async def _failed(self, row: Delivery, reason: str) -> str:
        channel = channel_type(row.resource.get("channel") or {}) or ""
        subscription_failures.add(1, {"channel": channel})
        failures = row.failures + 1
        retry = self._timings.retry
        wait = retry.delay(failures, random.random())
        now = await self._queue.failed(row.subscription, reason, wait)
        failing_for = _seconds_since(now.failing_since if now else None)
        log.info(
            "subscription %s: %s (failure %d, retry in %.1fs)",
            row.subscription,
            reason,
            failures,
            wait,
        )
        if row.status in ("active", "requested") and retry.in_error(failing_for):
            since = now.failing_since if now else instant()
            await self._status.change(
                row.subscription,
                ("active", "requested"),
                "error",
                f"Notifications have failed since {since}: {reason}",
            )
        return instant(datetime.now(UTC) + timedelta(seconds=wait))
