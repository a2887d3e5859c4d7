"""The directory and the services under test in one process, on SQLite files.

Requests one service makes of another (the referral service asking the directory who a
child is, what kind an organisation is) go straight to the other's router instead of
over NATS; the consent view is a fixed one the test fills in (`consent_state`), and
audit records are kept in memory. So the rules of every service's resource definitions,
and the consent step they rely on, can be tried with nothing but Python.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, cast

import orjson
from nats.aio.client import Client as NATS

from services.careplan.resources import careplan_definitions
from services.consent.resources import consent_definitions
from services.directory.resources import directory_definitions
from services.referral.resources import referral_definitions
from services.subscriptions.queue import DeliveryQueue, create_queue_tables
from services.subscriptions.resources import subscription_definitions
from shared.access.audit import AuditRecord
from shared.access.guard import AccessGuard
from shared.access.state import PatientAccessState
from shared.access.step import UNGUARDED, Guard
from shared.access.view import ConsentView
from shared.directory_client import DirectoryClient, service_caller
from shared.fhir.definitions import ResourceDefinition
from shared.fhir.errors import FhirError
from shared.fhir.router import FhirRouter
from shared.fhir.service import FhirService
from shared.identifiers import FNR_SYSTEM
from shared.outside_reads import OutsideReads
from shared.store.database import Database, SqliteDatabase
from shared.store.resource_store import StoredResource
from shared.store.schema import create_schema
from shared.transport.egress import EgressPolicy
from shared.transport.service_host import error_response
from shared.transport.wire import Caller, FhirRequest, FhirResponse
from tests.referral_world import BVT, KINDS, organisation
from tests.support import fodselsnummer

BASE = "http://local/fhir"
OPERATOR = Caller(credential="operator", client_id="operator", scopes=["system/*.cruds"])
REGISTER = Caller(credential="register", client_id="register", scopes=["system/*.cruds"])


def caller(orgnr: str, **more: Any) -> Caller:
    """An organisation of the test world, of the kind the register states for it."""
    return Caller(orgnr=orgnr, org_kind=KINDS[orgnr], scopes=["system/*.cruds"], **more)


class FixedConsentView(ConsentView):
    """Consent states the test sets (`apply`), not a bucket followed over NATS."""

    def __init__(self) -> None:
        super().__init__(cast(NATS, None), "local")
        self.caught_up_asked = 0
        """How often a request brought the view up to date (`caught_up`) before deciding."""

    def ready(self) -> None:
        return None

    async def caught_up(self) -> None:
        self.caught_up_asked += 1


async def public_resolver(host: str, port: int) -> list[str]:
    """Every name resolves to one public address (nothing leaves: no request is sent)."""
    return ["93.184.216.34"]


class MemoryAudit:
    """Audit records kept in a list (the services tier stores them in JetStream)."""

    def __init__(self) -> None:
        self.records: list[AuditRecord] = []

    async def record(self, record: AuditRecord) -> None:
        self.records.append(record)


def consent_step(name: str, definitions: list[ResourceDefinition], view: ConsentView,
                 audit: MemoryAudit) -> Guard:  # fmt: skip
    """The service's consent step, as the runtime builds it."""
    categories = {d.resource_type: d.data_category for d in definitions}
    if not any(categories.values()):
        return UNGUARDED
    several = {d.resource_type: d.categories() for d in definitions}
    shapers = {d.resource_type: d.shaped for d in definitions}
    return AccessGuard(name, view, audit, categories, several, shapers=shapers)


class InProcess:
    """Sends each request to the router of the service owning its resource type."""

    def __init__(self) -> None:
        self.routers: dict[str, FhirRouter] = {}

    def serve(self, service: FhirService) -> None:
        router = FhirRouter(service)
        for resource_type in service.definitions:
            self.routers[resource_type] = router

    async def send(self, subject: str, request: FhirRequest, body: bytes) -> FhirResponse:
        router = self.routers[request.resource_type or ""]
        try:
            return await router.handle(request, body)
        except FhirError as exc:
            return error_response(exc)  # as the service host answers over NATS


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str]

    @property
    def diagnostics(self) -> str:
        issues = self.body.get("issue", []) if isinstance(self.body, dict) else []
        return " ".join(str(i.get("diagnostics", "")) for i in issues)


@dataclass
class LocalServices:
    sender: InProcess
    services: dict[str, FhirService]
    view: FixedConsentView
    audit: MemoryAudit
    organisations: dict[str, str] = field(default_factory=dict)
    """orgnr → Organization id, as registered."""

    async def call(
        self, by: Caller, interaction: str, resource_type: str, body: Any = None, **fields: Any
    ) -> Answer:
        request = FhirRequest(
            interaction=interaction,
            resource_type=resource_type,
            base_url=BASE,
            caller=by,
            **fields,
        )
        payload = orjson.dumps(body) if body is not None else b""
        answer = await self.sender.send("", request, payload)
        return Answer(
            answer.status, orjson.loads(answer.body) if answer.body else None, answer.headers
        )

    async def created(self, by: Caller, resource: dict[str, Any]) -> dict[str, Any]:
        answer = await self.call(by, "create", resource["resourceType"], resource)
        assert answer.status == 201, (answer.status, answer.body)
        made: dict[str, Any] = answer.body
        return made

    async def register(self, *orgnrs: str) -> None:
        """Organisations admitted by the operator, of the kinds `KINDS` gives them."""
        for orgnr in orgnrs:
            made = await self.created(OPERATOR, organisation(orgnr))
            self.organisations[orgnr] = made["id"]

    async def child(
        self, age: int = 11, *, by: Caller | None = None, **more: Any
    ) -> dict[str, Any]:
        """A child with a fødselsnummer, registered by a barnevernstjeneste (`by`)."""
        born = date.today().replace(year=date.today().year - age) - timedelta(days=40)
        fnr = fodselsnummer(born, 500 + len(self.organisations) * 13 + age)
        patient = {"resourceType": "Patient", "identifier": [{"system": FNR_SYSTEM, "value": fnr}],
                   "name": [{"family": "Nordmann", "given": ["Ola"]}], **more}  # fmt: skip
        return await self.created(by or caller(BVT), patient)

    async def stored(self, resource_type: str, res_id: str) -> StoredResource | None:
        service = next(s for s in self.services.values() if resource_type in s.definitions)
        async with service.db.reader() as conn:
            return await service.store.read(conn, resource_type, res_id)

    def consent_state(self, state: PatientAccessState) -> None:
        self.view.apply(state)


Definitions = Callable[[OutsideReads], list[ResourceDefinition]]
SERVICES: dict[str, Definitions] = {
    "referral": referral_definitions,
    "careplan": careplan_definitions,
    "consent": lambda reads: consent_definitions(),
}


@contextlib.asynccontextmanager
async def local_services(tmp_path: Path, *names: str) -> AsyncIterator[LocalServices]:
    """The directory and the services `names`, each on its own SQLite file."""
    sender, view, audit = InProcess(), FixedConsentView(), MemoryAudit()
    dbs: list[Database] = []
    services: dict[str, FhirService] = {}
    try:
        for name in ("directory", *names):
            db: Database = await SqliteDatabase.connect(tmp_path / f"{name}.sqlite")
            dbs.append(db)
            await create_schema(db)
            if name == "directory":
                definitions = directory_definitions(enforce_orgnr_check_digit=True)
            elif name == "subscriptions":
                queue = DeliveryQueue()
                queue.db = db
                await create_queue_tables(db)
                definitions = subscription_definitions(
                    queue, "local", False, EgressPolicy(resolver=public_resolver)
                )
            else:
                reads = OutsideReads(
                    directory=DirectoryClient(
                        sender, "local", BASE, service_caller(name, "Patient", "Organization")
                    ),
                    view=view,
                )
                definitions = SERVICES[name](reads)
            guard = consent_step(name, definitions, view, audit)
            services[name] = FhirService(name, definitions, db, prefix="local", guard=guard)
            sender.serve(services[name])
        yield LocalServices(sender, services, view, audit)
    finally:
        for db in dbs:
            await db.close()
