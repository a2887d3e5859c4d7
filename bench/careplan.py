"""The care plan benchmark: plan updates and "who is the coordinator?" with 100 000 plans.

Why it exists: the care plan service keeps every child's plans (CarePlan) and ansvarsgruppe
(CareTeam) for as long as the child is followed up, so its tables grow with every child in
the municipality, and two things must stay cheap however large they get: revising a plan
(an optimistic-locked update that rewrites the search index and history and raises an
event) and the question every party asks before it calls anyone, "who is the child's
coordinator now?" (a CareTeam search by patient, role and coordinator period, filtered by
who may see the team). An empty database says nothing about either, and creating 100 000
plans through the HTTP API would take longer than the measurement is worth, so this
benchmark fills the careplan schema directly, then measures both against a local stack.

`run`:

1. **Seeds** `--plans` children, each with a CareTeam and a CarePlan, into the careplan
   service's PostgreSQL schema *before* the stack starts, through the service's own
   storage path: ``StoreUnitOfWork.save`` with ``careplan_definitions``, so each row,
   history row, search index row and access column is exactly what the service stores.
   ``save`` leaves out the client-facing checks (``check_write``: the directory look-up
   of the child, the consents for taking part), so the seeded resources carry what those
   checks would have added (the subject's literal reference, the author, changed-by).
   The outbox rows the saves write are deleted in the same transaction: the seeded plans
   stand for plans stored long ago whose events were published long ago, and a relay
   publishing 100 000s of events would load NATS and PostgreSQL during the measurement.
   The tables are then vacuumed and analysed, the state autovacuum brings them to.
2. **Starts a local stack** (gateway, directory, consent, careplan and its own
   nats-server, as ``bench.crud`` and ``bench.referral`` do) and, through the API,
   registers the organisations of the seeded teams as the operator, then, as the first
   BUP, registers `--updated-plans` children in the directory and creates a
   behandlingsplan for each (registering a child is the BUP's relation to it, which a
   plan's creation needs). Checks one update, one coordinator answer, that a BUP outside
   a team finds nothing, and that a seeded plan can be read.
3. **Phases**, each at every `--clients` count (``bench.load.run_phase``: warm-up, CPU
   sampled at the edges, only what completes inside the window counted):

   * ``update``: each client owns a share of the API-created plans and PUTs revisions of
     them (new activity description and next-revision date) with ``If-Match``;
   * ``coordinator``: each client asks, for random seeded children, ``GET
     CareTeam?patient=Patient/<id>&role=koordinator&coordinator-period=le<today>
     &coordinator-period=ge<today>`` as the BUP on that child's team, and checks that the
     answer is the child's team and that its coordinator of record today is the one
     seeded (an empty or wrong answer is an error).

4. **Explains** the coordinator search's SQL (``EXPLAIN ANALYZE``, custom and generic
   plan) on the full tables.
5. **Cleans up**: stack stopped, data directory removed, schemas dropped, also after an
   error or Ctrl-C.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Literal

import asyncpg
import orjson

from bench.actors import admit_all, organisation_caller
from bench.cpu import CpuMeter
from bench.crud import (
    DEFAULT_DATABASE_URL,
    RESULTS_DIR,
    CrudOptions,
    Identifiers,
    backend_lookup,
    bench_environment,
    phase_summary,
    with_application_name,
)
from bench.load import HttpClient, PidLookup, Recorder, Reply, Worker, http_client, run_phase
from bench.referral import (
    RunningStack,
    bench_request,
    cpu_summary,
    error_lines,
    etag,
    finish_result,
    new_result,
    org_reference,
    organisation,
    stack_cleanup,
    with_header,
)
from bench.report import (
    per_cpu_second,
    table_cell,
    text_table,
)
from services.careplan import NAME
from services.careplan.domain.coordination import coordinator_of_record
from services.careplan.domain.vocabulary import (
    CATEGORY_SYSTEM,
    CHANGED_BY_EXT,
    COLLABORATION_EXT,
    EXTENT_EXT,
    NEXT_REVISION_EXT,
    REGIME_EXT,
    PlanCategory,
)
from services.careplan.records import participants
from services.careplan.resources import careplan_definitions
from services.stack import LocalStack, free_port
from shared.auth.scopes import ALL_SYSTEM_SCOPES
from shared.clock import now_instant, today
from shared.codes import ROLE_SYSTEM, OrganisationKind
from shared.config import Settings
from shared.fhir.search_query import parse_search
from shared.fhir.service import FhirService
from shared.fhir.unit_of_work import StoreUnitOfWork
from shared.identifiers import FNR_SYSTEM, ORGNR_SYSTEM
from shared.outside_reads import OutsideReads
from shared.store.access_sql import AccessFilter
from shared.store.database import Database, open_database
from shared.store.resource_store import new_id
from shared.store.schema import create_schema
from shared.store.search_sql import build_search
from shared.transport.wire import FhirRequest

PHASES = ("update", "coordinator")
STACK_SERVICES = ("gateway", "directory", "consent", NAME)
"""The careplan service and what it needs (the directory for the child, the consent
service for the consent view and the audit trail); the referral service is not started."""
SERVERS = {
    "gateway": "gateway",
    "directory": "directory",
    "consent": "consent",
    "careplan": NAME,
    "nats-server": "nats",
}
"""Server CPU: reported name → the stack's child process name."""
ROUTED_TYPES = ("Patient", "CarePlan", "CareTeam")
SEED_CONNECTIONS = 3
"""Seeding transactions under way at once: the Python side (validation, JSON, index
values) and PostgreSQL overlap on two cores."""
BUPS, KOMMUNER, SKOLER = 8, 40, 100
"""How many organisations of each kind take part in the seeded teams: each team has one
BUP (the one that asks who coordinates), a kommune-helse as koordinator and a school."""
SETUP_CONCURRENCY = 16
HANDOVER_SHARE = 2
"""Every second seeded team had a koordinator before the current one (a handover): the
former one's period has an end, so the coordinator of record is a question of dates."""
TABLES = ("resources", "resource_history", "search_index", "outbox")
EXPLAINED = 5
"""Seeded children whose coordinator search is explained after the phases."""

Check = Callable[[Reply], dict[str, Any] | None]
"""What a successful answer must contain: what it found, or None (counted as an error)."""


@dataclass(frozen=True)
class CareplanOptions:
    clients: tuple[int, ...] = (16,)
    """Concurrent clients; every phase runs once at each count, in this order."""
    seconds: float = 15.0
    warmup: float = 3.0
    """Unmeasured seconds before each phase's window."""
    plans: int = 100_000
    """Seeded children, each with one CarePlan and one CareTeam."""
    updated_plans: int = 256
    """Children registered in the directory with a plan created through the API; the
    update phase revises these."""
    batch: int = 500
    """Seeded children per transaction."""
    database: Literal["postgresql"] = "postgresql"
    database_url: str = DEFAULT_DATABASE_URL
    out_dir: Path | None = field(default=RESULTS_DIR)
    seed: int | None = None

    def __post_init__(self) -> None:
        if not self.clients or min(self.clients) < 1:
            raise ValueError("at least one client count, each at least 1")
        if self.plans < 1 or self.seconds <= 0 or self.batch < 1:
            raise ValueError("at least 1 plan, a positive batch and a positive number of seconds")
        if self.updated_plans < max(self.clients):
            raise ValueError(
                f"--updated-plans ({self.updated_plans}) must be at least the largest number"
                f" of clients ({max(self.clients)}): each client revises plans of its own"
            )

    def as_dict(self) -> dict[str, Any]:
        return {
            "clients": list(self.clients),
            "seconds": self.seconds,
            "warmup_seconds": self.warmup,
            "plans": self.plans,
            "updated_plans": self.updated_plans,
            "batch": self.batch,
            "database": self.database,
            "database_url": self.database_url,
            "seed": self.seed,
        }


# -- the organisations and the seeded children ------------------------------------------------


@dataclass(frozen=True)
class Organisations:
    bups: tuple[str, ...]
    kommuner: tuple[str, ...]
    skoler: tuple[str, ...]
    stranger: str
    """A BUP on no team: must find nothing."""

    @classmethod
    def made(cls, ids: Identifiers) -> Organisations:
        def some(count: int) -> tuple[str, ...]:
            return tuple(ids.orgnr() for _ in range(count))

        return cls(some(BUPS), some(KOMMUNER), some(SKOLER), ids.orgnr())

    def organizations(self) -> list[dict[str, Any]]:
        """Every organisation named, as the operator registers it (each with its kind)."""
        bup, kommune, skole = (
            OrganisationKind.BUP,
            OrganisationKind.KOMMUNE_HELSE,
            OrganisationKind.SKOLE,
        )
        return [
            *(organisation(orgnr, bup) for orgnr in (*self.bups, self.stranger)),
            *(organisation(orgnr, kommune) for orgnr in self.kommuner),
            *(organisation(orgnr, skole) for orgnr in self.skoler),
        ]

    def bup_of(self, index: int) -> str:
        """The BUP on seeded child `index`'s team (it treats the child, asks the question)."""
        return self.bups[index % len(self.bups)]

    def coordinator_of(self, index: int) -> str:
        """The kommune-helse that coordinates for seeded child `index` today."""
        return self.kommuner[index % len(self.kommuner)]

    def former_coordinator_of(self, index: int) -> str:
        return self.kommuner[(index + 1) % len(self.kommuner)]

    def school_of(self, index: int) -> str:
        return self.skoler[index % len(self.skoler)]


@dataclass(frozen=True)
class SeededChild:
    fnr: str
    patient: str
    """The Patient id (not registered in the directory: the seeded data needs none)."""
    team: str
    plan: str


def _member(orgnr: str, role: str, start: date, end: date | None = None) -> dict[str, Any]:
    period = {"start": start.isoformat(), **({"end": end.isoformat()} if end else {})}
    return {
        "role": [{"coding": [{"system": ROLE_SYSTEM, "code": role}]}],
        "member": org_reference(orgnr),
        "period": period,
    }


def _subject(child: SeededChild) -> dict[str, Any]:
    """The child as the service stores it once the directory resolved the identifier."""
    return {
        "identifier": {"system": FNR_SYSTEM, "value": child.fnr},
        "reference": f"Patient/{child.patient}",
        "type": "Patient",
    }


def seeded_team(index: int, child: SeededChild, orgs: Organisations, day: date) -> dict[str, Any]:
    """Child `index`'s ansvarsgruppe: the kommune-helse coordinating today (after a
    handover for every second child), the BUP, the school and the child itself."""
    started = day - timedelta(days=400 + index % 300)
    current_from = started
    members = []
    if index % HANDOVER_SHARE == 0:
        current_from = day - timedelta(days=30 + index % 300)
        former_to = current_from - timedelta(days=1)
        members.append(
            _member(orgs.former_coordinator_of(index), "koordinator", started, former_to)
        )
    members += [
        _member(orgs.coordinator_of(index), "koordinator", current_from),
        _member(orgs.bup_of(index), "behandler", started),
        _member(orgs.school_of(index), "tillitsperson", started),
        {
            "role": [{"coding": [{"system": ROLE_SYSTEM, "code": "pasient"}]}],
            "member": {"reference": f"Patient/{child.patient}"},
            "period": {"start": started.isoformat()},
        },
    ]
    return {
        "resourceType": "CareTeam",
        "id": child.team,
        "status": "active",
        "subject": _subject(child),
        "participant": members,
    }


def _activity(description: str, performer: str, extent: str) -> dict[str, Any]:
    return {
        "detail": {
            "status": "in-progress",
            "description": description,
            "performer": [org_reference(performer)],
            "extension": [{"url": EXTENT_EXT, "valueString": extent}],
        }
    }


def _changed_by(orgnr: str) -> dict[str, Any]:
    """What the service records on every version it stores (who changed it, when)."""
    parts = [
        {"url": "at", "valueDateTime": now_instant()},
        {"url": "organization", "valueIdentifier": {"system": ORGNR_SYSTEM, "value": orgnr}},
    ]
    return {"url": CHANGED_BY_EXT, "extension": parts}


def seeded_plan(index: int, child: SeededChild, orgs: Organisations, day: date) -> dict[str, Any]:
    """Child `index`'s plan, written by its BUP: a behandlingsplan or a kriseplan (no
    consent needed), shared with the team's kommune-helse and school, revised within the
    next year (never due during the run)."""
    bup, kommune, school = orgs.bup_of(index), orgs.coordinator_of(index), orgs.school_of(index)
    category = PlanCategory.BEHANDLINGSPLAN if index % 3 else PlanCategory.KRISEPLAN
    revision = day + timedelta(days=30 + index % 330)
    return {
        "resourceType": "CarePlan",
        "id": child.plan,
        "extension": [
            {"url": REGIME_EXT, "valueCode": "helse"},
            {"url": NEXT_REVISION_EXT, "valueDate": revision.isoformat()},
            {"url": COLLABORATION_EXT, "valueString": "BUP, kommunen og skolen møtes hver måned"},
            _changed_by(bup),
        ],
        "status": "active",
        "intent": "plan",
        "category": [{"coding": [{"system": CATEGORY_SYSTEM, "code": category.value}]}],
        "subject": _subject(child),
        "period": {"start": (day - timedelta(days=index % 400)).isoformat()},
        "author": {"type": "Organization", "identifier": {"system": ORGNR_SYSTEM, "value": bup}},
        "contributor": [org_reference(kommune), org_reference(school)],
        "careTeam": [{"reference": f"CareTeam/{child.team}"}],
        "activity": [
            _activity("Samtaler hos BUP om angst og søvn", bup, "1 time hver 14. dag"),
            _activity("Tilrettelegging i skolen, fast kontaktlærer", school, "daglig"),
        ],
    }


def coordinator_path(patient: str, day: date) -> str:
    """The FHIR search that asks who coordinates for the child on `day`."""
    return (
        f"/CareTeam?patient=Patient/{patient}&role=koordinator"
        f"&coordinator-period=le{day.isoformat()}&coordinator-period=ge{day.isoformat()}"
    )


def coordinator_params(patient: str, day: date) -> list[tuple[str, str]]:
    query = coordinator_path(patient, day).split("?", 1)[1]
    return [(k, v) for k, _, v in (part.partition("=") for part in query.split("&"))]


def found_coordinator(reply: Reply, day: date) -> dict[str, Any] | None:
    """The one CareTeam a coordinator search found and its coordinator of record on `day`
    (``{"team": id, "coordinator": orgnr}``), or None when it found none or several, or
    the team names no coordinator that day."""
    try:
        data = orjson.loads(reply.body)
    except orjson.JSONDecodeError:
        return None
    teams = [
        entry["resource"]
        for entry in (data.get("entry") or [] if isinstance(data, dict) else [])
        if isinstance(entry, dict)
        and (entry.get("search") or {}).get("mode", "match") == "match"
        and (entry.get("resource") or {}).get("resourceType") == "CareTeam"
    ]
    if len(teams) != 1:
        return None
    holder = coordinator_of_record(participants(teams[0]), day)
    if holder is None or holder.orgnr is None:
        return None
    return {"team": teams[0].get("id"), "coordinator": holder.orgnr}


# -- seeding ----------------------------------------------------------------------------------


def seeded_children(ids: Identifiers, count: int) -> list[SeededChild]:
    return [SeededChild(ids.fnr(), new_id(), new_id(), new_id()) for _ in range(count)]


async def _seed_batch(
    service: FhirService,
    db: Database,
    children: Sequence[SeededChild],
    first: int,
    orgs: Organisations,
    day: date,
) -> None:
    """Save children [first, first + len) (team, then plan) in one transaction and delete
    the outbox rows the saves wrote (nothing else writes this schema while seeding)."""
    requests: dict[str, FhirRequest] = {}
    async with db.transaction() as conn:
        for index, child in enumerate(children, start=first):
            bup = orgs.bup_of(index)
            request = requests.get(bup)
            if request is None:
                caller = organisation_caller(bup, OrganisationKind.BUP.value, [ALL_SYSTEM_SCOPES])
                request = requests[bup] = FhirRequest(
                    interaction="create", base_url="", caller=caller
                )
            uow = StoreUnitOfWork(service, conn, request)
            await uow.save(seeded_team(index, child, orgs, day))
            await uow.save(seeded_plan(index, child, orgs, day))
        await conn.execute("DELETE FROM outbox")


async def seed(
    options: CareplanOptions,
    settings: Settings,
    children: Sequence[SeededChild],
    orgs: Organisations,
    day: date,
    tag: str,
) -> dict[str, Any]:
    """Fill the careplan schema with `children`; what it took and what the tables hold."""
    schema = settings.db_schema_for(NAME)
    url = with_application_name(options.database_url, f"{tag}seed")
    db = await open_database(url, schema, SEED_CONNECTIONS)
    try:
        await create_schema(db)
        service = FhirService(
            NAME, careplan_definitions(OutsideReads()), db, prefix=settings.nats_prefix
        )
        starts = iter(range(0, len(children), options.batch))
        done = 0
        report_every = max(options.batch, len(children) // 10)
        started = time.perf_counter()
        cpu_started = time.process_time()

        async def seeder() -> None:
            nonlocal done
            for first in starts:
                batch = children[first : first + options.batch]
                await _seed_batch(service, db, batch, first, orgs, day)
                before, done = done, done + len(batch)
                if done // report_every != before // report_every:
                    rate = done / (time.perf_counter() - started)
                    print(f"  seeded {done:,} plans ({rate:,.0f} per second)", flush=True)

        async with asyncio.TaskGroup() as group:  # one failure stops the others
            for _ in range(SEED_CONNECTIONS):
                group.create_task(seeder())
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
    finally:
        await db.close()
    vacuum_started = time.perf_counter()
    tables = await _vacuum_and_count(options.database_url, schema)
    return {
        "plans": len(children),
        "care_teams": len(children),
        "batch": options.batch,
        "connections": SEED_CONNECTIONS,
        "seconds": round(seconds, 2),
        "plans_per_second": round(len(children) / seconds, 1),
        "resources_per_second": round(2 * len(children) / seconds, 1),
        "load_generator_cpu_s": round(cpu, 2),
        "vacuum_analyze_s": round(time.perf_counter() - vacuum_started, 2),
        "tables": tables,
    }


async def _vacuum_and_count(url: str, schema: str) -> dict[str, Any]:
    """VACUUM ANALYZE the service's tables (what autovacuum does to a table that grew);
    their rows and size on disk, indexes included."""
    conn = await asyncpg.connect(url)
    try:
        for table in TABLES:
            await conn.execute(f'VACUUM (ANALYZE) "{schema}".{table}')
        tables: dict[str, Any] = {}
        for table in TABLES:
            rows = await conn.fetchval(f'SELECT count(*) FROM "{schema}".{table}')
            size = await conn.fetchval("SELECT pg_total_relation_size($1::regclass)",
                                       f'"{schema}".{table}')  # fmt: skip
            tables[table] = {"rows": int(rows), "total_mb": round(int(size) / 2**20, 1)}
        return tables
    finally:
        await conn.close()


# -- the world made through the API -----------------------------------------------------------


def registered_patient(fnr: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": FNR_SYSTEM, "value": fnr}],
        "active": True,
        "name": [{"family": "Nordmann", "given": ["Ola"]}],
    }


def api_plan(fnr: str, orgs: Organisations, day: date) -> dict[str, Any]:
    """A behandlingsplan as a BUP posts it (the service resolves the child, sets the
    author), shared with the kommune-helse (a school would need the family's consent)."""
    kommune = orgs.kommuner[0]
    return {
        "resourceType": "CarePlan",
        "extension": [
            {"url": REGIME_EXT, "valueCode": "helse"},
            {"url": NEXT_REVISION_EXT, "valueDate": (day + timedelta(days=90)).isoformat()},
        ],
        "status": "active",
        "intent": "plan",
        "category": [
            {"coding": [{"system": CATEGORY_SYSTEM, "code": PlanCategory.BEHANDLINGSPLAN.value}]}
        ],
        "subject": {"identifier": {"system": FNR_SYSTEM, "value": fnr}},
        "period": {"start": day.isoformat()},
        "contributor": [org_reference(kommune)],
        "activity": [_activity("Samtaler hos BUP", orgs.bups[0], "1 time i uka")],
    }


def revised(plan: Mapping[str, Any], revision: int, day: date) -> dict[str, Any]:
    """`plan` with a new activity description and next-revision date (a revision)."""
    changed = orjson.loads(orjson.dumps(plan))
    changed["activity"][0]["detail"]["description"] = f"Samtaler hos BUP, revisjon {revision}"
    when = (day + timedelta(days=60 + revision % 120)).isoformat()
    changed["extension"] = [
        {**e, "valueDate": when} if e.get("url") == NEXT_REVISION_EXT else e
        for e in changed.get("extension") or []
    ]
    return dict(changed)


def updated_plan(description: str) -> Check:
    """A check that an update returned the CarePlan carrying `description`."""

    def check(reply: Reply) -> dict[str, Any] | None:
        try:
            plan = orjson.loads(reply.body)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(plan, dict) or plan.get("resourceType") != "CarePlan":
            return None
        activity = (plan.get("activity") or [{}])[0].get("detail") or {}
        return plan if activity.get("description") == description else None

    return check


def _created(reply: Reply) -> dict[str, Any] | None:
    try:
        data = orjson.loads(reply.body)
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) and isinstance(data.get("id"), str) else None


async def _create(client: HttpClient, resource: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """POST a resource; the stored resource and its ETag."""
    path = f"/{resource['resourceType']}"
    reply = await client.call("POST", path, orjson.dumps(resource))
    created = _created(reply) if reply.ok else None
    if created is None:
        raise RuntimeError(f"setup: POST {path} -> {reply.status}: {reply.body[:800]!r}")
    return created, etag(created, reply.headers)


async def wait_until_routed(
    client: HttpClient, types: Sequence[str] = ROUTED_TYPES, limit: float = 60.0
) -> float:
    """Wait until the gateway routes `types` for `client`; the seconds waited."""
    started = time.perf_counter()
    for resource_type in types:
        while not (reply := await client.call("GET", f"/{resource_type}?_count=1")).ok:
            if time.perf_counter() - started > limit:
                raise RuntimeError(
                    f"the stack does not serve {resource_type} after {limit:g} s:"
                    f" {reply.status} {reply.body[:500]!r}"
                )
            await asyncio.sleep(0.1)
    return time.perf_counter() - started


@dataclass
class PlanState:
    """The last version of an API-created plan its client has seen."""

    plan: dict[str, Any]
    etag: str


@dataclass(frozen=True)
class CareplanWorld:
    orgs: Organisations
    day: date
    bups: Mapping[str, HttpClient]
    """A client per BUP of the seeded teams, and the stranger's."""
    seeded: Sequence[SeededChild]
    plans: list[PlanState]
    """The API-created plans the update phase revises (by their owners)."""
    revisions: itertools.count[int] = field(default_factory=lambda: itertools.count(1))


async def populate(
    client: HttpClient, ids: Identifiers, orgs: Organisations, count: int, day: date
) -> list[PlanState]:
    """Register `count` children in the directory and create a plan for each as the BUP
    `client` acts for."""
    gate = asyncio.Semaphore(SETUP_CONCURRENCY)

    async def one(fnr: str) -> PlanState:
        async with gate:
            await _create(client, registered_patient(fnr))
            plan, version = await _create(client, api_plan(fnr, orgs, day))
            return PlanState(plan, version)

    return list(await asyncio.gather(*(one(ids.fnr()) for _ in range(count))))


# -- the requests -----------------------------------------------------------------------------


async def update(world: CareplanWorld, state: PlanState, recorder: Recorder) -> bool:
    """PUT one revision of a plan with If-Match; the state follows the answer."""
    body = revised(state.plan, next(world.revisions), world.day)
    description = body["activity"][0]["detail"]["description"]
    client = with_header(world.bups[world.orgs.bups[0]], "If-Match", state.etag)
    path = f"/CarePlan/{state.plan['id']}"
    done = await bench_request(
        client, recorder, "update", "PUT", path, body, updated_plan(description)
    )
    if done is None:
        return False
    state.plan, state.etag = done[0], etag(done[0], done[1].headers)
    return True


def expected_coordinator(index: int, world: CareplanWorld) -> Check:
    child, orgs = world.seeded[index], world.orgs
    wanted = {"team": child.team, "coordinator": orgs.coordinator_of(index)}

    def check(reply: Reply) -> dict[str, Any] | None:
        found = found_coordinator(reply, world.day)
        return found if found == wanted else None

    return check


async def ask_coordinator(world: CareplanWorld, index: int, recorder: Recorder) -> bool:
    """As the child's BUP: who coordinates today? Must be the seeded answer."""
    child = world.seeded[index]
    client = world.bups[world.orgs.bup_of(index)]
    path = coordinator_path(child.patient, world.day)
    check = expected_coordinator(index, world)
    return (
        await bench_request(client, recorder, "coordinator", "GET", path, None, check) is not None
    )


def update_worker(
    world: CareplanWorld, recorder: Recorder, client: int, clients: int, rng: random.Random
) -> Worker:
    """Revises its own share of the plans (`client`-th of every `clients`), in turn."""
    own = world.plans[client::clients]

    async def run(stop: asyncio.Event) -> None:
        for state in itertools.cycle(own):
            if stop.is_set():
                return
            await update(world, state, recorder)

    return run


def coordinator_worker(
    world: CareplanWorld, recorder: Recorder, client: int, clients: int, rng: random.Random
) -> Worker:
    """Asks who coordinates for random seeded children."""

    async def run(stop: asyncio.Event) -> None:
        while not stop.is_set():
            await ask_coordinator(world, rng.randrange(len(world.seeded)), recorder)

    return run


WORKERS = {"update": update_worker, "coordinator": coordinator_worker}


async def sanity(world: CareplanWorld) -> dict[str, Any]:
    """Before anything is measured: an update works, a coordinator answer is right, a BUP
    on no team finds nothing, a seeded plan can be read by its author."""
    recorder = Recorder(measuring=True)
    if not await update(world, world.plans[0], recorder):
        raise RuntimeError(f"a plan update fails before the measurement: {recorder.samples}")
    child = world.seeded[0]
    path = coordinator_path(child.patient, world.day)
    answer = await world.bups[world.orgs.bup_of(0)].call("GET", path)
    found = expected_coordinator(0, world)(answer) if answer.ok else None
    if found is None:
        raise RuntimeError(
            f"the coordinator search {path} answers {answer.status} {answer.body[:800]!r},"
            f" not CareTeam/{child.team} coordinated by {world.orgs.coordinator_of(0)}"
        )
    hidden = await world.bups[world.orgs.stranger].call("GET", path)
    if not hidden.ok or found_coordinator(hidden, world.day) is not None:
        raise RuntimeError(
            f"a BUP on no team gets {hidden.status} {hidden.body[:300]!r} for {path}:"
            " the access filter does not hold"
        )
    read = await world.bups[world.orgs.bup_of(0)].call("GET", f"/CarePlan/{child.plan}")
    if not read.ok:
        raise RuntimeError(f"a seeded plan cannot be read: {read.status} {read.body[:300]!r}")
    return {
        "updated_version": (world.plans[0].plan.get("meta") or {}).get("versionId"),
        "coordinator_path": path,
        "coordinator": found,
        "stranger_status": hidden.status,
        "seeded_plan_read_status": read.status,
    }


# -- the phases -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measurement:
    world: CareplanWorld
    meter: CpuMeter
    backends: PidLookup | None
    options: CareplanOptions


async def measure_phase(name: str, clients: int, m: Measurement) -> dict[str, Any]:
    recorder = Recorder()
    seed = m.options.seed or 0
    workers = [
        WORKERS[name](m.world, recorder, i, clients, random.Random(f"{seed}-{name}-{clients}-{i}"))
        for i in range(clients)
    ]
    window = await run_phase(
        workers,
        recorder,
        m.meter,
        warmup=m.options.warmup,
        seconds=m.options.seconds,
        extra_pids=m.backends,
    )
    summary: dict[str, Any] = {"name": name, "clients": clients}
    summary.update(phase_summary(recorder, window, [name]))
    headline = recorder.ops[name]
    summary["headline"] = {
        "operation": name,
        **headline.summary(window.seconds),
        "per_server_cpu_second": per_cpu_second(len(headline.latencies), window.usage.server),
    }
    summary["error_samples"] = [s.as_dict() for s in recorder.samples]
    return summary


def _milliseconds(lines: Sequence[str], label: str) -> float | None:
    for line in lines:
        if line.strip().startswith(label):
            return float(line.split(":", 1)[1].split()[0])
    return None


def _literal(value: Any) -> str:
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


async def explain_coordinator(
    options: CareplanOptions, settings: Settings, world: CareplanWorld
) -> dict[str, Any]:
    """EXPLAIN ANALYZE of the coordinator search's SQL as the service sends it, for
    `EXPLAINED` random seeded children, each with the access filter of its BUP (a BUP
    without consents sees what it wrote or is named on). The service's statements are
    prepared (asyncpg caches them per connection), so PostgreSQL plans the first
    executions for their values (*custom*, planned at every execution) and may then switch
    to one *generic* plan, planned once; both are explained, from one prepared statement
    per mode with ``plan_cache_mode`` forced (no planning time shown: none was needed)."""
    db = await open_database(options.database_url, settings.db_schema_for(NAME), 1)
    params = {d.resource_type: d.params_by_name() for d in careplan_definitions(OutsideReads())}
    rng = random.Random(f"{options.seed or 0}-explain")
    chosen = [rng.randrange(len(world.seeded)) for _ in range(EXPLAINED)]
    found: dict[str, Any] = {}
    try:
        async with db.reader() as conn:
            for mode in ("custom", "generic"):
                await conn.execute(f"SET plan_cache_mode = force_{mode}_plan")
                planning, execution, lines, prepared = [], [], [], False
                for index in chosen:
                    child = world.seeded[index]
                    criteria = coordinator_params(child.patient, world.day)
                    query = parse_search("CareTeam", criteria, params)
                    access = AccessFilter(orgs=(world.orgs.bup_of(index),))
                    sql, args = build_search(query, params, access=access)
                    if not prepared:  # the same text for every child and BUP
                        numbered = iter(range(1, len(args) + 1))
                        text = "".join(f"${next(numbered)}" if c == "?" else c for c in sql)
                        await conn.execute(f"PREPARE coordinator_{mode} AS {text}")
                        prepared = True
                    values = ", ".join(_literal(value) for value in args)
                    rows = await conn.fetch(
                        f"EXPLAIN (ANALYZE, BUFFERS) EXECUTE coordinator_{mode}({values})"
                    )
                    lines = [str(row[0]) for row in rows]
                    planning.append(_milliseconds(lines, "Planning Time") or 0.0)
                    execution.append(_milliseconds(lines, "Execution Time"))
                found[mode] = {"planning_ms": planning, "execution_ms": execution, "plan": lines}
                await conn.execute(f"DEALLOCATE coordinator_{mode}")
            await conn.execute("RESET plan_cache_mode")
    finally:
        await db.close()
    return {"sql": sql, "children": len(chosen), **found}


async def _measure(
    options: CareplanOptions,
    settings: Settings,
    stack: RunningStack,
    seeded: Sequence[SeededChild],
    orgs: Organisations,
    day: date,
    ids: Identifiers,
) -> dict[str, Any]:
    monitor = await asyncpg.connect(options.database_url)
    try:
        meter = CpuMeter(
            {name: stack.pids[child] for name, child in SERVERS.items()}, programs=["postgres"]
        )
        async with http_client(stack.base_url, "", max(options.clients)) as base:
            operator = stack.operator(base)
            waited = await wait_until_routed(operator, ("Organization",))
            started = time.perf_counter()
            await admit_all(operator, orgs.organizations())
            populated = time.perf_counter() - started
            setup = stack.client(base, orgs.bups[0])
            waited += await wait_until_routed(setup)
            started = time.perf_counter()
            plans = await populate(setup, ids, orgs, options.updated_plans, day)
            populated += time.perf_counter() - started
            bups = {orgnr: stack.client(base, orgnr) for orgnr in (*orgs.bups, orgs.stranger)}
            world = CareplanWorld(orgs, day, bups, seeded, plans)
            checked = await sanity(world)
            backends = backend_lookup(monitor, stack.tag)
            measurement = Measurement(world, meter, backends, options)
            phases = []
            for clients in options.clients:
                for name in PHASES:
                    print(f"phase {name}, {clients} clients …", flush=True)
                    phases.append(await measure_phase(name, clients, measurement))
        explained = await explain_coordinator(options, settings, world)
    finally:
        await monitor.close()
    return {
        "setup": {
            "waited_for_routing_s": round(waited, 3),
            "updated_plans": len(plans),
            "api_setup_s": round(populated, 2),
            "organisations": {
                "bup": list(orgs.bups),
                "kommune-helse": len(orgs.kommuner),
                "skole": len(orgs.skoler),
            },
            "sanity": checked,
        },
        "phases": phases,
        "explain": {"coordinator": explained},
    }


# -- the run ----------------------------------------------------------------------------------


def run(options: CareplanOptions) -> tuple[dict[str, Any], Path | None]:
    """Run the whole benchmark; return the result and the JSON file it was written to.
    Ctrl-C raises KeyboardInterrupt after the cleanup."""
    result, data_dir, tag = new_result("careplan", options.as_dict(), STACK_SERVICES, "postgresql")
    started = result["timestamp"]
    try:
        environment = CrudOptions(database="postgresql", database_url=options.database_url)
        with bench_environment(environment, tag):
            _run(options, result, data_dir, tag)
    finally:
        result["cleanup"] = stack_cleanup("postgresql", options.database_url, data_dir, tag)
    name = f"careplan-{options.database}-{started}.json"
    return result, finish_result(result, options.out_dir, name)


def _run(options: CareplanOptions, result: dict[str, Any], data_dir: Path, tag: str) -> None:
    settings = Settings()
    ids = Identifiers(options.seed if options.seed is not None else secrets.randbits(32))
    orgs = Organisations.made(ids)
    day = today()
    seeded = seeded_children(ids, options.plans)
    print(f"seeding {options.plans:,} plans and care teams into {tag}_{NAME} …", flush=True)
    result["seeding"] = asyncio.run(seed(options, settings, seeded, orgs, day, tag))
    port = free_port()
    stack = LocalStack(data_dir, port, STACK_SERVICES)
    print(f"starting the stack in {data_dir} …", flush=True)
    try:
        started = time.perf_counter()
        stack.start()
        result["stack"]["start_s"] = round(time.perf_counter() - started, 2)
        pids = {name: process.pid for name, process in stack.children}
        result["stack"]["pids"] = pids
        print(
            f"{options.updated_plans} plans to update, clients"
            f" {', '.join(map(str, options.clients))}: {options.warmup:g} s warm-up +"
            f" {options.seconds:g} s per phase …",
            flush=True,
        )
        running = RunningStack(f"http://127.0.0.1:{port}/fhir", data_dir, pids, tag)
        result.update(asyncio.run(_measure(options, settings, running, seeded, orgs, day, ids)))
    finally:
        stack.stop()


# -- the printed summary ----------------------------------------------------------------------


def format_careplan_report(result: Mapping[str, Any]) -> str:
    """The printed summary of a ``careplan`` result (every number is also in the JSON)."""
    params, machine = result["parameters"], result["machine"]
    phases = result.get("phases", [])
    out = [
        f"barnebro care plan benchmark — PostgreSQL, {params['plans']:,} seeded plans,"
        f" {params['updated_plans']} updated, {params['seconds']:g} s per phase after"
        f" {params['warmup_seconds']:g} s warm-up, nproc {machine['nproc']},"
        f" Python {machine['python']}",
    ]
    errors = result.get("errors_total", 0)
    if errors:
        out.append(
            f"!! {errors} FAILED REQUESTS in the measured windows: the phases with errors do"
            " not measure what they claim; see the error bodies below"
        )
    seeding = result.get("seeding")
    if seeding:
        out += ["", _seeding_lines(seeding)]
    out += ["", _headline_table(phases), "", cpu_summary(phases)]
    ratios = result.get("ratios", {})
    if ratios:
        out += ["", "scaling (1.0 = as efficient as at the first client count)"]
        out += [f"  {name}: {table_cell(value)}" for name, value in ratios.items()]
    explained = (result.get("explain") or {}).get("coordinator")
    if explained:
        out += ["", _explain_lines(explained)]
    out += error_lines(phases)
    cleanup = result.get("cleanup", {})
    out.append(
        f"\ncleanup: schemas {', '.join(cleanup.get('dropped_schemas', [])) or '-'};"
        f" data directory removed: {cleanup.get('data_dir_removed')}"
    )
    out += [f"  cleanup problem: {problem}" for problem in cleanup.get("problems", [])]
    return "\n".join(out)


def _explain_lines(explained: Mapping[str, Any]) -> str:
    def listed(values: Sequence[float | None]) -> str:
        return " ".join(table_cell(v) for v in values)

    out = [
        f"coordinator search SQL on the full tables, EXPLAIN ANALYZE for"
        f" {explained['children']} children (ms):"
    ]
    for name in ("custom", "generic"):
        run = explained[name]
        out.append(
            f"  {name} plan: planning {listed(run['planning_ms'])};"
            f" execution {listed(run['execution_ms'])}"
        )
    out.append("  the generic plan of the last child:")
    out += [f"    {line}" for line in explained["generic"]["plan"]]
    return "\n".join(out)


def _seeding_lines(seeding: Mapping[str, Any]) -> str:
    tables = ", ".join(
        f"{name} {t['rows']:,} rows / {t['total_mb']:g} MB" for name, t in seeding["tables"].items()
    )
    return (
        f"seeding: {seeding['plans']:,} plans + {seeding['care_teams']:,} care teams in"
        f" {seeding['seconds']:g} s = {seeding['plans_per_second']:,.0f} plans per second"
        f" ({seeding['batch']} children per transaction, {seeding['connections']} at once),"
        f" then VACUUM ANALYZE {seeding['vacuum_analyze_s']:g} s\n  tables: {tables}"
    )


def _headline_table(phases: Sequence[Mapping[str, Any]]) -> str:
    rows = [
        [
            p["name"],
            p["clients"],
            p["headline"]["count"],
            p["headline"]["errors"],
            p["headline"]["per_second"],
            p["cpu"]["server_total_s"],
            p["headline"]["per_server_cpu_second"],
            p["headline"]["p50_ms"],
            p["headline"]["p99_ms"],
            p["headline"]["max_ms"],
        ]
        for p in phases
    ]
    headers = ["phase", "clients", "count", "errors", "per s", "server CPU s", "per CPU-s",
               "p50 ms", "p99 ms", "max ms"]  # fmt: skip
    return "per phase (count = requests completed in the window)\n" + text_table(headers, rows)
