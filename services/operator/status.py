"""`barnebro status`: how a deployment stands, in one place, for its operator.

Read over NATS only, so it works against the local stack and a deployment alike: the
services in the registry and every instance of each (ready or not, the events its outbox
has not published yet), the durable consumers of the event and audit streams (messages
not yet delivered, awaiting acknowledgement, redelivered), the dead letters, and the
partners' subscriptions in `error`.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

import nats.js.errors
import orjson
from nats.aio.client import Client as NATS
from nats.js.client import JetStreamContext
from nats.js.errors import KeyDeletedError, KeyNotFoundError

from shared.config import Settings
from shared.transport.service_host import ensure_bucket
from shared.transport.wire import status_subject

ANSWER_WINDOW = 1.0
"""Seconds to collect the answers of every instance."""


@dataclass
class Status:
    instances: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """Each registered service's instances, as they answered (none: not running)."""
    consumers: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: int = 0

    @property
    def subscriptions_in_error(self) -> list[dict[str, Any]]:
        """As the subscriptions service's instances answered (each the same list)."""
        found: dict[str, dict[str, Any]] = {}
        for answer in self.instances.get("subscriptions", []):
            for subscription in answer.get("subscriptions_in_error", []):
                found.setdefault(str(subscription.get("id")), subscription)
        return list(found.values())

    @property
    def healthy(self) -> bool:
        return (
            all(found and all(i.get("ready") for i in found) for found in self.instances.values())
            and self.dead_letters == 0
        )


async def instances(nc: NATS, subject: str, window: float = ANSWER_WINDOW) -> list[dict[str, Any]]:
    """Every answer to one status request that arrives within `window` seconds."""
    inbox = nc.new_inbox()
    answers: list[dict[str, Any]] = []

    async def collect(message: Any) -> None:
        with contextlib.suppress(orjson.JSONDecodeError):
            answers.append(orjson.loads(message.data))

    subscription = await nc.subscribe(inbox, cb=collect)
    try:
        await nc.publish(subject, b"", reply=inbox)
        await nc.flush()
        await asyncio.sleep(window)
    finally:
        await subscription.unsubscribe()
    return answers


async def registered_services(js: JetStreamContext, settings: Settings) -> list[str]:
    """The services in the registry, from its stream's subjects (one per key) less the
    deleted keys. Not `KeyValue.keys()`: its watch can end before the first key arrives
    when the messages are delivered but not yet read as the consumer is asked how many
    are pending, which on a busy machine listed no service at all."""
    registry = await ensure_bucket(js, settings.registry_bucket, settings.event_replicas)
    bucket_subjects = f"$KV.{settings.registry_bucket}."
    info = await js.stream_info(f"KV_{settings.registry_bucket}", subjects_filter=">")
    services = []
    for subject in sorted(info.state.subjects or {}):
        with contextlib.suppress(KeyNotFoundError, KeyDeletedError):  # purged, deleted
            services.append((await registry.get(subject.removeprefix(bucket_subjects))).key)
    return services


async def gather(nc: NATS, settings: Settings, window: float = ANSWER_WINDOW) -> Status:
    """How the deployment stands; each service's instances are those that answered within
    `window` seconds."""
    status = Status()
    js = nc.jetstream()
    services = await registered_services(js, settings)
    subjects = [status_subject(settings.nats_prefix, service) for service in services]
    answers = await asyncio.gather(*(instances(nc, subject, window) for subject in subjects))
    status.instances = dict(zip(services, answers, strict=True))
    for stream in (settings.stream_name, settings.audit_stream_name):
        with contextlib.suppress(nats.js.errors.NotFoundError):
            for consumer in await js.consumers_info(stream):
                status.consumers.append(
                    {
                        "stream": stream,
                        "consumer": consumer.name,
                        "pending": consumer.num_pending or 0,
                        "awaiting_ack": consumer.num_ack_pending or 0,
                        "redelivered": consumer.num_redelivered or 0,
                    }
                )
    with contextlib.suppress(nats.js.errors.NotFoundError):
        dead = await js.stream_info(settings.dead_letter_stream_name)
        status.dead_letters = dead.state.messages
    return status


def report(status: Status) -> str:
    lines = ["services"]
    for service, found in status.instances.items():
        if not found:
            lines.append(f"  {service}: no instance answering")
            continue
        for answer in found:
            state = "ready" if answer.get("ready") else "starting"
            lines.append(
                f"  {service}: {state}, outbox backlog {answer.get('outbox_backlog', '?')}"
            )
    lines.append("consumers (pending / awaiting ack / redelivered)")
    for consumer in status.consumers:
        lines.append(
            f"  {consumer['stream']} {consumer['consumer']}: {consumer['pending']}"
            f" / {consumer['awaiting_ack']} / {consumer['redelivered']}"
        )
    lines.append(f"dead letters: {status.dead_letters} (barnebro dead-letters)")
    in_error = status.subscriptions_in_error
    lines.append(f"subscriptions in error: {len(in_error)}")
    for subscription in in_error:
        lines.append(
            f"  Subscription/{subscription.get('id')} of {subscription.get('owner')},"
            f" failing since {subscription.get('failing_since')}: {subscription.get('error')}"
        )
    lines.append("healthy" if status.healthy else "NOT HEALTHY")
    return "\n".join(lines)
