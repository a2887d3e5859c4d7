"""What the subscriptions benchmark's phases share: options, the subscriptions and the
world made through the API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import (
    Mapping,
)
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench.actors import admit_all
from bench.crud import (
    DEFAULT_DATABASE_URL,
    RESULTS_DIR,
    Identifiers,
)
from bench.event_source import (
    SOURCES,
    Source,
    TaskSource,
    TrackedTask,
)
from bench.load import HttpClient, Recorder
from bench.referral import (
    FIND_TASK,
    MOVES,
    Parties,
    ReferralWorld,
    RunningStack,
    bench_request,
    etag,
    moved,
    only_task,
    organisation,
    populate,
    submit,
    task_in,
    with_header,
)
from services.referral.domain.vocabulary import TaskStatus
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
ALLOWED_HOSTS = "BARNEBRO_SUBSCRIPTION_ALLOWED_HOSTS"


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
