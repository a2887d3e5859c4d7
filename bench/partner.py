"""The partner's end of the subscriptions benchmark: receiving notifications and timing them.

Why a module of its own: what a partner receives is the measurement. Every event the
benchmark writes is entered in a `Ledger` under the version it will create
(``Task/<id>/_history/<version>``) with the moment just before its write began; the
partners look up each event a notification carries by its focus reference and record when
it arrived, on the same process clock (``time.perf_counter``). From the ledger come the
latencies and the errors: events never delivered, delivered late or twice, notifications
a partner could not read or whose signature is wrong, and gaps in a subscription's event
numbers (a number skipped is a notification lost).

Two partners, one per channel: `RestHookPartner`, an aiohttp server in the benchmark
process that checks the HMAC signature as a partner must, and `NatsPartner`, a durable
JetStream push consumer on the partner's subject in the partner stream, as a partner's EPJ
would read it. Both record the arrival before they parse anything. `watch_events` sees
each event as the relay publishes it (a core subscription on the events' subject), which
splits every latency at NATS and keeps one event per kind and Task, so that the
benchmark can check that its source writes the events the referral service writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext

from bench.report import OpStats, percentile
from services.stack import free_port
from services.subscriptions.domain.signature import verify
from services.subscriptions.domain.vocabulary import SIGNATURE_HEADER, SUBSCRIPTION_HEADER

MAX_PROBLEMS = 5
"""Problem descriptions kept per kind (the counts include every one)."""
MAX_KEPT_EVENTS = 20_000
COMPARED = ("type", "source", "resource_type", "resource_id", "patient", "data", "access")
"""What an event of the source must have as the service's event of the same change has
it (not its id, time, version, trace context, nor ``data.actor``: who the caller was)."""


def focus_key(reference: str) -> str:
    """``Task/<id>/_history/<v>`` of a focus reference, with or without the base URL."""
    return "/".join(reference.rsplit("/", 4)[-4:])


@dataclass
class Expected:
    """One event the source wrote (or is writing), and what became of it."""

    phase: str
    started: float
    """``perf_counter`` just before the write's transaction began."""
    measured: bool
    """Written inside the measured window: counted in the results."""
    published: float | None = None
    """When the event reached NATS (a core subscription on the events subject saw it)."""
    arrived: float | None = None
    deliveries: int = 0

    @property
    def latency(self) -> float | None:
        return None if self.arrived is None else self.arrived - self.started


@dataclass
class Notification:
    """What one notification told a partner: its kind, its events' numbers and focus."""

    kind: str
    subscription: str
    numbers: list[int]
    focus: list[str]


def read_notification(body: bytes) -> Notification:
    """The SubscriptionStatus of a notification Bundle; raises ValueError if it is none."""
    try:
        bundle = orjson.loads(body)
        status = bundle["entry"][0]["resource"]
        events = status.get("notificationEvent") or []
        return Notification(
            kind=str(status["type"]),
            subscription=str(status["subscription"]["reference"]).rsplit("/", 1)[-1],
            numbers=[int(e["eventNumber"]) for e in events],
            focus=[focus_key(str(e["focus"]["reference"])) for e in events],
        )
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, ValueError) as exc:
        raise ValueError(f"not a notification Bundle: {exc!r}: {body[:300]!r}") from exc


@dataclass
class Ledger:
    """Every event written, by the focus it will be notified under, and the partners'
    account of what arrived."""

    expected: dict[str, Expected] = field(default_factory=dict)
    pending: Counter[str] = field(default_factory=Counter)
    """Events not yet received, by phase."""
    kinds: Counter[str] = field(default_factory=Counter)
    """Notifications received, by SubscriptionStatus type (handshake, event-notification)."""
    notifications: Counter[str] = field(default_factory=Counter)
    """Event notifications received, by phase of their first event."""
    unexpected: int = 0
    """Events notified that the source never wrote."""
    gaps: int = 0
    """Event numbers skipped by a subscription (each one a notification lost)."""
    replayed: int = 0
    """Event numbers notified again (a retry the partner already had)."""
    problems: Counter[str] = field(default_factory=Counter)
    problem_samples: list[str] = field(default_factory=list)
    last_number: dict[str, int] = field(default_factory=dict)
    arrivals: asyncio.Event = field(default_factory=asyncio.Event)
    service_events: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    """The first event of each (resource id, type) the stack's own services published."""
    source_events: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    """The first event of each (resource id, type) the benchmark's source published."""

    def expect(self, focus: str, phase: str, started: float, measured: bool) -> None:
        self.expected[focus] = Expected(phase, started, measured)
        self.pending[phase] += 1

    def forget(self, focus: str) -> None:
        """The write failed: no event will come."""
        entry = self.expected.pop(focus, None)
        if entry is not None and entry.arrived is None:
            self.pending[entry.phase] -= 1

    def rename(self, focus: str, actual: str) -> None:
        """The write created another version than the one expected."""
        entry = self.expected.pop(focus, None)
        if entry is not None:
            self.expected[actual] = entry

    def on_nats(self, focus: str, at: float, event: dict[str, Any]) -> None:
        """The event of `focus` was published (seen on the events subject); the first of
        each kind per resource is kept, the source's apart from the services'."""
        entry = self.expected.get(focus)
        key = (str(event.get("resource_id")), str(event.get("type")))
        if entry is None:
            if len(self.service_events) < MAX_KEPT_EVENTS:
                self.service_events.setdefault(key, event)
            return
        self.source_events.setdefault(key, event)
        if entry.published is None:
            entry.published = at

    def problem(self, kind: str, text: str) -> None:
        self.problems[kind] += 1
        if self.problems[kind] <= MAX_PROBLEMS:
            self.problem_samples.append(f"{kind}: {text[:500]}")

    def received(self, notification: Notification, at: float) -> None:
        self.kinds[notification.kind] += 1
        if notification.kind != "event-notification":
            return
        self._check_numbers(notification)
        phase = None
        for focus in notification.focus:
            entry = self.expected.get(focus)
            if entry is None:
                self.unexpected += 1
                continue
            phase = phase or entry.phase
            entry.deliveries += 1
            if entry.arrived is None:
                entry.arrived = at
                self.pending[entry.phase] -= 1
                self.arrivals.set()
        self.notifications[phase or "-"] += 1

    def _check_numbers(self, notification: Notification) -> None:
        last = self.last_number.get(notification.subscription, 0)
        for number in notification.numbers:
            if number <= last:
                self.replayed += 1
                continue
            if number > last + 1:
                self.gaps += number - last - 1
                self.problem(
                    "gap", f"Subscription/{notification.subscription}: {last} then {number}"
                )
            last = number
        self.last_number[notification.subscription] = last

    async def settled(self, phase: str, limit: float) -> bool:
        """Wait until every event of `phase` (measured or not) has arrived, at most `limit`
        seconds; whether they all did."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(limit):
                while self.pending[phase] > 0:
                    self.arrivals.clear()
                    await self.arrivals.wait()
        return self.pending[phase] <= 0

    def of_phase(self, phase: str) -> list[Expected]:
        return [entry for entry in self.expected.values() if entry.phase == phase]


def delivery_summary(entries: Sequence[Expected], late_after: float) -> dict[str, Any]:
    """Latency and errors of the measured events of one phase (and the events written
    outside its window that never arrived). An event is *late* when it arrived more than
    `late_after` s after its write began, *missing* when it never arrived, *duplicated*
    when a partner got it more than once (not an error: delivery is at least once; a retry
    after a lost answer sends it again)."""
    measured = [entry for entry in entries if entry.measured]
    unmeasured = [entry for entry in entries if not entry.measured]
    stats = OpStats(latencies=[e.latency for e in measured if e.latency is not None])
    late = sum(1 for latency in stats.latencies if latency > late_after)
    missing = sum(1 for e in measured if e.arrived is None)
    seen = [e for e in measured if e.published is not None]
    return {
        "written": len(measured),
        "delivered": len(stats.latencies),
        "missing": missing,
        "late": late,
        "duplicated": sum(1 for e in measured if e.deliveries > 1),
        "missing_outside_window": sum(1 for e in unmeasured if e.arrived is None),
        "latency": stats.summary(1.0),
        "stages": {
            "write_to_nats": spread(e.published - e.started for e in seen if e.published),
            "nats_to_partner": spread(
                e.arrived - e.published for e in seen if e.arrived and e.published
            ),
            "seen_on_nats": len(seen),
        },
    }


def spread(values: Iterable[float]) -> dict[str, float]:
    """p50, p99 and max of durations in seconds, in milliseconds."""
    ordered = sorted(values)
    return {
        "p50_ms": round(percentile(ordered, 0.50) * 1000, 2),
        "p99_ms": round(percentile(ordered, 0.99) * 1000, 2),
        "max_ms": round((ordered[-1] if ordered else 0.0) * 1000, 2),
    }


class RestHookPartner:
    """A partner's HTTPS endpoint, in plain HTTP on 127.0.0.1: checks the signature,
    answers 200 and tells the ledger what arrived."""

    def __init__(self, ledger: Ledger, secret: str) -> None:
        self.ledger = ledger
        self.secret = secret
        self.port = free_port()
        self.bad_signatures = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/notify"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/notify", self._notify)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _notify(self, request: web.Request) -> web.Response:
        body = await request.read()
        at = time.perf_counter()
        signature = request.headers.get(SIGNATURE_HEADER, "")
        if not verify(self.secret, body, signature, int(time.time())):
            self.bad_signatures += 1
            self.ledger.problem("bad signature", f"{signature!r} on {body[:200]!r}")
            return web.Response(status=401)
        try:
            notification = read_notification(body)
        except ValueError as exc:
            self.ledger.problem("unreadable", str(exc))
            return web.Response(status=400)
        if notification.subscription != request.headers.get(SUBSCRIPTION_HEADER):
            self.ledger.problem("wrong subscription header", notification.subscription)
        self.ledger.received(notification, at)
        return web.Response(status=200)


class NatsPartner:
    """A partner reading its subject in the partner stream with a durable push consumer
    (acknowledging each notification after reading it)."""

    def __init__(self, ledger: Ledger, nc: NATS, stream: str, subject: str) -> None:
        self.ledger = ledger
        self.js: JetStreamContext = nc.jetstream()
        self.stream = stream
        self.subject = subject
        self._subscription: JetStreamContext.PushSubscription | None = None

    async def start(self, durable: str = "bench-partner") -> None:
        self._subscription = await self.js.subscribe(
            self.subject,
            stream=self.stream,
            durable=durable,
            cb=self._notify,
            config=ConsumerConfig(
                deliver_policy=DeliverPolicy.ALL,
                ack_policy=AckPolicy.EXPLICIT,
                filter_subject=self.subject,
            ),
        )

    async def stop(self) -> None:
        if self._subscription is not None:
            await self._subscription.unsubscribe()
            self._subscription = None

    async def _notify(self, message: Msg) -> None:
        at = time.perf_counter()
        try:
            notification = read_notification(message.data)
        except ValueError as exc:
            self.ledger.problem("unreadable", str(exc))
            return
        self.ledger.received(notification, at)


async def watch_events(nc: NATS, subject: str, ledger: Ledger) -> None:
    """Tell the ledger when each event is published (a core subscription on the events'
    subject receives what the relay publishes to JetStream), to split the latency into
    write → NATS and NATS → partner."""

    async def seen(message: Msg) -> None:
        at = time.perf_counter()
        try:
            event = orjson.loads(message.data)
            focus = (
                f"{event['resource_type']}/{event['resource_id']}/_history/{event['version_id']}"
            )
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return
        ledger.on_nats(focus, at, event)

    await nc.subscribe(subject, cb=seen)


def event_differences(ours: Mapping[str, Any], theirs: Mapping[str, Any]) -> list[str]:
    """The `COMPARED` fields in which two domain events differ."""

    def compared(event: Mapping[str, Any], name: str) -> Any:
        value = event.get(name)
        if name == "data" and isinstance(value, dict):
            return {k: v for k, v in value.items() if k != "actor"}
        return value

    return [name for name in COMPARED if compared(ours, name) != compared(theirs, name)]
