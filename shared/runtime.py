"""Running a service: the one place where its parts are wired together.

`ServiceRuntime` connects NATS, opens the service's database, creates its tables and
applies its data migrations, starts the FHIR request host (`shared.fhir.router`) and the
outbox relay, registers the service's capabilities, and on stop finishes requests under
way before closing connections. The same code runs under `barnebro serve`,
`barnebro up` and the tests.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from nats.aio.client import Client as NATS

from shared.access.audit import AuditPublisher
from shared.access.guard import AccessGuard
from shared.access.relations import RelationAnnouncer
from shared.access.step import UNGUARDED
from shared.access.view import ConsentView
from shared.config import Settings
from shared.fhir.capability import service_capability
from shared.fhir.definitions import ResourceDefinition
from shared.fhir.migrations import migrate
from shared.fhir.router import FhirRouter
from shared.fhir.service import FhirService
from shared.organisation_register import OrganisationRegister, announce_register_change
from shared.patience import patiently
from shared.periodic import Periodic
from shared.stack_clock import ClockFollower
from shared.store.database import Database, open_database
from shared.store.outbox import OutboxRelay
from shared.store.schema import create_schema
from shared.store.upkeep import UPKEEP_DONE, keep_tables
from shared.transport.nats_connection import close, connect, ensure_event_stream
from shared.transport.service_host import ServiceHost, register_capabilities

log = logging.getLogger(__name__)


class Component(Protocol):
    """Something a service runs besides its request host (a consumer, a scheduler)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass(frozen=True)
class ServiceSpec:
    """What a service is: its name, the resource types it owns, and (optionally) how it
    extends the runtime: registering operations and returning components to run."""

    name: str
    definitions: list[ResourceDefinition]
    extend: Callable[[ServiceRuntime], Awaitable[list[Component]]] | None = None
    openapi: Callable[[], dict[str, Any]] | None = None
    """The OpenAPI document of an HTTP API the service answers beside FHIR, published
    with its entry in the service registry for the gateway to serve."""
    status: Callable[[], Awaitable[dict[str, Any]]] | None = None
    """What the service adds to each instance's answer to `barnebro status`."""


def outbox_relay(db: Database, nc: NATS, settings: Settings) -> OutboxRelay:
    """The relay that publishes a service's outbox to JetStream, as configured."""
    js = nc.jetstream()

    async def publish(subject: str, payload: bytes, headers: dict[str, str]) -> None:
        await js.publish(subject, payload, headers=headers, timeout=5)

    return OutboxRelay(
        db,
        publish,
        poll_interval=settings.outbox_poll_interval,
        max_backoff=settings.outbox_max_backoff,
        retention=timedelta(hours=settings.outbox_retention_hours),
    )


class ServiceRuntime:
    def __init__(self, spec: ServiceSpec, settings: Settings) -> None:
        self.spec = spec
        self.settings = settings
        self.nc: NATS | None = None
        self.db: Database | None = None
        self.fhir: FhirService | None = None
        self.router: FhirRouter | None = None
        self.access_guard: AccessGuard | None = None
        """The consent step, for services that hold information about patients."""
        self.relay: OutboxRelay | None = None
        self._host: ServiceHost | None = None
        self.consent_view: ConsentView | None = None
        self.components: list[Component] = []
        self._clock: ClockFollower | None = None
        self.organisations = OrganisationRegister()
        """What the service's directory clients read of the register of organisations."""
        self._upkeep = Periodic(
            "table upkeep", self._keep_tables, settings.table_upkeep_interval, UPKEEP_DONE
        )

    async def start(self) -> None:
        settings, name = self.settings, self.spec.name
        self.db = await patiently(
            "the database",
            lambda: open_database(
                settings.database_url_for(name), settings.db_schema_for(name),
                settings.db_pool_size,
            ),
        )  # fmt: skip
        db, nc = self.db, await patiently("NATS", lambda: connect(settings, f"barnebro-{name}"))
        self.nc = nc
        await self.organisations.follow(nc, settings.nats_prefix)
        self._clock = ClockFollower(nc, settings)
        await self._clock.start()  # before anything is stamped with the time
        await patiently("the database schema", lambda: create_schema(db))
        await patiently("JetStream", lambda: ensure_event_stream(nc, settings))
        self.relay = outbox_relay(self.db, self.nc, settings)
        self.fhir = FhirService(
            name,
            self.spec.definitions,
            self.db,
            prefix=settings.nats_prefix,
            on_commit=self.relay.notify,
            published=self.relay.drained,
            guard=await self._access_guard() or UNGUARDED,
            body_limit=settings.max_body_bytes,
        )
        self.fhir.announcer = RelationAnnouncer(self.nc, settings.nats_prefix, self.consent_view)
        self.fhir.after_commit.append(lambda: announce_register_change(nc, settings.nats_prefix))
        await migrate(self.fhir)
        self.router = FhirRouter(self.fhir, body_limit=settings.max_body_bytes)
        if self.spec.extend is not None:
            self.components = await self.spec.extend(self)
        self._host = ServiceHost(
            self.nc,
            prefix=settings.nats_prefix,
            service=name,
            resource_types=[d.resource_type for d in self.spec.definitions],
            handler=self.router.handle,
            ready=self.ready,
            status=self.status,
        )
        await self._host.start()
        self.relay.start()
        await self._upkeep.start()
        for component in self.components:
            await component.start()
        capability = service_capability(name, self.spec.definitions)
        if self.spec.openapi is not None:
            capability["openapi"] = self.spec.openapi()
        await patiently(
            "the service registry",
            lambda: register_capabilities(
                nc, settings.registry_bucket, name, capability, settings.event_replicas
            ),
        )
        log.info("service %s started", name)

    async def status(self) -> dict[str, Any]:
        """How this instance stands, for `barnebro status`: events not yet published, and
        what the service adds (`ServiceSpec.status`)."""
        assert self.relay is not None
        answer: dict[str, Any] = {"outbox_backlog": await self.relay.backlog()}
        if self.spec.status is not None:
            answer.update(await self.spec.status())
        return answer

    async def _keep_tables(self) -> int:
        return 0 if self.db is None else await keep_tables(self.db)

    def ready(self) -> bool:
        """Whether the service can serve: its consent mirror (if it has one) is loaded."""
        return self.consent_view is None or self.consent_view.loaded()

    async def _access_guard(self) -> AccessGuard | None:
        """The consent step, for services that hold information about patients."""
        categories = {d.resource_type: d.data_category for d in self.spec.definitions}
        if not any(categories.values()):
            return None
        assert self.nc is not None
        settings = self.settings
        self.consent_view = ConsentView(
            self.nc, settings.consent_view_bucket, settings.event_replicas
        )
        await self.consent_view.start()
        audit = AuditPublisher(self.nc, settings.nats_prefix, settings.request_timeout)
        several = {d.resource_type: d.categories() for d in self.spec.definitions}
        shapers = {d.resource_type: d.shaped for d in self.spec.definitions}
        self.access_guard = AccessGuard(
            self.spec.name, self.consent_view, audit, categories, several, shapers=shapers
        )
        return self.access_guard

    async def stop(self) -> None:
        for component in reversed(self.components):
            await component.stop()
        if self._host is not None:
            await self._host.stop()
        if self.consent_view is not None:
            await self.consent_view.stop()
        await self._upkeep.stop()
        if self.relay is not None:
            await self.relay.stop()
        await self.organisations.stop()
        if self._clock is not None:
            await self._clock.stop()
        if self.nc is not None:
            await close(self.nc)
        if self.db is not None:
            await self.db.close()
        log.info("service %s stopped", self.spec.name)
