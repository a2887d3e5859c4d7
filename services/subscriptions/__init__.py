"""The subscriptions service: partners' topic-based FHIR Subscriptions (R5 Backport on
R4B) over rest-hook and NATS, decided by the consent rules at delivery, durable from the
event stream to the partner, with `$status` and `$events` to recover what was missed."""

from __future__ import annotations

from typing import Any

from nats.js.api import StorageType, StreamConfig
from nats.js.errors import NotFoundError

from services.subscriptions.catalogue import publish_topics
from services.subscriptions.channels import NatsChannel, RestHook, partner_subjects
from services.subscriptions.content import ResourceReader
from services.subscriptions.delivery import Dispatcher, DispatchTimings
from services.subscriptions.domain.retry import RetryPolicy
from services.subscriptions.fanout import FanOut
from services.subscriptions.gate import ConsentGate
from services.subscriptions.operations import SubscriptionOperations
from services.subscriptions.queue import DeliveryQueue, create_queue_tables
from services.subscriptions.resources import subscription_definitions
from services.subscriptions.status import StatusWriter
from shared.config import Settings
from shared.metrics import subscriptions as subscriptions_gauge
from shared.patience import patiently
from shared.periodic import Periodic
from shared.runtime import Component, ServiceRuntime, ServiceSpec
from shared.transport.egress import EgressPolicy
from shared.transport.forwarding import Forwarder

NAME = "subscriptions"
PRUNE_SECONDS = 3600.0
COUNT_SECONDS = 15.0
"""How often the `barnebro.subscriptions` gauge is brought up to date."""


def subscriptions_spec(settings: Settings) -> ServiceSpec:
    queue = DeliveryQueue()
    egress = EgressPolicy(settings.subscription_allowed_hosts.split(","))

    async def extend(runtime: ServiceRuntime) -> list[Component]:
        fhir, nc = runtime.fhir, runtime.nc
        assert fhir is not None and nc is not None and runtime.db is not None
        assert runtime.access_guard is not None
        queue.db = runtime.db
        await create_queue_tables(runtime.db)
        await patiently("the partner stream", lambda: ensure_partner_stream(runtime))
        await publish_topics(fhir, settings.base_url)
        gate = ConsentGate(runtime.access_guard, NAME)
        reader = ResourceReader(
            Forwarder(nc, settings.request_timeout), settings.nats_prefix, settings.base_url
        )
        SubscriptionOperations(fhir, queue, gate, reader).register()
        dispatcher = Dispatcher(
            queue=queue,
            gate=gate,
            reader=reader,
            rest_hook=RestHook(egress),
            nats=NatsChannel(nc, settings.nats_prefix, settings.request_timeout),
            status=StatusWriter(fhir, settings.base_url),
            timings=DispatchTimings(
                poll=settings.subscription_poll_seconds,
                lease=settings.subscription_lease_seconds,
                linger=settings.subscription_linger_seconds,
                hold=settings.subscription_hold_seconds,
                retry=RetryPolicy(
                    first=settings.subscription_retry_first_seconds,
                    ceiling=settings.subscription_retry_max_seconds,
                    give_up_after=settings.subscription_retry_hours * 3600,
                ),
            ),
            base_url=settings.base_url,
            hears_of_events=lambda: fanout.leading,
        )
        fanout = FanOut(
            nc,
            settings,
            queue,
            dispatcher.queued,
            lease=settings.subscription_lease_seconds,
            poll=settings.subscription_poll_seconds,
        )
        retention = settings.partner_retention_hours * 3600

        async def prune() -> int:
            return await queue.prune(retention)

        pruning = Periodic("subscription queue pruning", prune, PRUNE_SECONDS, "pruned %d events")

        async def count() -> int:
            for status, number in (await queue.by_status()).items():
                subscriptions_gauge.set(number, {"status": status})
            return 0

        counting = Periodic("subscription metrics", count, COUNT_SECONDS, "")
        return [dispatcher, fanout, pruning, counting]

    definitions = subscription_definitions(
        queue, settings.nats_prefix, settings.subscription_allow_http, egress
    )

    async def status() -> dict[str, Any]:
        return {"subscriptions_in_error": await queue.in_error()}

    return ServiceSpec(NAME, definitions, extend=extend, status=status)


async def ensure_partner_stream(runtime: ServiceRuntime) -> None:
    """The stream partners on the `nats` channel read from (`<prefix>.partner.<orgnr>`)."""
    settings = runtime.settings
    assert runtime.nc is not None
    js = runtime.nc.jetstream()
    try:
        await js.stream_info(settings.partner_stream_name)
    except NotFoundError:
        await js.add_stream(
            StreamConfig(
                name=settings.partner_stream_name,
                subjects=[partner_subjects(settings.nats_prefix)],
                storage=StorageType.FILE,
                num_replicas=settings.event_replicas,
                max_age=settings.partner_retention_hours * 3600,
                duplicate_window=120.0,
            )
        )
