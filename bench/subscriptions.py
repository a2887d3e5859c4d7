"""The subscriptions benchmark: how long a write takes to reach a partner, per channel.

Why it exists: a partner (a BUP's EPJ, a barnevern system) that subscribes to a topic must
hear of a change soon enough to act on it, and the way there is long: the write commits
its event to the referral service's outbox, the relay publishes it to JetStream, the
subscriptions service's fan-out matches it to subscriptions and queues it in its database,
the dispatcher checks consent, numbers it and sends a notification Bundle — an HTTP POST
(rest-hook, HMAC-signed) or a JetStream publish to ``<prefix>.partner.<orgnr>`` (nats).
This module measures that whole way, write to partner, p50/p99 at fixed event rates (100
and 500 per second by default), per channel, with the raw NATS publish-to-subscriber
latency measured in the same run as the floor. Aim: p99 ≤ 50 ms at 100 events/s on the
2-core development machine. The machine is shared, so every phase also reports its CPU:
events delivered per server CPU-second, CPU ms per event per process, and the p99 as a
multiple of the raw NATS p99 at the same rate.

Design, and why:

* **The stack**: gateway, directory, consent, referral and subscriptions as child
  processes on PostgreSQL with the run's own nats-server and schemas ``bench<random>_*``
  (``bench.crud.bench_environment``, ``services.stack.LocalStack``, as ``bench.referral``
  does), the subscriptions service allowed to post to ``http://127.0.0.1``.
* **The world, through the API**: a GP office, two BUPs and children, one referral per
  child submitted by the GP and moved by its BUP to in-progress (the ``bench.referral``
  helpers). Each BUP subscribes, through the FHIR API, to ``referral-status`` filtered
  ``performer=<its orgnr>``, content ``id-only``: one BUP with a rest-hook to the
  benchmark's HTTP server, the other on the ``nats`` channel, read by a durable JetStream
  consumer. Separate BUPs keep the phases apart: a phase writes only the Tasks of its
  channel's BUP, and each subscription only ever sees its own events.
* **The event source** (``bench.event_source``) writes in *this* process, at a fixed
  rate in an open loop (write *k* starts at ``t0 + k / rate`` whether or not earlier ones
  are done, so a slow pipeline cannot slow the load down and hide its own latency), as a
  second instance of the referral service would: the service's ``FhirService`` over its
  schema and its own ``OutboxRelay`` to the stack's NATS. Each write toggles one of the
  channel's Tasks between in-progress and on-hold (events ``on-hold`` and ``resumed``).
  Writing through the gateway was not an option: a PUT costs several ms of CPU in the
  gateway and the referral service, and on this machine (where every system call is
  expensive) even the service's own Task update costs 4-5 ms of CPU in-process, so 500
  per second would need more than the 2 cores and would measure the write, not the
  notification. So by default (``--source outbox``) a write is a transaction that puts
  into the outbox the very event the Task update raises (the service's own event rule on
  the stored before/after versions, the Task's stored access facts), not the Task version;
  ``--source task`` writes the whole update (``FhirService.handle``, state machine and
  all) for rates that fit. Before measuring, the benchmark checks that the source's event
  equals, field for field (not its id, time, version or caller), the one the referral
  service itself raised for the same change of the same Task during the setup.
* **Latency**: from just before the write's transaction begins to the moment the partner
  has the notification carrying the event, on one clock (``bench.partner``): the event is
  entered in the ledger under the version the write will create, and the notification
  names it in ``notificationEvent.focus`` (``Task/<id>/_history/<version>``). A
  notification carrying several events counts each with its own latency. An event not
  delivered within ``late_after`` seconds is *late*, one never delivered *missing*; both
  are errors, as are failed writes, gaps in the event numbers, bad signatures and
  notifications nobody wrote. A run with errors says so and ``python -m bench
  subscriptions`` exits with status 1.
* **Where the time goes**: a core NATS subscription on the referral events' subject sees
  each event when the relay publishes it, which splits the latency into write → NATS
  (transaction, commit, relay) and NATS → partner (the subscriptions service and the
  channel).
* **The limit**: at each rate, before the channels, the same open loop publishes messages
  the size of a one-event notification (1 KB) through core NATS to a subscriber on another
  connection, and through a JetStream stream on file storage to a durable push consumer
  like the partner's: publish-to-subscriber p50/p99 and messages per nats-server
  CPU-second. Each channel's p99 is reported as a multiple of both.
* **CPU**: server = the stack's processes, its nats-server and every ``postgres`` process
  (as in the other benchmarks); the source, its relay and the partners are this process,
  the load generator. The idle stack's CPU is measured once, for what polling and leases
  cost with nothing to do.

Each phase is a ``bench.load.run_phase`` window (warm-up, CPU sampled at both edges; an
event counts if its write *began* inside the window), followed by a drain that waits for
the window's events to arrive. The stack, its data directory (the nats-server's streams)
and the schemas are removed at the end, also after an error, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import struct
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import nats
import orjson
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig

from bench.actors import admit_all
from bench.cpu import CpuMeter, CpuUsage
from bench.crud import (
    DEFAULT_DATABASE_URL,
    RESULTS_DIR,
    CrudOptions,
    Identifiers,
    bench_environment,
    with_application_name,
)
from bench.event_source import (
    SOURCES,
    Source,
    TaskSource,
    TrackedTask,
    Writes,
    open_loop,
    write_event,
)
from bench.load import HttpClient, PidLookup, Recorder, http_client, run_phase
from bench.partner import (
    Ledger,
    NatsPartner,
    RestHookPartner,
    delivery_summary,
    event_differences,
    spread,
    watch_events,
)
from bench.referral import (
    FIND_TASK,
    MOVES,
    Parties,
    ReferralWorld,
    RunningStack,
    bench_request,
    etag,
    moved,
    new_result,
    only_task,
    organisation,
    populate,
    stack_cleanup,
    submit,
    task_in,
    with_header,
)
from bench.report import (
    OpStats,
    per_cpu_second,
    ratio,
    table_cell,
    text_table,
    write_json,
)
from services.referral.domain.vocabulary import TaskStatus
from services.stack import LocalStack, free_port
from services.subscriptions.domain.settings import DEFAULT_MAX_COUNT
from services.subscriptions.domain.topics import TOPIC_BASE
from services.subscriptions.domain.vocabulary import (
    CHANNEL_TYPE_EXT,
    CHANNEL_TYPE_SYSTEM,
    FILTER_CRITERIA_EXT,
    MAX_COUNT_EXT,
    PAYLOAD_CONTENT_EXT,
    REST_HOOK,
    SIGNING_SECRET_EXT,
)
from services.subscriptions.domain.vocabulary import (
    NATS as NATS_CHANNEL,
)
from shared.codes import OrganisationKind
from shared.config import Settings
from shared.transport.nats_connection import close, connect

CHANNELS = (REST_HOOK, NATS_CHANNEL)
STACK_SERVICES = ("gateway", "directory", "consent", "referral", "subscriptions")
"""What a notification of a referral passes through (the care plan service is not
started)."""
SERVERS = {
    "gateway": "gateway",
    "directory": "directory",
    "consent": "consent",
    "referral": "referral",
    "subscriptions": "subscriptions",
    "nats-server": "nats",
}
"""Server CPU: reported name → the stack's child process name (plus every postgres)."""
TOPIC = "referral-status"
SETUP_CONCURRENCY = 8
RAW_BYTES = 1024
"""Size of a raw NATS message: about that of an id-only notification with one event."""
RAW_FORMAT = "!dB"
SANITY_LIMIT = 30.0
ALLOW_HTTP = "BARNEBRO_SUBSCRIPTION_ALLOW_HTTP"


@dataclass(frozen=True)
class SubscriptionsOptions:
    rates: tuple[float, ...] = (100.0, 500.0)
    """Events per second; at each rate the raw NATS limit, then every channel."""
    channels: tuple[str, ...] = CHANNELS
    source: Source = "outbox"
    """What a write is (``bench.event_source``): the Task update's event alone, or the
    whole Task update."""
    seconds: float = 20.0
    warmup: float = 3.0
    """Unmeasured seconds before each window (writes and deliveries under way)."""
    limit_seconds: float = 10.0
    """Measured seconds of each raw NATS limit (core, JetStream) at each rate."""
    referrals: int = 100
    """Referrals (Tasks) per channel that the source writes to in turn."""
    max_count: int | None = None
    """Events per notification at most (backport-max-count); None: the service's
    default."""
    idle_seconds: float = 5.0
    """Seconds the stack's CPU is measured with nothing written, before the phases."""
    late_after: float = 5.0
    """An event delivered more than this many seconds after its write began is late (an
    error); the drain after a window waits this long for the window's last events."""
    aim_p99_ms: float = 50.0
    aim_rate: float = 100.0
    database_url: str = DEFAULT_DATABASE_URL
    out_dir: Path | None = field(default=RESULTS_DIR)
    seed: int | None = None

    def __post_init__(self) -> None:
        if not self.rates or min(self.rates) <= 0 or len(set(self.rates)) < len(self.rates):
            raise ValueError("at least one rate, each positive and each once")
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {', '.join(SOURCES)}")
        if not self.channels or set(self.channels) - set(CHANNELS):
            raise ValueError(f"channels must be some of {', '.join(CHANNELS)}")
        if self.referrals < 2 or self.seconds <= 0 or self.limit_seconds <= 0:
            raise ValueError("at least 2 referrals per channel and positive durations")

    def as_dict(self) -> dict[str, Any]:
        return {
            "rates": list(self.rates),
            "channels": list(self.channels),
            "source": self.source,
            "seconds": self.seconds,
            "warmup_seconds": self.warmup,
            "limit_seconds": self.limit_seconds,
            "referrals_per_channel": self.referrals,
            "max_count": self.max_count,
            "idle_seconds": self.idle_seconds,
            "late_after_seconds": self.late_after,
            "aim": {"p99_ms": self.aim_p99_ms, "rate": self.aim_rate},
            "database": "postgresql",
            "database_url": self.database_url,
            "seed": self.seed,
        }


# -- the subscriptions ------------------------------------------------------------------------


def subscription_body(
    channel: str,
    performer: str,
    *,
    endpoint: str | None = None,
    secret: str | None = None,
    max_count: int | None = None,
) -> dict[str, Any]:
    """A receiver's Subscription to ``referral-status`` for its own referrals
    (``performer=<orgnr>``), id-only, on `channel`; `max_count` events per notification
    at most (the service's default when None)."""
    chan: dict[str, Any] = {
        "type": "rest-hook" if channel == REST_HOOK else "message",
        "payload": "application/fhir+json",
        "_payload": {"extension": [{"url": PAYLOAD_CONTENT_EXT, "valueCode": "id-only"}]},
    }
    if channel != REST_HOOK:
        coding = {"system": CHANNEL_TYPE_SYSTEM, "code": channel}
        chan["_type"] = {"extension": [{"url": CHANNEL_TYPE_EXT, "valueCoding": coding}]}
    if endpoint is not None:
        chan["endpoint"] = endpoint
    extensions: list[dict[str, Any]] = []
    if secret is not None:
        extensions.append({"url": SIGNING_SECRET_EXT, "valueString": secret})
    if max_count is not None:
        extensions.append({"url": MAX_COUNT_EXT, "valuePositiveInt": max_count})
    if extensions:
        chan["extension"] = extensions
    criteria = {"url": FILTER_CRITERIA_EXT, "valueString": f"performer={performer}"}
    return {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "Henvisninger til oss: status endret",
        "criteria": TOPIC_BASE + TOPIC,
        "_criteria": {"extension": [criteria]},
        "channel": chan,
    }


# -- the world ----------------------------------------------------------------------------------


@dataclass
class Channel:
    """One channel's subscriber (a BUP), its Tasks and its Subscription."""

    name: str
    bup: str
    tasks: list[TrackedTask]
    subscription: str = ""
    turn: int = 0

    def next_task(self) -> TrackedTask:
        """The Tasks in turn: each is written every ``len(tasks) / rate`` seconds."""
        task = self.tasks[self.turn % len(self.tasks)]
        self.turn += 1
        return task


WAY_IN = (*MOVES[:3], TaskStatus.ON_HOLD, TaskStatus.IN_PROGRESS)
"""How a referral's Task is set up through the API: received, accepted (with a frist),
in-progress, and once on-hold and back, so the source has both versions as stored."""


async def referral_in_progress(
    world: ReferralWorld, fnr: str, recorder: Recorder
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A referral submitted by the GP, its Task found and moved by the BUP along
    `WAY_IN`; the Task in-progress and as it was on-hold."""
    referral = await submit(world, fnr, recorder)
    task: dict[str, Any] | None = None
    versions: list[dict[str, Any]] = []
    if referral is not None:
        path = f"/Task?focus=ServiceRequest/{referral['id']}"
        done = await bench_request(world.bup, recorder, FIND_TASK, "GET", path, None, only_task)
        version = ""
        if done is not None:
            task, version = done[0], etag(done[0])
        for status in WAY_IN:
            if task is None:
                break
            client = with_header(world.bup, "If-Match", version)
            body = moved(task, status, world.parties.kommune)
            path = f"/Task/{task['id']}"
            done = await bench_request(
                client, recorder, status.value, "PUT", path, body, task_in(status)
            )
            task = None if done is None else done[0]
            version = "" if done is None else etag(done[0], done[1].headers)
            versions += [] if task is None else [task]
    if task is None:
        samples = [s.as_dict() for s in recorder.samples]
        raise RuntimeError(f"setup: a referral could not be moved to in-progress: {samples}")
    return versions[-1], versions[-2]


async def _post(client: HttpClient, resource: Mapping[str, Any]) -> dict[str, Any]:
    path = f"/{resource['resourceType']}"
    reply = await client.call("POST", path, orjson.dumps(resource))
    created = orjson.loads(reply.body) if reply.ok else None
    if not isinstance(created, dict) or not isinstance(created.get("id"), str):
        raise RuntimeError(f"setup: POST {path} -> {reply.status}: {reply.body[:800]!r}")
    return created


async def make_channels(
    base: HttpClient,
    stack: RunningStack,
    source: TaskSource,
    ids: Identifiers,
    options: SubscriptionsOptions,
) -> tuple[list[Channel], Parties, float]:
    """The GP, a BUP per channel (all registered by the operator) and `options.referrals`
    referrals in progress for each; also the seconds waited for the gateway to route."""
    count = options.referrals
    parties, children, waited = await populate(stack, base, ids, count * len(options.channels))
    bups = [parties.bup, *(ids.orgnr() for _ in options.channels[1:])]
    await admit_all(
        stack.operator(base), [organisation(bup, OrganisationKind.BUP) for bup in bups[1:]]
    )
    gp = stack.client(base, parties.gp)
    gate = asyncio.Semaphore(SETUP_CONCURRENCY)
    channels = []
    for index, (name, bup) in enumerate(zip(options.channels, bups, strict=True)):
        mine = children[index * count : (index + 1) * count]
        world = ReferralWorld(
            gp=gp,
            bup=stack.client(base, bup),
            parties=Parties(parties.gp, bup, parties.kommune, parties.gp_id),
            children=mine,
        )

        async def one(fnr: str, world: ReferralWorld = world) -> TrackedTask:
            async with gate:
                now, then = await referral_in_progress(world, fnr, Recorder(measuring=True))
            return await source.track(now, then, world.parties.bup)

        tasks = await asyncio.gather(*(one(fnr) for fnr in mine))
        channels.append(Channel(name, bup, list(tasks)))
    return channels, parties, waited


async def subscribe(
    client: HttpClient,
    channel: Channel,
    endpoint: str | None,
    secret: str | None,
    max_count: int | None,
) -> str:
    """POST the channel's Subscription as its BUP and wait until it is active (the
    handshake reached the partner)."""
    body = subscription_body(
        channel.name, channel.bup, endpoint=endpoint, secret=secret, max_count=max_count
    )
    created = await _post(client, body)
    path = f"/Subscription/{created['id']}"
    deadline = time.perf_counter() + SANITY_LIMIT
    while True:
        reply = await client.call("GET", path)
        status = orjson.loads(reply.body).get("status") if reply.ok else None
        if status == "active":
            return str(created["id"])
        if time.perf_counter() > deadline:
            raise RuntimeError(
                f"Subscription/{created['id']} ({channel.name}) is not active after"
                f" {SANITY_LIMIT:g} s: {reply.status} {reply.body[:800]!r}"
            )
        await asyncio.sleep(0.1)


# -- the raw NATS limit -------------------------------------------------------------------------


@dataclass
class RawStats:
    latencies: list[float] = field(default_factory=list)
    sent: int = 0
    errors: int = 0
    samples: list[str] = field(default_factory=list)
    arrivals: asyncio.Event = field(default_factory=asyncio.Event)

    def arrived(self, data: bytes) -> None:
        at = time.perf_counter()
        sent, measured = struct.unpack_from(RAW_FORMAT, data)
        if measured:
            self.latencies.append(at - sent)
            self.arrivals.set()

    async def settled(self, limit: float) -> None:
        """Wait until every measured message sent has arrived, at most `limit` s."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(limit):
                while len(self.latencies) < self.sent:
                    self.arrivals.clear()
                    await self.arrivals.wait()


def raw_payload(measured: bool) -> bytes:
    head = struct.pack(RAW_FORMAT, time.perf_counter(), measured)
    return head + b"x" * (RAW_BYTES - len(head))


async def _raw_window(
    rate: float,
    publish: Callable[[bytes], Awaitable[None]],
    stats: RawStats,
    meter: CpuMeter,
    options: SubscriptionsOptions,
) -> dict[str, Any]:
    recorder = Recorder()

    async def fire(due: float, measured: bool) -> None:
        try:
            await publish(raw_payload(measured))
        except Exception as exc:
            stats.errors += 1
            if len(stats.samples) < 5:
                stats.samples.append(repr(exc))
            return
        if measured:
            stats.sent += 1

    window = await run_phase(
        [open_loop(rate, fire, recorder)],
        recorder,
        meter,
        warmup=min(1.0, options.warmup),
        seconds=options.limit_seconds,
    )
    await stats.settled(options.late_after)
    received = OpStats(latencies=stats.latencies)
    missing = max(0, stats.sent - len(stats.latencies))
    cpu = window.usage
    return {
        "window_s": round(window.seconds, 3),
        "sent": stats.sent,
        "received": len(stats.latencies),
        "missing": missing,
        "errors": stats.errors + missing,
        "error_samples": stats.samples,
        "latency": received.summary(window.seconds),
        "nats_cpu_s": round(cpu.server, 3),
        "messages_per_nats_cpu_second": per_cpu_second(len(stats.latencies), cpu.server),
        "load_generator_cpu_s": round(cpu.load_generator, 3),
        "machine_busy_cpu_s": round(cpu.machine_busy, 3),
    }


async def raw_nats_limit(
    nats_url: str, nats_pid: int, rate: float, options: SubscriptionsOptions
) -> dict[str, Any]:
    """Core NATS and JetStream publish → subscriber latency at `rate`, from one connection
    to another, with the message size of a notification."""
    meter = CpuMeter({"nats-server": nats_pid})
    publisher = await nats.connect(nats_url, name="bench-raw-publisher")
    subscriber = await nats.connect(nats_url, name="bench-raw-subscriber")
    tag = secrets.token_hex(4)
    stream = f"BENCH_RAW_{tag}"
    js_publisher, js_subscriber = publisher.jetstream(), subscriber.jetstream()
    try:
        core = RawStats()

        async def core_arrived(message: Msg) -> None:
            core.arrived(message.data)

        subject = f"bench.raw.{tag}.core"
        await subscriber.subscribe(subject, cb=core_arrived)
        await subscriber.flush()

        async def core_publish(payload: bytes) -> None:
            await publisher.publish(subject, payload)

        core_result = await _raw_window(rate, core_publish, core, meter, options)

        streamed = RawStats()

        async def stream_arrived(message: Msg) -> None:
            streamed.arrived(message.data)

        subject = f"bench.raw.{tag}.stream"
        await js_publisher.add_stream(
            StreamConfig(name=stream, subjects=[subject], storage=StorageType.FILE)
        )
        await js_subscriber.subscribe(
            subject,
            stream=stream,
            durable="bench-raw",
            cb=stream_arrived,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.EXPLICIT),
        )

        async def stream_publish(payload: bytes) -> None:
            await js_publisher.publish(subject, payload, timeout=5)

        stream_result = await _raw_window(rate, stream_publish, streamed, meter, options)
    finally:
        with contextlib.suppress(Exception):
            await js_publisher.delete_stream(stream)
        await close(subscriber)
        await close(publisher)
    return {
        "rate": rate,
        "message_bytes": RAW_BYTES,
        "core": core_result,
        "jetstream": stream_result,
    }


# -- the phases -------------------------------------------------------------------------------


def backend_groups(conn: asyncpg.Connection[Any], groups: Mapping[str, str]) -> PidLookup:
    """The PostgreSQL backends of each application name in `groups` (label → name)."""
    labels = {name: label for label, name in groups.items()}

    async def lookup() -> Mapping[str, Iterable[int]]:
        rows = await conn.fetch(
            "SELECT pid, application_name FROM pg_stat_activity"
            " WHERE application_name = ANY($1::text[])",
            list(labels),
        )
        found: dict[str, list[int]] = {label: [] for label in groups}
        for row in rows:
            found[labels[str(row["application_name"])]].append(int(row["pid"]))
        return found

    return lookup


@dataclass(frozen=True)
class Measurement:
    source: TaskSource
    ledger: Ledger
    meter: CpuMeter
    backends: PidLookup
    options: SubscriptionsOptions


async def measure_channel(
    channel: Channel,
    rate: float,
    m: Measurement,
    limit: Mapping[str, Any] | None,
    idle: Mapping[str, Any] | None,
) -> dict[str, Any]:
    phase = f"{channel.name} {rate:g}/s"
    recorder, writes = Recorder(), Writes()

    async def fire(due: float, measured: bool) -> None:
        if measured:
            writes.scheduled += 1
        task = channel.next_task()
        await write_event(m.source, m.ledger, task, phase, measured, due, writes, recorder)

    notifications_before = m.ledger.notifications[phase]
    window = await run_phase(
        [open_loop(rate, fire, recorder)],
        recorder,
        m.meter,
        warmup=m.options.warmup,
        seconds=m.options.seconds,
        extra_pids=m.backends,
    )
    stopped = time.perf_counter()
    await m.ledger.settled(phase, m.options.late_after)
    drained = time.perf_counter() - stopped
    delivered = delivery_summary(m.ledger.of_phase(phase), m.options.late_after)
    count, usage = delivered["delivered"], window.usage
    notifications = m.ledger.notifications[phase] - notifications_before
    errors = writes.commit.errors + delivered["missing"] + delivered["late"]
    summary: dict[str, Any] = {
        "channel": channel.name,
        "rate": rate,
        "window_s": round(window.seconds, 3),
        "scheduled": writes.scheduled,
        **delivered,
        "write_errors": writes.commit.errors,
        "errors": errors,
        "errors_outside_window": recorder.unmeasured_errors + delivered["missing_outside_window"],
        "delivered_per_second": round(count / window.seconds, 1),
        "notifications": notifications,
        "events_per_notification": round(len(m.ledger.of_phase(phase)) / notifications, 2)
        if notifications
        else None,
        "write": writes.commit.summary(window.seconds),
        "schedule_lag": spread(writes.lags),
        "drain_s": round(drained, 3),
        "per_server_cpu_second": per_cpu_second(count, usage.server),
        "cpu": usage.as_dict(),
        "cpu_ms_per_event": cpu_per_event(usage, count),
        "server_cpu_ms_per_event_above_idle": above_idle(usage, count, window.seconds, idle),
        "vs_raw": versus_raw(delivered["latency"], limit),
        "error_samples": [s.as_dict() for s in recorder.samples],
    }
    if rate == m.options.aim_rate:
        p99 = delivered["latency"]["p99_ms"]
        summary["aim"] = {
            "p99_ms": m.options.aim_p99_ms,
            "met": bool(count) and p99 <= m.options.aim_p99_ms,
        }
    return summary


def cpu_per_event(usage: CpuUsage, events: int) -> dict[str, float | None]:
    """CPU ms per delivered event of each server process, the server and this process
    (the source's writes and relay, the partners)."""
    if not events:
        return {}
    found: dict[str, float | None] = {
        name: round(seconds * 1000 / events, 3) for name, seconds in usage.seconds.items()
    }
    found["server"] = round(usage.server * 1000 / events, 3)
    found["load generator"] = round(usage.load_generator * 1000 / events, 3)
    return found


def above_idle(
    usage: CpuUsage, events: int, seconds: float, idle: Mapping[str, Any] | None
) -> float | None:
    """Server CPU ms per event once what the idle stack spends in as long is taken off."""
    if not events or idle is None:
        return None
    busy = usage.server - float(idle["server_cpu_s_per_s"]) * seconds
    return round(busy * 1000 / events, 3)


def versus_raw(latency: Mapping[str, Any], limit: Mapping[str, Any] | None) -> dict[str, Any]:
    """The phase's p50 and p99 as multiples of the raw NATS ones at the same rate."""
    if limit is None:
        return {}
    core, stream = limit["core"]["latency"], limit["jetstream"]["latency"]
    return {
        "core_p50_ms": core["p50_ms"],
        "core_p99_ms": core["p99_ms"],
        "jetstream_p50_ms": stream["p50_ms"],
        "jetstream_p99_ms": stream["p99_ms"],
        "p50_over_core_p50": ratio(latency["p50_ms"], core["p50_ms"]),
        "p99_over_core_p99": ratio(latency["p99_ms"], core["p99_ms"]),
        "p99_over_jetstream_p99": ratio(latency["p99_ms"], stream["p99_ms"]),
    }


async def sanity(channels: Sequence[Channel], m: Measurement) -> dict[str, Any]:
    """One write per channel, not measured: each must reach its partner, and its event
    must be the one the referral service itself raised for the same change of the same
    Task while it was set up through the API."""
    recorder, writes = Recorder(measuring=True), Writes()
    delivered: dict[str, float] = {}
    compared: dict[str, str] = {}
    for channel in channels:
        started = time.perf_counter()
        task = channel.next_task()
        await write_event(m.source, m.ledger, task, "sanity", False, started, writes, recorder)
        if recorder.samples:
            raise RuntimeError(f"the source cannot write a Task: {recorder.samples[0].as_dict()}")
        if not await m.ledger.settled("sanity", SANITY_LIMIT):
            raise RuntimeError(
                f"an event did not reach the {channel.name} partner in {SANITY_LIMIT:g} s;"
                f" problems: {m.ledger.problem_samples}"
            )
        delivered[channel.name] = round((time.perf_counter() - started) * 1000, 1)
        ours = next((e for k, e in m.ledger.source_events.items() if k[0] == task.id), None)
        theirs = m.ledger.service_events.get((task.id, str((ours or {}).get("type"))))
        if ours is None or theirs is None:
            raise RuntimeError(f"no event of Task/{task.id} to compare: {ours}, {theirs}")
        differences = event_differences(ours, theirs)
        if differences:
            raise RuntimeError(
                f"the {m.options.source} source's event differs from the referral service's"
                f" in {differences}: {ours} vs {theirs}"
            )
        compared[channel.name] = str(ours["type"])
    return {"first_delivery_ms": delivered, "event_same_as_the_service_raised": compared}


# -- the run ----------------------------------------------------------------------------------


def stack_nats_url(stack: LocalStack) -> tuple[str, int]:
    """The URL and pid of the nats-server the stack started."""
    for name, process in stack.children:
        if name == "nats" and stack.own_nats_url is not None:
            return stack.own_nats_url, process.pid
    raise RuntimeError("the stack did not start its own nats-server (is NATS_URL set?)")


@contextlib.contextmanager
def allow_http() -> Iterator[None]:
    """Let the subscriptions service post to the partner's http://127.0.0.1 endpoint."""
    saved = os.environ.get(ALLOW_HTTP)
    os.environ[ALLOW_HTTP] = "true"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(ALLOW_HTTP, None)
        else:
            os.environ[ALLOW_HTTP] = saved


@dataclass
class Partners:
    """The partners' ends in this process and what they saw."""

    ledger: Ledger
    secret: str
    rest_hook: RestHookPartner
    nc: NATS
    nats: list[NatsPartner] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        ledger = self.ledger
        return {
            "notifications_by_type": dict(ledger.kinds),
            "unexpected_events": ledger.unexpected,
            "number_gaps": ledger.gaps,
            "numbers_notified_again": ledger.replayed,
            "problems": dict(ledger.problems),
            "problem_samples": ledger.problem_samples,
            "bad_signatures": self.rest_hook.bad_signatures,
        }


@contextlib.asynccontextmanager
async def partners(settings: Settings) -> AsyncIterator[Partners]:
    """The rest-hook endpoint, a NATS connection for the nats partner and the watcher of
    the events' subject; stopped on the way out."""
    ledger, secret = Ledger(), secrets.token_urlsafe(32)
    found = Partners(
        ledger, secret, RestHookPartner(ledger, secret), await connect(settings, "bench-partner")
    )
    try:
        await found.rest_hook.start()
        await watch_events(found.nc, f"{settings.nats_prefix}.events.referral.Task.>", ledger)
        yield found
    finally:
        for partner in found.nats:
            await partner.stop()
        await found.rest_hook.stop()
        await close(found.nc)


async def subscribe_channels(
    base: HttpClient,
    stack: RunningStack,
    channels: Sequence[Channel],
    found: Partners,
    settings: Settings,
    options: SubscriptionsOptions,
) -> None:
    """Each channel's BUP subscribes (through the API) with its partner listening."""
    for channel in channels:
        client = stack.client(base, channel.bup)
        if channel.name == REST_HOOK:
            endpoint, secret = found.rest_hook.url, found.secret
        else:
            subject = f"{settings.nats_prefix}.partner.{channel.bup}"
            partner = NatsPartner(found.ledger, found.nc, settings.partner_stream_name, subject)
            await partner.start()
            found.nats.append(partner)
            endpoint, secret = None, None
        channel.subscription = await subscribe(client, channel, endpoint, secret, options.max_count)


async def idle_cpu(meter: CpuMeter, backends: PidLookup, seconds: float) -> dict[str, Any]:
    """What the stack spends with nothing to do (polling, leases, timers)."""
    start, began = meter.snapshot(await backends()), time.perf_counter()
    await asyncio.sleep(seconds)
    end, ended = meter.snapshot(await backends()), time.perf_counter()
    usage = CpuMeter.usage(start, end)
    return {
        "window_s": round(ended - began, 3),
        "server_cpu_s_per_s": round(usage.server / (ended - began), 4),
        "cpu": usage.as_dict(),
    }


async def _measure(
    options: SubscriptionsOptions, stack: RunningStack, nats_url: str
) -> dict[str, Any]:
    settings = Settings().model_copy(update={"nats_url": nats_url})
    ids = Identifiers(options.seed if options.seed is not None else secrets.randbits(32))
    source_name = f"{stack.tag}src"
    source_url = with_application_name(options.database_url, source_name)
    source = TaskSource(settings, source_url, stack.base_url, options.source)
    monitor = await asyncpg.connect(options.database_url)
    try:
        async with partners(settings) as found:
            await source.start()
            async with http_client(stack.base_url, "", SETUP_CONCURRENCY * 2) as base:
                started = time.perf_counter()
                channels, parties, waited = await make_channels(base, stack, source, ids, options)
                populated = time.perf_counter() - started
                await subscribe_channels(base, stack, channels, found, settings, options)
            servers = {name: stack.pids[child] for name, child in SERVERS.items()}
            groups = {
                "postgres backends of the stack": stack.tag,
                "postgres backends of the source": source_name,
            }
            m = Measurement(
                source,
                found.ledger,
                CpuMeter(servers, programs=["postgres"]),
                backend_groups(monitor, groups),
                options,
            )
            checked = await sanity(channels, m)
            print(f"idle stack for {options.idle_seconds:g} s …", flush=True)
            idle = await idle_cpu(m.meter, m.backends, options.idle_seconds)
            limits, phases = [], []
            for rate in options.rates:
                print(f"raw NATS limit at {rate:g}/s …", flush=True)
                limit = await raw_nats_limit(nats_url, stack.pids["nats"], rate, options)
                limits.append(limit)
                for channel in channels:
                    print(f"phase {channel.name} at {rate:g} events/s …", flush=True)
                    phases.append(await measure_channel(channel, rate, m, limit, idle))
            seen = found.summary()
    finally:
        await source.stop()
        await monitor.close()
    return {
        "setup": {
            "waited_for_routing_s": round(waited, 3),
            "api_setup_s": round(populated, 2),
            "organisations": {
                "fastlege": parties.gp,
                **{f"bup ({c.name})": c.bup for c in channels},
            },
            "subscriptions": {c.name: c.subscription for c in channels},
            "referrals_per_channel": options.referrals,
            "sanity": checked,
        },
        "idle": idle,
        "limits": limits,
        "phases": phases,
        "partner": seen,
    }


def run(options: SubscriptionsOptions) -> tuple[dict[str, Any], Path | None]:
    """Run the whole benchmark; return the result and the JSON file it was written to.
    Ctrl-C raises KeyboardInterrupt after the cleanup."""
    result, data_dir, tag = new_result(
        "subscriptions", options.as_dict(), STACK_SERVICES, "postgresql"
    )
    started = result["timestamp"]
    try:
        environment = CrudOptions(database="postgresql", database_url=options.database_url)
        with bench_environment(environment, tag), allow_http():
            _run_stack(options, result, data_dir, tag)
    finally:
        result["cleanup"] = stack_cleanup("postgresql", options.database_url, data_dir, tag)
    result["errors_total"] = errors_total(result)
    result["errors_outside_windows"] = sum(
        p["errors_outside_window"] for p in result.get("phases", [])
    )
    path = None
    if options.out_dir is not None:
        path = write_json(result, options.out_dir, f"subscriptions-postgresql-{started}.json")
    return result, path


def _run_stack(
    options: SubscriptionsOptions, result: dict[str, Any], data_dir: Path, tag: str
) -> None:
    port = free_port()
    stack = LocalStack(data_dir, port, STACK_SERVICES)
    print(f"starting the stack in {data_dir} …", flush=True)
    try:
        stack.start()
        pids = {name: process.pid for name, process in stack.children}
        result["stack"]["pids"] = pids
        nats_url, _ = stack_nats_url(stack)
        print(
            f"{options.referrals} referrals per channel, rates"
            f" {', '.join(f'{r:g}' for r in options.rates)}/s: {options.warmup:g} s warm-up +"
            f" {options.seconds:g} s per channel …",
            flush=True,
        )
        running = RunningStack(f"http://127.0.0.1:{port}/fhir", data_dir, pids, tag)
        result.update(asyncio.run(_measure(options, running, nats_url)))
    finally:
        stack.stop()


def errors_total(result: Mapping[str, Any]) -> int:
    """Everything that makes the run not measure what it claims."""
    phases, limits = result.get("phases", []), result.get("limits", [])
    partner = result.get("partner", {})
    total = sum(int(p["errors"]) for p in phases)
    total += sum(int(limit[kind]["errors"]) for limit in limits for kind in ("core", "jetstream"))
    total += int(partner.get("unexpected_events", 0)) + int(partner.get("number_gaps", 0))
    total += sum(int(count) for count in partner.get("problems", {}).values())
    return total


# -- the printed summary ----------------------------------------------------------------------


def format_subscriptions_report(result: Mapping[str, Any]) -> str:
    """The printed summary of a ``subscriptions`` result (every number is also in the JSON)."""
    params, machine = result["parameters"], result["machine"]
    phases, limits = result.get("phases", []), result.get("limits", [])
    max_count = params["max_count"] or DEFAULT_MAX_COUNT
    out = [
        f"barnebro subscriptions benchmark — PostgreSQL, source {params['source']},"
        f" {params['referrals_per_channel']} referrals per channel, topic {TOPIC} filtered by"
        f" performer, id-only, at most {max_count} events per notification;"
        f" {params['seconds']:g} s per phase after {params['warmup_seconds']:g} s warm-up, raw"
        f" NATS {params['limit_seconds']:g} s, late after {params['late_after_seconds']:g} s;"
        f" nproc {machine['nproc']}, Python {machine['python']}",
    ]
    errors = result.get("errors_total", 0)
    if errors:
        out.append(
            f"!! {errors} ERRORS (failed writes, missing or late events, lost or unreadable"
            " notifications): the phases with errors do not measure what they claim; see below"
        )
    out += ["", latency_table(phases, limits), "", stage_table(phases), "", cpu_table(phases)]
    idle = result.get("idle")
    if idle:
        above = [
            f"{p['channel']} {p['rate']:g}/s {table_cell(p['server_cpu_ms_per_event_above_idle'])}"
            for p in phases
        ]
        out.append(
            f"idle stack: {idle['server_cpu_s_per_s']:.3f} server CPU-s per second"
            f" ({idle['window_s']:g} s with nothing written); server CPU ms per event above"
            f" idle: {', '.join(above)}"
        )
    out += aim_lines(phases)
    out += problem_lines(result)
    cleanup = result.get("cleanup", {})
    out.append(
        f"\ncleanup: schemas {', '.join(cleanup.get('dropped_schemas', [])) or '-'};"
        f" data directory removed: {cleanup.get('data_dir_removed')}"
    )
    out += [f"  cleanup problem: {problem}" for problem in cleanup.get("problems", [])]
    return "\n".join(out)


def latency_table(phases: Sequence[Mapping[str, Any]], limits: Sequence[Mapping[str, Any]]) -> str:
    rows: list[list[object]] = []
    for limit in limits:
        rate = limit["rate"]
        for kind, label in (("core", "raw core NATS"), ("jetstream", "raw JetStream")):
            raw = limit[kind]
            lat = raw["latency"]
            rows.append([label, f"{rate:g}", raw["sent"], raw["received"], raw["errors"],
                         lat["p50_ms"], lat["p99_ms"], lat["max_ms"], None, None,
                         raw["messages_per_nats_cpu_second"], raw["nats_cpu_s"], None])  # fmt: skip
        for p in phases:
            if p["rate"] != rate:
                continue
            lat, vs = p["latency"], p["vs_raw"]
            rows.append([p["channel"], f"{rate:g}", p["written"], p["delivered"], p["errors"],
                         lat["p50_ms"], lat["p99_ms"], lat["max_ms"],
                         vs.get("p99_over_core_p99"), vs.get("p99_over_jetstream_p99"),
                         p["per_server_cpu_second"], p["cpu"]["server_total_s"],
                         p["events_per_notification"]])  # fmt: skip
    headers = ["path", "rate/s", "written", "delivered", "errors", "p50 ms", "p99 ms", "max ms",
               "p99/core", "p99/JS", "per CPU-s", "CPU s", "ev/notif"]  # fmt: skip
    return (
        "write → partner latency per event; raw rows: publish → subscriber at the same rate."
        " p99/core, p99/JS: p99 as a multiple of the raw p99; per CPU-s: events delivered per"
        " server CPU-s (raw: messages per nats-server CPU-s)\n" + text_table(headers, rows)
    )


def stage_table(phases: Sequence[Mapping[str, Any]]) -> str:
    def both(values: Mapping[str, Any]) -> str:
        return f"{table_cell(values['p50_ms'])} / {table_cell(values['p99_ms'])}"

    rows = [
        [
            f"{p['channel']} {p['rate']:g}/s",
            both(p["write"]),
            both(p["stages"]["write_to_nats"]),
            both(p["stages"]["nats_to_partner"]),
            both(p["latency"]),
            both(p["schedule_lag"]),
        ]
        for p in phases
    ]
    headers = ["phase", "write", "write → NATS", "NATS → partner", "write → partner",
               "start lag"]  # fmt: skip
    return (
        "where the time goes, p50 / p99 ms (write = its transaction, from its start; start lag ="
        " how late the source began writes)\n" + text_table(headers, rows)
    )


def cpu_table(phases: Sequence[Mapping[str, Any]]) -> str:
    names = list(dict.fromkeys(n for p in phases for n in p["cpu_ms_per_event"]))
    rows: list[list[object]] = [
        [f"{p['channel']} {p['rate']:g}/s", *(p["cpu_ms_per_event"].get(n) for n in names)]
        for p in phases
    ]
    for p in phases:
        cpu = p["cpu"]
        seconds = [cpu["per_process_s"].get(n) for n in names[:-2]]
        label = f"{p['channel']} {p['rate']:g}/s, CPU s"
        rows.append([label, *seconds, cpu["server_total_s"], cpu["load_generator_s"]])
    return (
        "CPU ms per delivered event, then CPU seconds of the window (server = the processes"
        " named and every postgres; load generator = this process: the source and its relay,"
        " the partners)\n" + text_table(["phase", *names], rows)
    )


def aim_lines(phases: Sequence[Mapping[str, Any]]) -> list[str]:
    out = []
    for p in phases:
        aim = p.get("aim")
        if aim is not None:
            verdict = "met" if aim["met"] else "NOT met"
            out.append(
                f"aim p99 ≤ {aim['p99_ms']:g} ms at {p['rate']:g}/s, {p['channel']}:"
                f" {verdict} (p99 {table_cell(p['latency']['p99_ms'])} ms)"
            )
    return ["", *out] if out else []


def problem_lines(result: Mapping[str, Any]) -> list[str]:
    out = []
    for p in result.get("phases", []):
        label = f"{p['channel']} {p['rate']:g}/s"
        if p["missing"] or p["late"] or p["write_errors"]:
            out.append(
                f"  {label}: {p['write_errors']} failed writes, {p['missing']} events missing,"
                f" {p['late']} late"
            )
        for s in p["error_samples"]:
            where = "" if s["in_measured_window"] else " (outside window)"
            out.append(f"  {label}: {s['method']} {s['path']} -> {s['status']}{where}: {s['body']}")
    for limit in result.get("limits", []):
        for kind in ("core", "jetstream"):
            raw = limit[kind]
            if raw["errors"]:
                out.append(
                    f"  raw {kind} {limit['rate']:g}/s: {raw['missing']} missing,"
                    f" {raw['errors'] - raw['missing']} failed publishes {raw['error_samples']}"
                )
    partner = result.get("partner", {})
    if partner.get("unexpected_events"):
        out.append(f"  {partner['unexpected_events']} events notified that were never written")
    out += [f"  partner: {text}" for text in partner.get("problem_samples", [])]
    return ["", "errors:", *out] if out else []
