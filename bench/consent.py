"""The consent benchmark: what the consent step costs, measured in one run.

Why it exists: every service that holds information about a child decides, per resource
and per search, whether the caller may see it (`shared.access.decision`), and writes an
audit record to JetStream before anything leaves (`shared.access.guard`,
`shared.access.audit`). The project's aim is that a checked read costs at most about 10 %
more than an unchecked one (checked/unchecked ≥ 0.90). This module measures that, and the
local decision functions underneath, on the shared 2-core development machine — so every
number is a rate per CPU-second or a ratio between two things measured side by side; the
one wall-clock claim is the withdrawal's latency, which is wall-clock by nature.

The phases (``PHASES``; each returns one entry of the JSON result's ``phases`` list, so
another measurement is one more function appended there):

1. ``decide`` — `decide(state, facts, context)` over a realistic consent view (N
   patients, 1-3 grants each to various organisations and kinds, parents, some
   ``hidden_from_parents``), for a mix of actors: the recipient of a consent, an unrelated
   organisation, a parent, the author itself. Decisions per CPU-second
   (`time.process_time`).
2. ``visibility`` — the search filter: `view.states_for(actor_keys(caller))` +
   `visibility(...)` for an actor with grants for ~1 % of the patients.
3. ``read`` and ``search`` — the same FHIR read (and search by patient) through two
   `FhirService`s on the same database, one without a guard and one with the real
   `AccessGuard` (decision + audit record acknowledged by JetStream), in interleaved short
   windows (ABBA order) so that machine noise hits both alike. Reads per CPU-second of this
   process, wall throughput, p50/p99 latency, and the checked/unchecked ratios.
4. ``checked-parts`` — where the extra CPU of a checked request goes, part by part.
5. ``transport`` — the same read and search over NATS request/reply, as a client of the
   gateway would reach the services: a `ServiceHost` per service (this process, two
   subject prefixes) driven through the gateway's `Forwarder`. Per CPU-second of this
   process + nats-server (which carries every request, reply and audit record).
6. ``withdrawal`` — how long a consent withdrawal takes to reach every service's consent
   view: the directory and consent services run here (`ServiceRuntime`, production relay
   settings), and a listener on each view times the state without the grant. The aim is
   under a second; p50/p99/max from the request and from its reply (the commit).

Everything it creates — the SQLite files or PostgreSQL schemas ``bench<random>_*``, the
NATS streams and the consent-view and registry buckets under the unique prefix
``bench<random>`` — is removed at the end, also after an error, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import os
import random
import secrets
import shutil
import signal
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import asyncpg
import nats
import orjson
from nats.aio.client import Client as NATS
from nats.js.errors import NotFoundError

from bench.actors import credential_caller, organisation_caller, person_caller
from bench.cpu import CLOCK_TICKS, program_ticks
from bench.crud import (
    CLIENT_ORGNR,
    DEFAULT_DATABASE_URL,
    RESULTS_DIR,
    Identifiers,
    with_application_name,
)
from bench.report import (
    machine_info,
    per_cpu_second,
    percentile,
    ratio,
    table_cell,
    text_table,
    timestamp,
    write_json,
)
from services.consent import consent_spec
from services.directory import directory_spec
from shared.access.audit import AuditPublisher, AuditRecord
from shared.access.decision import (
    AccessContext,
    ResourceFacts,
    actor_keys,
    decide,
    visibility,
)
from shared.access.guard import AccessGuard
from shared.access.state import Grant, HiddenFromParents, PatientAccessState
from shared.access.view import ConsentView
from shared.clock import today
from shared.codes import (
    ORGANISATION_KIND_SYSTEM,
    PARENTAL_RESPONSIBILITY_SYSTEM,
    DataCategory,
    OrganisationKind,
)
from shared.config import Settings
from shared.fhir.definitions import ResourceDefinition
from shared.fhir.errors import FhirError
from shared.fhir.router import FhirRouter
from shared.fhir.search_params import ParamType, SearchParam
from shared.fhir.search_query import parse_search
from shared.fhir.service import FhirService
from shared.identifiers import ORGNR_SYSTEM
from shared.runtime import ServiceRuntime
from shared.store.access_sql import AccessFilter
from shared.store.database import Database, open_database
from shared.store.outbox import OutboxRelay
from shared.store.resource_store import SearchPage
from shared.store.schema import create_schema
from shared.transport.forwarding import Forwarder
from shared.transport.nats_connection import ensure_event_stream
from shared.transport.service_host import ServiceHost
from shared.transport.wire import Caller, FhirRequest, FhirResponse, request_subject

DatabaseKind = Literal["sqlite", "postgresql"]
DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
SERVICE = "bench"
"""The service name of both FhirServices (and of the audit subjects)."""
BASE_URL = "http://bench/fhir"
AIM = 0.90
"""The project's aim: a checked read does at least 90 % of the unchecked reads per CPU-s."""

AUTHOR_ORG = CLIENT_ORGNR
"""The BUP that writes the documents that are read (also the crud benchmark's client)."""
AUTHOR_KIND = OrganisationKind.BUP.value
RECIPIENT_KIND = OrganisationKind.BARNEVERNSTJENESTE.value
"""The kind of the reading organisation. Grants to kinds in the generated view never name
it, so the reader's index keys find exactly its own ~1 % of the patients."""
GRANT_KINDS = (
    OrganisationKind.FASTLEGE.value,
    OrganisationKind.KOMMUNE_HELSE.value,
    OrganisationKind.SKOLE.value,
    OrganisationKind.PPT.value,
)
CATEGORIES = tuple(c.value for c in DataCategory if c is not DataCategory.CONSENT)
CATEGORY = DataCategory.JOURNAL.value
"""The category of the benchmark's documents (and of the search filter)."""
RECIPIENT_SHARE = 0.01
"""The share of patients whose consent names the reading organisation."""
TARGET_DOCUMENTS = 3
"""Documents about the patient that is read and searched (a search returns all three)."""
ORG_POOL = 300
"""Organisations that consents name (besides the reader)."""
DECISION_CASES = 20_000
"""Prepared (state, facts, context) triples the decision loop cycles through."""
ACTOR_MIX = (("recipient", 40), ("unrelated", 30), ("parent", 20), ("own", 10))
"""Share (in %) of each kind of actor among the decisions."""
SCOPES = ["system/*.cruds"]


def org_caller(orgnr: str, kind: str) -> Caller:
    """An organisation as the gateway hands it to a service: its register kind, the
    token's scopes (the organisation credential)."""
    return organisation_caller(orgnr, kind, SCOPES)


# -- the bench-only resource type --------------------------------------------------------------


def _subject_patient(resource: Mapping[str, Any]) -> str | None:
    subject = resource.get("subject")
    reference = subject.get("reference") if isinstance(subject, dict) else None
    if isinstance(reference, str) and reference.startswith("Patient/"):
        return reference.removeprefix("Patient/")
    return None


class BenchDocument(ResourceDefinition):
    """A journal document (DocumentReference) about a patient: patient data in category
    ``journal``, searchable by ``patient``. Only the benchmark serves it."""

    resource_type = "DocumentReference"
    data_category = CATEGORY
    search_params = (
        SearchParam(
            "patient", ParamType.REFERENCE, ("subject",), "Who the document is about",
            targets=("Patient",),
        ),
    )  # fmt: skip
    documentation = "Benchmark-only journal document"

    def patient_of(self, resource: dict[str, Any], resource_id: str) -> str | None:
        return _subject_patient(resource)


_SUMMARY = (
    "Epikrise. Barnet ble henvist for søvnvansker og uro. Samtaler med barn og"
    " fosterforeldre; kartlegging gjennomført. Videre oppfølging i kommunen. " * 12
).strip()


def document(patient: str, author: str) -> dict[str, Any]:
    """A valid R4 DocumentReference (about 2.4 KB as stored) about `patient`, by `author`.

    The text is in `description` and the attachment is by URL: an inline
    `attachment.data` (base64Binary) is refused by `shared.fhir.resources` at present."""
    return {
        "resourceType": "DocumentReference",
        "status": "current",
        "type": {
            "coding": [{"system": "http://loinc.org", "code": "11490-0", "display": "Discharge"}]
        },
        "subject": {"reference": f"Patient/{patient}"},
        "date": "2025-03-14T10:00:00+01:00",
        "author": [{"identifier": {"system": ORGNR_SYSTEM, "value": author}}],
        "description": _SUMMARY,
        "content": [
            {
                "attachment": {
                    "contentType": "application/pdf",
                    "url": f"urn:uuid:{uuid.uuid4()}",
                    "size": 48_213,
                    "title": "Epikrise",
                }
            }
        ],
    }


# -- options and the shared context of the phases -----------------------------------------------


@dataclass(frozen=True)
class ConsentOptions:
    seconds: float = 10.0
    """Measured seconds of each checked/unchecked comparison (read, search), split into
    `windows` alternating windows (half checked, half unchecked)."""
    windows: int = 10
    concurrency: int = 8
    warmup: float = 1.0
    """Unmeasured seconds of each comparison before its windows (half per variant)."""
    local_seconds: float = 2.0
    """CPU seconds of each local phase (decide, visibility; half of it for each part of
    the checked-parts phase)."""
    patients: int = 10_000
    documents: int = 1_000
    """DocumentReferences in the database (TARGET_DOCUMENTS of them about the patient read)."""
    database: DatabaseKind = "sqlite"
    database_url: str = DEFAULT_DATABASE_URL
    nats_url: str = field(default_factory=lambda: os.environ.get("NATS_URL", DEFAULT_NATS_URL))
    out_dir: Path | None = RESULTS_DIR
    seed: int | None = None
    withdrawals: int = 100
    """Consents created and withdrawn, one after another, in the withdrawal phase."""
    views: int = 3
    """Extra consent views (each on its own NATS connection) standing for other services
    in the withdrawal phase, besides the consent service's own view and the bench's."""

    def __post_init__(self) -> None:
        if self.windows < 2 or self.windows % 2:
            raise ValueError("windows must be an even number of at least 2")
        if self.patients < 1 or self.documents < TARGET_DOCUMENTS or self.concurrency < 1:
            raise ValueError(
                f"at least 1 patient, {TARGET_DOCUMENTS} documents and 1 concurrent task"
            )
        if self.withdrawals < 1 or self.views < 1:
            raise ValueError("at least 1 withdrawal and 1 extra consent view")

    def as_dict(self) -> dict[str, Any]:
        return {
            "seconds": self.seconds,
            "windows": self.windows,
            "window_seconds": self.seconds / self.windows,
            "concurrency": self.concurrency,
            "warmup_seconds": self.warmup,
            "local_seconds": self.local_seconds,
            "patients": self.patients,
            "documents": self.documents,
            "database": self.database,
            "database_url": self.database_url if self.database == "postgresql" else None,
            "nats_url": self.nats_url,
            "seed": self.seed,
            "withdrawals": self.withdrawals,
            "extra_views": self.views,
        }


@dataclass
class Population:
    """The generated consent view and the organisations in it."""

    states: list[PatientAccessState]
    orgs: list[str]
    unrelated: list[str]
    recipient: str
    recipient_patients: list[str]
    day: date

    @property
    def target(self) -> PatientAccessState:
        """The patient whose documents are read and searched (a recipient patient)."""
        return self.states[0]


class Interrupt:
    """Set by SIGINT or SIGTERM, which also cancel the run's task.

    The flag is needed as well because nats-py swallows a cancellation that reaches a
    task inside its publish path (``Client._flush_pending`` catches CancelledError), so a
    cancelled run could go on measuring; every loop, window and phase checks it."""

    def __init__(self) -> None:
        self.requested = False

    def check(self) -> None:
        if self.requested:
            raise asyncio.CancelledError


@dataclass
class ConsentBench:
    """What every phase may use: the options, the view, the database and both services."""

    options: ConsentOptions
    rng: random.Random
    population: Population
    settings: Settings
    nc: NATS
    view: ConsentView
    db: Database
    unchecked: FhirRouter
    checked: FhirRouter
    guard: AccessGuard
    """The checked service's consent step."""
    target_documents: list[str] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)
    """The results of the phases run so far (the result's ``phases``)."""
    interrupt: Interrupt = field(default_factory=Interrupt)

    def caller(self, orgnr: str | None = None, kind: str | None = None) -> Caller:
        """The reading organisation (or another one) as an authenticated caller."""
        return org_caller(orgnr or self.population.recipient, kind or RECIPIENT_KIND)

    async def audit_messages(self) -> int:
        info = await self.nc.jetstream().stream_info(self.settings.audit_stream_name)
        return int(info.state.messages)

    def audit_records(self) -> int:
        """Audit records acknowledged by JetStream (concurrent requests share a message)."""
        assert isinstance(self.guard.audit, AuditPublisher)
        return self.guard.audit.records


Phase = Callable[[ConsentBench], Awaitable[dict[str, Any]]]


# -- the generated consent view -------------------------------------------------------------------


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _grant(rng: random.Random, orgs: Sequence[str], day: date) -> Grant:
    roll = rng.random()
    if roll < 0.7:  # active until some day
        start, end = day - timedelta(rng.randint(0, 700)), day + timedelta(rng.randint(30, 700))
    elif roll < 0.9:  # active, open-ended
        start, end = day - timedelta(rng.randint(0, 700)), None
    else:  # expired
        end = day - timedelta(rng.randint(1, 300))
        start = end - timedelta(rng.randint(30, 400))
    roll = rng.random()
    purposes = ["TREAT"] if roll < 0.2 else ["HRESCH"] if roll < 0.25 else []
    return Grant(
        consent=f"Consent/{_uuid(rng)}",
        categories=rng.sample(CATEGORIES, rng.randint(1, 3)),
        orgs=rng.sample(orgs, rng.randint(1, 2)),
        kinds=[rng.choice(GRANT_KINDS)] if rng.random() < 0.15 else [],
        purposes_of_use=purposes,
        start=start,
        end=end,
    )


def generate_population(patients: int, rng: random.Random) -> Population:
    """N patients' access states: 1-3 grants each (to 1-2 of ORG_POOL organisations, some
    also to a kind, some for one purpose only, 10 % expired), one or two parents (whose
    authority has ended for 10 %, is unknown for 10 %), 10 % with information hidden from
    the parents; RECIPIENT_SHARE of them with a journal consent to the reading
    organisation, among them the first (the target of the read and search phases)."""
    ids = Identifiers(rng.randrange(2**32))
    orgs = [ids.orgnr() for _ in range(ORG_POOL)]
    unrelated = [ids.orgnr() for _ in range(50)]
    recipient = ids.orgnr()
    day = today()
    share = max(1, round(patients * RECIPIENT_SHARE))
    chosen = {0, *rng.sample(range(1, patients), share - 1)}
    states = []
    for index in range(patients):
        patient = _uuid(rng)
        grants = [_grant(rng, orgs, day) for _ in range(rng.choice((1, 1, 2, 2, 2, 3)))]
        if index in chosen:
            grants.append(
                Grant(
                    consent=f"Consent/{_uuid(rng)}",
                    categories=[CATEGORY, DataCategory.REFERRAL.value],
                    orgs=[recipient],
                    start=day - timedelta(rng.randint(1, 300)),
                    end=day + timedelta(rng.randint(30, 365)),
                )
            )
        roll = rng.random()
        until = (
            day + timedelta(rng.randint(1, 16 * 365))
            if roll < 0.8
            else day - timedelta(rng.randint(1, 700))
            if roll < 0.9
            else None
        )
        hidden = []
        if rng.random() < 0.1:
            hidden.append(
                HiddenFromParents(
                    consent=f"Consent/{_uuid(rng)}", orgs=[rng.choice(orgs)], categories=[CATEGORY]
                )
            )
        states.append(
            PatientAccessState(
                patient=patient,
                parents=[f"RelatedPerson/{_uuid(rng)}" for _ in range(rng.choice((1, 2, 2)))],
                parents_until=until,
                grants=grants,
                hidden_from_parents=hidden,
            )
        )
    return Population(
        states=states,
        orgs=orgs,
        unrelated=unrelated,
        recipient=recipient,
        recipient_patients=sorted(states[i].patient for i in chosen),
        day=day,
    )


Case = tuple[PatientAccessState, ResourceFacts, AccessContext]


def decision_cases(population: Population, rng: random.Random, count: int) -> list[Case]:
    """`count` decisions in the ACTOR_MIX: a recipient named by one of the patient's grants
    (by organisation or kind), an organisation no grant names, a parent, the author."""
    actors = [name for name, share in ACTOR_MIX for _ in range(share)]
    cases = []
    for _ in range(count):
        state = rng.choice(population.states)
        actor = rng.choice(actors)
        author = rng.choice(population.orgs)
        category = rng.choice(CATEGORIES)
        if actor == "recipient":
            grant = rng.choice(state.grants)
            category = rng.choice(grant.categories)
            if grant.kinds and rng.random() < 0.5:
                caller = org_caller(rng.choice(population.unrelated), grant.kinds[0])
            else:
                caller = org_caller(rng.choice(grant.orgs), AUTHOR_KIND)
        elif actor == "unrelated":
            caller = org_caller(rng.choice(population.unrelated), RECIPIENT_KIND)
        elif actor == "parent":
            caller = person_caller(rng.choice(state.parents), SCOPES)
            if state.hidden_from_parents and rng.random() < 0.5:
                author = state.hidden_from_parents[0].orgs[0]
                category = CATEGORY
        else:
            caller = org_caller(author, AUTHOR_KIND)
        facts = ResourceFacts(f"DocumentReference/{_uuid(rng)}", state.patient, category, author)
        context = AccessContext(caller=caller, day=population.day)
        cases.append((state, facts, context))
    return cases


# -- local phases ------------------------------------------------------------------------------


async def _cpu_loop(
    step: Callable[[int], object], budget: float, batch: int, interrupt: Interrupt
) -> tuple[int, float, float]:
    """Call `step(i)` in batches until `budget` CPU seconds are spent; (calls, CPU s, wall s).

    Between batches (of a few milliseconds) the event loop gets a turn, so that Ctrl-C is
    handled promptly."""
    calls = 0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    while True:
        for _ in range(batch):
            step(calls)
            calls += 1
        cpu = time.process_time() - cpu0
        if cpu >= budget:
            return calls, cpu, time.perf_counter() - wall0
        await asyncio.sleep(0)
        interrupt.check()


async def measure_decisions(bench: ConsentBench) -> dict[str, Any]:
    """Decisions per CPU-second of `decide` over the generated view (pure local work)."""
    cases = decision_cases(bench.population, bench.rng, DECISION_CASES)
    bases = Counter(decide(*case).basis for case in cases)  # also warms up
    size = len(cases)

    def step(i: int) -> None:
        state, facts, context = cases[i % size]
        decide(state, facts, context)

    calls, cpu, wall = await _cpu_loop(step, bench.options.local_seconds, 1000, bench.interrupt)
    return {
        "name": "decide",
        "what": "shared.access.decision.decide(state, facts, context), prepared cases",
        "decisions": calls,
        "cpu_s": round(cpu, 4),
        "wall_s": round(wall, 4),
        "per_cpu_second": per_cpu_second(calls, cpu),
        "per_wall_second": per_cpu_second(calls, wall),
        "cpu_us_per_decision": round(cpu * 1e6 / calls, 3),
        "cases": size,
        "actor_mix_percent": dict(ACTOR_MIX),
        "basis_mix_percent": {basis: round(100 * n / size, 1) for basis, n in bases.most_common()},
    }


async def measure_visibility(bench: ConsentBench) -> dict[str, Any]:
    """Search filters per CPU-second for the reader (grants for ~1 % of the patients)."""
    view = bench.view
    caller = bench.caller()
    context = AccessContext(caller=caller, day=bench.population.day)
    keys = actor_keys(caller)
    states = view.states_for(keys)
    found = visibility(states, CATEGORY, context)

    def step(i: int) -> None:
        visibility(view.states_for(actor_keys(caller)), CATEGORY, context)

    calls, cpu, wall = await _cpu_loop(step, bench.options.local_seconds, 100, bench.interrupt)
    return {
        "name": "visibility",
        "what": "view.states_for(actor_keys(caller)) + visibility(states, category, context)",
        "filters": calls,
        "cpu_s": round(cpu, 4),
        "wall_s": round(wall, 4),
        "per_cpu_second": per_cpu_second(calls, cpu),
        "per_wall_second": per_cpu_second(calls, wall),
        "cpu_us_per_filter": round(cpu * 1e6 / calls, 3),
        "actor_keys": keys,
        "states_found": len(states),
        "patients_in_filter": len(found.patients),
        "share_of_patients": round(len(states) / len(bench.population.states), 4),
    }


# -- checked vs unchecked -------------------------------------------------------------------------

SERVER_PROGRAMS = ("nats-server", "postgres")
"""Local server processes whose CPU is also reported (informational: they serve others too)."""
NATS_PROGRAM = "nats-server"
VARIANTS = ("unchecked", "checked")
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")

Sender = Callable[[FhirRequest], Awaitable[FhirResponse]]
"""How a comparison sends its request: in process, or over NATS request/reply."""


def in_process(service: FhirRouter) -> Sender:
    async def send(request: FhirRequest) -> FhirResponse:
        return await service.handle(request, b"")

    return send


def _is_local(url: str) -> bool:
    return urlparse(url).hostname in LOCAL_HOSTS


def server_programs(options: ConsentOptions) -> list[str]:
    """The local server programs whose CPU can be read: nats-server when `--nats-url` is
    on this machine, postgres when `--database postgresql` and its URL is."""
    programs = []
    if _is_local(options.nats_url):
        programs.append(NATS_PROGRAM)
    if options.database == "postgresql" and _is_local(options.database_url):
        programs.append("postgres")
    return programs


@dataclass
class WindowStats:
    variant: str
    requests: int
    errors: int
    wall_s: float
    cpu_s: float
    servers_cpu_s: dict[str, float]
    latencies: list[float]

    def as_dict(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "requests": self.requests,
            "errors": self.errors,
            "wall_s": round(self.wall_s, 4),
            "process_cpu_s": round(self.cpu_s, 4),
            "servers_cpu_s": {k: round(v, 3) for k, v in self.servers_cpu_s.items()},
            "per_process_cpu_second": per_cpu_second(self.requests, self.cpu_s),
        }


def _server_ticks(programs: Sequence[str]) -> dict[str, tuple[int, int]]:
    return {name: program_ticks(name) for name in programs}


async def run_window(
    send: Sender,
    request: FhirRequest,
    *,
    variant: str,
    concurrency: int,
    seconds: float,
    programs: Sequence[str],
    error_samples: list[str],
    interrupt: Interrupt | None = None,
) -> WindowStats:
    """`concurrency` tasks `send` the request until `seconds` have passed. CPU and
    wall time are taken before the tasks start and after the last one ended, so every
    request counted is inside the interval measured."""
    latencies: list[float] = []
    errors = 0

    async def client() -> None:
        nonlocal errors
        while time.perf_counter() < deadline and not (interrupt and interrupt.requested):
            sent = time.perf_counter()
            try:
                response = await send(request)
            except FhirError as exc:
                errors += 1
                if len(error_samples) < 5:
                    error_samples.append(f"{variant} {request.interaction}: {exc.status} {exc}")
                continue
            if response.status == 200:
                latencies.append(time.perf_counter() - sent)
            else:
                errors += 1
                if len(error_samples) < 5:
                    error_samples.append(f"{variant} {request.interaction}: {response.status}")

    servers_before = _server_ticks(programs)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    deadline = wall0 + seconds
    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(client())
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    servers_after = _server_ticks(programs)
    servers = {
        name: (servers_after[name][0] - servers_before[name][0]) / CLOCK_TICKS
        for name in programs
        if servers_after[name][1] and servers_before[name][1]
    }
    return WindowStats(variant, len(latencies), errors, wall, cpu, servers, latencies)


def _variant_summary(windows: Sequence[WindowStats]) -> dict[str, Any]:
    requests = sum(w.requests for w in windows)
    cpu = sum(w.cpu_s for w in windows)
    wall = sum(w.wall_s for w in windows)
    servers: dict[str, float] = {}
    for window in windows:
        for name, seconds in window.servers_cpu_s.items():
            servers[name] = servers.get(name, 0.0) + seconds
    ordered = sorted(latency for w in windows for latency in w.latencies)
    with_servers = cpu + sum(servers.values())
    nats = servers.get(NATS_PROGRAM)
    return {
        "requests": requests,
        "errors": sum(w.errors for w in windows),
        "wall_s": round(wall, 4),
        "process_cpu_s": round(cpu, 4),
        "per_process_cpu_second": per_cpu_second(requests, cpu),
        "per_wall_second": per_cpu_second(requests, wall),
        "process_cpu_us_per_request": round(cpu * 1e6 / requests, 1) if requests else None,
        "servers_cpu_s": {k: round(v, 3) for k, v in servers.items()},
        "per_cpu_second_with_servers": per_cpu_second(requests, with_servers) if servers else None,
        "per_cpu_second_with_nats": per_cpu_second(requests, cpu + nats)
        if nats is not None
        else None,
        "p50_ms": round(percentile(ordered, 0.50) * 1000, 3),
        "p95_ms": round(percentile(ordered, 0.95) * 1000, 3),
        "p99_ms": round(percentile(ordered, 0.99) * 1000, 3),
        "max_ms": round((ordered[-1] if ordered else 0.0) * 1000, 3),
    }


def abba(windows: int) -> list[str]:
    """checked, unchecked, unchecked, checked, …: a linear drift in the machine's speed
    affects both variants equally."""
    pattern = ("checked", "unchecked", "unchecked", "checked")
    return [pattern[i % 4] for i in range(windows)]


async def compare(
    bench: ConsentBench,
    name: str,
    request: FhirRequest,
    senders: Mapping[str, Sender] | None = None,
    what: str | None = None,
) -> dict[str, Any]:
    """The same request to the unchecked and the checked service, interleaved; by default
    in process (`FhirRouter.handle`), else through `senders` (e.g. over NATS)."""
    options = bench.options
    services = senders or {
        "unchecked": in_process(bench.unchecked),
        "checked": in_process(bench.checked),
    }
    programs = server_programs(options)
    error_samples: list[str] = []
    audit_before = await bench.audit_messages()
    records_before = bench.audit_records()
    checked_requests = 0
    for variant in VARIANTS:  # unmeasured warm-up
        warm = await run_window(
            services[variant],
            request,
            variant=variant,
            concurrency=options.concurrency,
            seconds=options.warmup / 2,
            programs=(),
            error_samples=error_samples,
            interrupt=bench.interrupt,
        )
        bench.interrupt.check()
        if variant == "checked":
            checked_requests += warm.requests + warm.errors
    windows = []
    for variant in abba(options.windows):
        window = await run_window(
            services[variant],
            request,
            variant=variant,
            concurrency=options.concurrency,
            seconds=options.seconds / options.windows,
            programs=programs,
            error_samples=error_samples,
            interrupt=bench.interrupt,
        )
        bench.interrupt.check()
        windows.append(window)
        if variant == "checked":
            checked_requests += window.requests + window.errors
    audit_messages = await bench.audit_messages() - audit_before
    audit_records = bench.audit_records() - records_before
    summaries = {
        variant: _variant_summary([w for w in windows if w.variant == variant])
        for variant in VARIANTS
    }
    checked, unchecked = summaries["checked"], summaries["unchecked"]
    pair_ratios = []
    for first, second in zip(windows[0::2], windows[1::2], strict=True):
        pair = {first.variant: first, second.variant: second}
        pair_ratios.append(
            ratio(
                pair["checked"].requests / pair["checked"].cpu_s if pair["checked"].cpu_s else 0,
                pair["unchecked"].requests / pair["unchecked"].cpu_s
                if pair["unchecked"].cpu_s
                else 0,
            )
        )
    per_cpu = ratio(
        checked["per_process_cpu_second"] or 0, unchecked["per_process_cpu_second"] or 0
    )
    with_servers = None
    if checked["per_cpu_second_with_servers"] and unchecked["per_cpu_second_with_servers"]:
        with_servers = ratio(
            checked["per_cpu_second_with_servers"], unchecked["per_cpu_second_with_servers"]
        )
    with_nats = None
    if checked["per_cpu_second_with_nats"] and unchecked["per_cpu_second_with_nats"]:
        with_nats = ratio(
            checked["per_cpu_second_with_nats"], unchecked["per_cpu_second_with_nats"]
        )
    known = sorted(r for r in pair_ratios if r is not None)
    return {
        "name": name,
        "what": what
        or f"FhirRouter.handle({_describe(request)}) by organisation {request.caller.orgnr}"
        f" ({request.caller.org_kind}), permitted by consent",
        "unchecked": unchecked,
        "checked": checked,
        "ratio_per_process_cpu_second": per_cpu,
        "ratio_per_wall_second": ratio(
            checked["per_wall_second"] or 0, unchecked["per_wall_second"] or 0
        ),
        "ratio_with_servers": with_servers,
        "ratio_with_nats": with_nats,
        "server_programs": programs,
        "pair_ratios": pair_ratios,
        "pair_ratio_min": known[0] if known else None,
        "pair_ratio_median": known[len(known) // 2] if known else None,
        "pair_ratio_max": known[-1] if known else None,
        "aim": AIM,
        "aim_met": per_cpu is not None and per_cpu >= AIM,
        "checked_requests": checked_requests,
        "audit_records_written": audit_records,
        "audit_messages_written": audit_messages,
        "windows": [w.as_dict() for w in windows],
        "error_samples": error_samples,
    }


def _describe(request: FhirRequest) -> str:
    """`read DocumentReference/<id>`, `search DocumentReference?patient=…`."""
    query = "&".join(f"{k}={v}" for k, v in request.params)
    return (
        f"{request.interaction} {request.resource_type}"
        f"{'/' + request.id if request.id else ''}{'?' + query if query else ''}"
    )


def _read_request(bench: ConsentBench, caller: Caller | None = None) -> FhirRequest:
    return FhirRequest(
        interaction="read",
        resource_type=BenchDocument.resource_type,
        id=bench.target_documents[0],
        base_url=BASE_URL,
        caller=caller or bench.caller(),
    )


def _search_request(bench: ConsentBench, caller: Caller | None = None) -> FhirRequest:
    return FhirRequest(
        interaction="search",
        resource_type=BenchDocument.resource_type,
        params=[("patient", f"Patient/{bench.population.target.patient}")],
        base_url=BASE_URL,
        caller=caller or bench.caller(),
    )


async def measure_read(bench: ConsentBench) -> dict[str, Any]:
    """A read by id, checked (decision + audit) vs unchecked."""
    return await compare(bench, "read", _read_request(bench))


async def measure_search(bench: ConsentBench) -> dict[str, Any]:
    """A search by patient (TARGET_DOCUMENTS matches), checked vs unchecked."""
    result = await compare(bench, "search", _search_request(bench))
    result["matches"] = TARGET_DOCUMENTS
    return result


class _DiscardAudit:
    """An audit sink that keeps the last record and writes nothing."""

    last: AuditRecord | None = None

    async def record(self, record: AuditRecord) -> None:
        self.last = record


async def _async_cpu_loop(
    step: Callable[[], Awaitable[object]], budget: float, concurrency: int, interrupt: Interrupt
) -> tuple[int, float, float]:
    """`concurrency` tasks await `step()` until `budget` CPU seconds are spent."""
    calls = 0
    cpu0, wall0 = time.process_time(), time.perf_counter()

    async def client() -> None:
        nonlocal calls
        while time.process_time() - cpu0 < budget and not interrupt.requested:
            await step()
            calls += 1

    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(client())
    interrupt.check()
    return calls, time.process_time() - cpu0, time.perf_counter() - wall0


def _part(name: str, calls: int, cpu: float, wall: float) -> dict[str, Any]:
    return {
        "part": name,
        "calls": calls,
        "cpu_s": round(cpu, 4),
        "per_cpu_second": per_cpu_second(calls, cpu),
        "cpu_us_each": round(cpu * 1e6 / calls, 2) if calls else None,
        "per_wall_second": per_cpu_second(calls, wall),
    }


def _overhead(bench: ConsentBench, name: str) -> tuple[float | None, float | None]:
    """(unchecked CPU µs, checked − unchecked CPU µs) per request of an earlier phase."""
    phase = next((p for p in bench.results if p.get("name") == name), None)
    if phase is None:
        return None, None
    checked = phase["checked"]["process_cpu_us_per_request"]
    unchecked = phase["unchecked"]["process_cpu_us_per_request"]
    if checked is None or unchecked is None:
        return unchecked, None
    return unchecked, round(checked - unchecked, 1)


async def measure_checked_parts(bench: ConsentBench) -> dict[str, Any]:
    """Where the extra CPU of a checked read and search goes, each part in its own loop,
    per CPU-second of this process, next to the overheads measured in the ``read`` and
    ``search`` phases.

    Read: the decision (view look-up + `decide`); the decision with the audit record built
    but not written; publishing a record to JetStream and waiting for the acknowledgement
    (serialising included). Search: the SQL filter (`filter_for`: `states_for` +
    `visibility`); the same store search without and with that filter (with SQLite its
    CPU is in this process; PostgreSQL's is not); `released` (a decision per match and
    the record built, not written)."""
    options, interrupt = bench.options, bench.interrupt
    budget = options.local_seconds / 2
    guard = bench.guard
    discard = _DiscardAudit()
    quiet = AccessGuard(SERVICE, bench.view, discard, guard.categories)
    resource_type = BenchDocument.resource_type

    read = _read_request(bench)
    async with bench.db.reader() as conn:
        stored = await bench.checked.service.store.read(conn, resource_type, read.id or "")
    assert stored is not None
    parts = {
        "read: decision (guard.decide)": await _cpu_loop(
            lambda i: guard.decide(read, stored), budget, 100, interrupt
        ),
        "read: decision + audit record built": await _async_cpu_loop(
            lambda: quiet.check(read, stored), budget, 1, interrupt
        ),
    }
    template = discard.last
    assert template is not None
    settings = bench.settings
    publisher = AuditPublisher(bench.nc, settings.nats_prefix, settings.request_timeout)

    async def publish() -> None:
        await publisher.record(template.model_copy(update={"id": str(uuid.uuid4())}))

    parts["audit record serialised, published, acknowledged"] = await _async_cpu_loop(
        publish, budget, options.concurrency, interrupt
    )

    search = _search_request(bench)
    parts["search: SQL filter (filter_for: states_for + visibility)"] = await _cpu_loop(
        lambda i: guard.filter_for(search)(resource_type), budget, 10, interrupt
    )
    store, db = bench.checked.service.store, bench.db
    query = parse_search(resource_type, search.params, bench.checked.service.search_params)
    access = guard.filter_for(search)(resource_type)

    def only_this(res_type: str) -> AccessFilter | None:
        return access

    async def plain_search() -> SearchPage:
        async with db.reader() as conn:
            return await store.search(conn, query)

    async def filtered_search() -> SearchPage:
        async with db.reader() as conn:
            return await store.search(conn, query, access_for=only_this)

    parts["search: store.search, no filter"] = await _async_cpu_loop(
        plain_search, budget, 1, interrupt
    )
    parts["search: store.search, the reader's filter"] = await _async_cpu_loop(
        filtered_search, budget, 1, interrupt
    )
    page = await filtered_search()
    parts["search: released (decisions + audit record built)"] = await _async_cpu_loop(
        lambda: quiet.released(search, list(page.resources), "patient"), budget, 1, interrupt
    )
    rows = [_part(name, *measured) for name, measured in parts.items()]
    each = {row["part"]: row["cpu_us_each"] or 0.0 for row in rows}
    published = each["audit record serialised, published, acknowledged"]
    read_unchecked, read_overhead = _overhead(bench, "read")
    search_unchecked, search_overhead = _overhead(bench, "search")
    search_parts = (
        each["search: SQL filter (filter_for: states_for + visibility)"]
        + each["search: store.search, the reader's filter"]
        - each["search: store.search, no filter"]
        + each["search: released (decisions + audit record built)"]
        + published
    )
    return {
        "name": "checked-parts",
        "what": "the parts of the extra CPU of a checked read and search, each measured alone",
        "parts": rows,
        "read": {
            "unchecked_cpu_us": read_unchecked,
            "overhead_cpu_us": read_overhead,
            "parts_cpu_us": round(each["read: decision + audit record built"] + published, 1),
        },
        "search": {
            "unchecked_cpu_us": search_unchecked,
            "overhead_cpu_us": search_overhead,
            "parts_cpu_us": round(search_parts, 1),
            "filter_patients": len(access.patients) if access is not None else None,
        },
    }


# -- over the NATS transport ----------------------------------------------------------------------


def over_nats(forwarder: Forwarder, prefix: str) -> Sender:
    """Send a request as the gateway does: NATS request/reply to the type's subject."""

    async def send(request: FhirRequest) -> FhirResponse:
        subject = request_subject(prefix, request.resource_type or "")
        return await forwarder.send(subject, request, b"")

    return send


async def _transport_sanity(bench: ConsentBench, senders: Mapping[str, Sender]) -> dict[str, Any]:
    """Over NATS too: both reads answer 200 with the same bytes as in process; the checked
    one refuses an unrelated organisation (404)."""
    read = _read_request(bench)
    expected = (await bench.unchecked.handle(read, b"")).body
    statuses = {}
    for variant in VARIANTS:
        response = await senders[variant](read)
        statuses[variant] = response.status
        if response.status != 200 or response.body != expected:
            raise RuntimeError(
                f"the {variant} read over NATS answered {response.status},"
                f" {'the same' if response.body == expected else 'different'} bytes"
            )
    stranger = bench.caller(orgnr=bench.population.unrelated[0])
    refused = await senders["checked"](_read_request(bench, stranger))
    if refused.status != 404:
        raise RuntimeError(f"the checked read over NATS answered {refused.status} to a stranger")
    return {"read_status": statuses, "unrelated_read_status": refused.status}


async def measure_transport(bench: ConsentBench) -> dict[str, Any]:
    """The read and search of the ``read`` and ``search`` phases, but over NATS
    request/reply: a `ServiceHost` per service in this process, each on its own subject
    prefix, driven through a `Forwarder` (the gateway's client) on its own connection.
    The headline counts the CPU of this process and of nats-server, which carries every
    request and reply as well as the audit records."""
    options, settings = bench.options, bench.settings
    prefixes = {variant: f"{settings.nats_prefix}{variant[0]}" for variant in VARIANTS}
    services = {"unchecked": bench.unchecked, "checked": bench.checked}
    hosts = [
        ServiceHost(
            bench.nc,
            prefix=prefixes[variant],
            service=SERVICE,
            resource_types=[BenchDocument.resource_type],
            handler=services[variant].handle,
        )
        for variant in VARIANTS
    ]
    client: NATS | None = None
    problems: list[str] = []
    try:
        for host in hosts:
            await host.start()
        client = await _connect_nats(options.nats_url, "barnebro-bench-consent-client")
        forwarder = Forwarder(client, settings.request_timeout)
        senders = {variant: over_nats(forwarder, prefixes[variant]) for variant in VARIANTS}
        sanity = await _transport_sanity(bench, senders)
        compared = {}
        for name, request in (("read", _read_request(bench)), ("search", _search_request(bench))):
            bench.interrupt.check()
            what = (
                f"Forwarder.send({_describe(request)}) → nats-server → ServiceHost →"
                f" FhirRouter.handle, by organisation {request.caller.orgnr}"
                f" ({request.caller.org_kind}), permitted by consent"
            )
            compared[name] = await compare(bench, name, request, senders, what)
    finally:
        for variant, host in zip(VARIANTS, hosts, strict=True):
            await _quietly(f"stop the {variant} ServiceHost", host.stop, problems)
        if client is not None:
            await _quietly("close the client connection", client.close, problems)
    nats_counted = all(compared[n]["ratio_with_nats"] is not None for n in compared)
    for result in compared.values():
        if nats_counted:
            result["headline_ratio"] = result["ratio_with_nats"]
        else:
            result["headline_ratio"] = result["ratio_per_process_cpu_second"]
        result["aim_met"] = result["headline_ratio"] is not None and result["headline_ratio"] >= AIM
    return {
        "name": "transport",
        "what": "checked vs unchecked read and search over NATS request/reply"
        " (Forwarder → nats-server → ServiceHost → FhirService), all in this process"
        " except nats-server; no gateway, no HTTP",
        "prefixes": prefixes,
        "cpu_counted": (
            f"this process (client, both ServiceHosts, both FhirServices"
            f"{', SQLite' if options.database == 'sqlite' else ''}) + nats-server"
            if nats_counted
            else "this process only: the CPU of nats-server could not be read (not local?)"
        ),
        "headline": "per (process + nats-server) CPU-s" if nats_counted else "per process CPU-s",
        "sanity": sanity,
        "read": compared["read"],
        "search": compared["search"],
        "problems": problems,
    }


async def _quietly(what: str, action: Callable[[], Awaitable[object]], problems: list[str]) -> None:
    """Run a stop step with a time limit; a failure is noted, not raised."""
    try:
        await asyncio.wait_for(action(), 30)
    except Exception as exc:
        problems.append(f"{what}: {exc!r}")


# -- how fast a withdrawal reaches every service -------------------------------------------------

WITHDRAWAL_AIM_S = 1.0
"""The project's aim: a withdrawal is visible to every service within a second."""
WAIT_LIMIT_S = 30.0
"""How long a grant or a withdrawal may take to reach every view before the run fails."""
CHILD_AGE_DAYS = 13 * 365 + 100
"""The child is about 13 years and 3 months old: both parents consent, the child is heard."""


class GrantWatch:
    """Follows one consent view: when does a state of the patient arrive with, and then
    without, the grant of the consent under test? The listener runs inside
    `ConsentView.apply`, after the state is in place, so its time is when that service's
    decisions see the change."""

    def __init__(self, name: str, view: ConsentView, patient: str) -> None:
        self.name = name
        self.view = view
        self.patient = patient
        self.consent: str | None = None
        self.granted = asyncio.Event()
        self.gone = asyncio.Event()
        self.granted_at = 0.0
        self.gone_at = 0.0
        view.listeners.append(self.on_state)

    def detach(self) -> None:
        with contextlib.suppress(ValueError):
            self.view.listeners.remove(self.on_state)

    def _has_grant(self, state: PatientAccessState) -> bool:
        return any(grant.consent == self.consent for grant in state.grants)

    def expect(self, consent: str) -> None:
        """Follow `consent` (its grant may already have arrived: then it counts as now)."""
        self.consent = consent
        self.granted, self.gone = asyncio.Event(), asyncio.Event()
        self.granted_at = self.gone_at = 0.0
        state = self.view.state(self.patient)
        if state is not None and self._has_grant(state):
            self.granted_at = time.monotonic()
            self.granted.set()

    def on_state(self, state: PatientAccessState) -> None:
        if state.patient != self.patient or self.consent is None:
            return
        if self._has_grant(state):
            if not self.granted.is_set():
                self.granted_at = time.monotonic()
                self.granted.set()
        elif self.granted.is_set() and not self.gone.is_set():
            self.gone_at = time.monotonic()
            self.gone.set()


async def _all_set(
    watches: Sequence[GrantWatch], pick: Callable[[GrantWatch], asyncio.Event], what: str
) -> None:
    """Wait until `pick(watch)` is set for every view (or fail after WAIT_LIMIT_S)."""
    events = [pick(watch) for watch in watches]
    try:
        async with asyncio.timeout(WAIT_LIMIT_S):
            await asyncio.gather(*(event.wait() for event in events))
    except TimeoutError:
        missing = [w.name for w, e in zip(watches, events, strict=True) if not e.is_set()]
        raise RuntimeError(
            f"{what} did not reach the views {missing} in {WAIT_LIMIT_S} s"
        ) from None


@dataclass
class Family:
    """The directory entries of the withdrawal phase."""

    collector: str
    """orgnr of the barnevernstjeneste that collects the consents."""
    recipient: str
    """orgnr of the BUP the consents share journal information with."""
    child: str
    mother: str
    father: str


async def _create_in_directory(
    directory: ServiceRuntime, caller: Caller, resource: dict[str, Any], res_id: str | None = None
) -> str:
    """Create `resource` as `caller`, or with `res_id` update that one; returns its id."""
    assert directory.router is not None
    request = FhirRequest(
        interaction="update" if res_id else "create",
        resource_type=resource["resourceType"],
        id=res_id,
        base_url=BASE_URL,
        caller=caller,
        prefer_return="minimal",
    )
    response = await directory.router.handle(request, orjson.dumps(resource))
    if response.status != (200 if res_id else 201):
        raise RuntimeError(
            f"writing a {resource['resourceType']} answered {response.status}: {response.body!r}"
        )
    return response.headers["Location"].split("/")[-3]


def _organisation(orgnr: str, kind: str) -> dict[str, Any]:
    return {
        "resourceType": "Organization",
        "name": f"{kind} {orgnr}",
        "identifier": [{"system": ORGNR_SYSTEM, "value": orgnr}],
        "type": [{"coding": [{"system": ORGANISATION_KIND_SYSTEM, "code": kind}]}],
    }


def _parent(child: str, given: str) -> dict[str, Any]:
    return {
        "resourceType": "RelatedPerson",
        "patient": {"reference": f"Patient/{child}"},
        "name": [{"family": "Nordmann", "given": [given]}],
        "relationship": [
            {"coding": [{"system": PARENTAL_RESPONSIBILITY_SYSTEM, "code": "felles"}]}
        ],
    }


async def _create_family(bench: ConsentBench, directory: ServiceRuntime) -> Family:
    """A barnevernstjeneste and a BUP, registered by the operator; a child of 13,
    registered by the barnevernstjeneste, its birth date stated by the population register;
    and two parents with joint parental
    responsibility (`felles`), recorded by the population register — each written through
    the directory service with the credential that may write it."""
    ids = Identifiers(bench.rng.randrange(2**32))
    collector, recipient = ids.orgnr(), ids.orgnr()
    operator = credential_caller("operator")
    await _create_in_directory(directory, operator, _organisation(collector, RECIPIENT_KIND))
    await _create_in_directory(directory, operator, _organisation(recipient, AUTHOR_KIND))
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "name": [{"family": "Nordmann", "given": ["Kari"]}],
    }
    child = await _create_in_directory(directory, org_caller(collector, RECIPIENT_KIND), patient)
    register = credential_caller("register")
    born = (today() - timedelta(days=CHILD_AGE_DAYS)).isoformat()
    await _create_in_directory(directory, register, {**patient, "birthDate": born}, child)
    mother = await _create_in_directory(directory, register, _parent(child, "Mor"))
    father = await _create_in_directory(directory, register, _parent(child, "Far"))
    return Family(collector, recipient, child, f"RelatedPerson/{mother}", f"RelatedPerson/{father}")


def _consent_input(family: Family) -> dict[str, Any]:
    """Both parents consent to share the child's journal with the BUP; the child was heard
    (`services.consent.admin_api.ConsentInput`)."""

    def signature(grantor: str) -> dict[str, Any]:
        return {
            "grantor": grantor,
            "decision": "consent",
            "method": "in-person",
            "collected_by": "Saksbehandler Hansen",
        }

    return {
        "patient": f"Patient/{family.child}",
        "purpose": "informasjonsdeling",
        "recipients": {"organizations": [family.recipient]},
        "categories": [CATEGORY],
        "signatures": [signature(family.mother), signature(family.father)],
        "child_view": {
            "heard": True,
            "statement": "Vil ha hjelp",
            "heard_by": "Saksbehandler Hansen",
        },
    }


async def _operation(
    consent: ServiceRuntime,
    family: Family,
    operation: str,
    body: dict[str, Any],
    consent_id: str | None = None,
) -> dict[str, Any]:
    """Call the consent administration API as the gateway does (a service operation)."""
    assert consent.router is not None
    request = FhirRequest(
        interaction="operation",
        operation=operation,
        id=consent_id,
        base_url=BASE_URL,
        caller=org_caller(family.collector, RECIPIENT_KIND),
    )
    response = await consent.router.handle(request, orjson.dumps(body))
    if response.status not in (200, 201):
        raise RuntimeError(f"{operation} answered {response.status}: {response.body!r}")
    answer: dict[str, Any] = orjson.loads(response.body)
    return answer


def _spread_ms(values: Sequence[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_ms": round(percentile(ordered, 0.50) * 1000, 2),
        "p99_ms": round(percentile(ordered, 0.99) * 1000, 2),
        "max_ms": round((ordered[-1] if ordered else 0.0) * 1000, 2),
        "min_ms": round((ordered[0] if ordered else 0.0) * 1000, 2),
        "mean_ms": round(sum(ordered) * 1000 / len(ordered), 2) if ordered else 0.0,
    }


def _relay_settings(settings: Settings) -> dict[str, Any]:
    linger = inspect.signature(OutboxRelay.__init__).parameters["linger"].default
    return {
        "poll_interval_s": settings.outbox_poll_interval,
        "max_backoff_s": settings.outbox_max_backoff,
        "linger_s": linger,
        "source": "Settings() defaults (BARNEBRO_OUTBOX_* unless set in the environment);"
        " linger is OutboxRelay's default, which ServiceRuntime does not override."
        " Only the NATS prefix and the database are the bench's own.",
        "environment_overrides": sorted(
            name for name in os.environ if name.startswith("BARNEBRO_OUTBOX_")
        ),
    }


async def measure_withdrawal(bench: ConsentBench) -> dict[str, Any]:
    """How fast a withdrawal reaches every service's consent view.

    The directory and the consent service run here as they do in production
    (`ServiceRuntime`, the same `Settings`: production defaults besides the bench's prefix
    and database), with the consent view of the consent service, the bench's own view and
    `options.views` more (each on its own NATS connection) standing for other services.
    N times: create an active consent (both parents, the child heard), wait until every
    view has its grant, withdraw it; t0 just before the withdrawal request, the reply when
    it has committed, and each view's time when the state without the grant is applied."""
    options, settings = bench.options, bench.settings
    # The consent service's audit trail reads the audit stream from its start: the records
    # of the earlier phases (tens of thousands) would keep it busy through this phase.
    js = bench.nc.jetstream()
    purged = await bench.audit_messages()
    await js.purge_stream(settings.audit_stream_name)
    directory = ServiceRuntime(directory_spec(settings), settings)
    consent = ServiceRuntime(consent_spec(settings), settings)
    others: list[tuple[NATS, ConsentView]] = []
    watches: list[GrantWatch] = []
    problems: list[str] = []
    samples: list[dict[str, float]] = []
    creations: list[float] = []
    grants: list[float] = []
    wall0 = time.perf_counter()
    try:
        await directory.start()
        await consent.start()
        for number in range(options.views):
            nc = await _connect_nats(options.nats_url, f"barnebro-bench-view-{number + 1}")
            view = ConsentView(nc, settings.consent_view_bucket, settings.event_replicas)
            others.append((nc, view))
            await view.start()
        started_s = time.perf_counter() - wall0
        family = await _create_family(bench, directory)
        assert consent.consent_view is not None
        views = {"consent": consent.consent_view, "bench": bench.view}
        views.update({f"other-{n + 1}": view for n, (_, view) in enumerate(others)})
        watches = [GrantWatch(name, view, family.child) for name, view in views.items()]
        for _ in range(options.withdrawals):
            bench.interrupt.check()
            sent = time.monotonic()
            created = await _operation(consent, family, "consent-create", _consent_input(family))
            created_at = time.monotonic()
            creations.append(created_at - sent)
            if created.get("status") != "active":
                raise RuntimeError(f"the consent is {created.get('status')}: {created}")
            for watch in watches:
                watch.expect(f"Consent/{created['id']}")
            await _all_set(watches, lambda w: w.granted, f"the grant of Consent/{created['id']}")
            grants.append(max(watch.granted_at for watch in watches) - created_at)
            t0 = time.monotonic()
            withdrawn = await _operation(
                consent, family, "consent-withdraw", {"by": family.father}, created["id"]
            )
            replied = time.monotonic()
            if withdrawn.get("status") != "inactive":
                raise RuntimeError(f"the withdrawn consent is {withdrawn.get('status')}")
            await _all_set(watches, lambda w: w.gone, f"the withdrawal of Consent/{created['id']}")
            seen = {watch.name: watch.gone_at for watch in watches}
            last = max(seen.values())
            samples.append(
                {
                    "request_s": replied - t0,
                    "to_last_view_s": last - t0,
                    "reply_to_last_view_s": last - replied,
                    "to_first_view_s": min(seen.values()) - t0,
                    **{f"view:{name}": at - t0 for name, at in seen.items()},
                }
            )
    finally:
        for watch in watches:
            watch.detach()
        for nc, view in others:
            await _quietly("stop a consent view", view.stop, problems)
            await _quietly("close a view's connection", nc.close, problems)
        await _quietly("stop the consent service", consent.stop, problems)
        await _quietly("stop the directory service", directory.stop, problems)
    to_last = [s["to_last_view_s"] for s in samples]
    names = [watch.name for watch in watches]
    return {
        "name": "withdrawal",
        "what": "consent-withdraw through the consent service's operation handler until the"
        " state without the grant is applied by every consent view",
        "withdrawals": len(samples),
        "views": names,
        "aim_s": WITHDRAWAL_AIM_S,
        "aim_met": bool(to_last) and max(to_last) < WITHDRAWAL_AIM_S,
        "within_aim": sum(1 for value in to_last if value < WITHDRAWAL_AIM_S),
        "to_last_view": _spread_ms(to_last),
        "reply_to_last_view": _spread_ms([s["reply_to_last_view_s"] for s in samples]),
        "to_first_view": _spread_ms([s["to_first_view_s"] for s in samples]),
        "withdrawal_request": _spread_ms([s["request_s"] for s in samples]),
        "consent_create_request": _spread_ms(creations),
        "grant_reply_to_last_view": _spread_ms(grants),
        "per_view_p50_ms": {
            name: _spread_ms([s[f"view:{name}"] for s in samples])["p50_ms"] for name in names
        },
        "outbox_relay": _relay_settings(settings),
        "audit_messages_purged_before": purged,
        "services_started_in_s": round(started_s, 2),
        "phase_wall_s": round(time.perf_counter() - wall0, 2),
        "problems": problems,
    }


PHASES: list[Phase] = [
    measure_decisions,
    measure_visibility,
    measure_read,
    measure_search,
    measure_checked_parts,
    measure_transport,
    measure_withdrawal,
]
"""The phases of a run, in order; each adds one entry to the result's ``phases``."""


# -- setting up and tearing down --------------------------------------------------------------


async def _create_documents(bench: ConsentBench) -> dict[str, Any]:
    """TARGET_DOCUMENTS documents about the target patient by AUTHOR_ORG, the rest about
    random other patients by random organisations, through the unchecked service."""
    population, rng = bench.population, bench.rng
    plan = [(population.target.patient, AUTHOR_ORG)] * TARGET_DOCUMENTS
    others = population.states[1:] or population.states
    for _ in range(bench.options.documents - TARGET_DOCUMENTS):
        plan.append((rng.choice(others).patient, rng.choice(population.orgs)))

    async def create(patient: str, author: str) -> str:
        request = FhirRequest(
            interaction="create",
            resource_type=BenchDocument.resource_type,
            base_url=BASE_URL,
            caller=org_caller(author, AUTHOR_KIND),
            prefer_return="minimal",
        )
        response = await bench.unchecked.handle(request, orjson.dumps(document(patient, author)))
        if response.status != 201:
            raise RuntimeError(f"creating a DocumentReference answered {response.status}")
        return response.headers["Location"].split("/")[-3]

    wall0 = time.perf_counter()
    ids: list[str] = []
    step = max(1, bench.options.concurrency)
    for start in range(0, len(plan), step):
        bench.interrupt.check()
        ids += await asyncio.gather(*(create(p, a) for p, a in plan[start : start + step]))
    bench.target_documents = ids[:TARGET_DOCUMENTS]
    return {"documents": len(ids), "created_in_s": round(time.perf_counter() - wall0, 2)}


async def _sanity(bench: ConsentBench) -> dict[str, Any]:
    """Before measuring: the checked read is a permit by consent; an unrelated
    organisation is refused by the checked service (404) and finds nothing; both services
    find the same documents."""
    stranger = bench.caller(orgnr=bench.population.unrelated[0])
    read = _read_request(bench)
    async with bench.db.reader() as conn:
        stored = await bench.checked.service.store.read(
            conn, BenchDocument.resource_type, read.id or ""
        )
    assert stored is not None
    decision = bench.guard.decide(read, stored)
    if not decision.permit or decision.basis != "consent":
        raise RuntimeError(f"the checked read would not be a permit by consent: {decision}")
    checked_body = (await bench.checked.handle(read, b"")).body
    unchecked_body = (await bench.unchecked.handle(read, b"")).body
    if checked_body != unchecked_body:
        raise RuntimeError("the checked and unchecked reads returned different bodies")
    try:
        await bench.checked.handle(_read_request(bench, stranger), b"")
    except FhirError as exc:
        stranger_status = exc.status
    else:
        raise RuntimeError("the checked service released the document to an unrelated org")
    found = {}
    for name, service, caller in (
        ("unchecked", bench.unchecked, None),
        ("checked", bench.checked, None),
        ("checked, unrelated organisation", bench.checked, stranger),
    ):
        bundle = orjson.loads((await service.handle(_search_request(bench, caller), b"")).body)
        found[name] = sum(1 for e in bundle["entry"] if e["search"]["mode"] == "match")
    if found["checked"] != TARGET_DOCUMENTS or found["unchecked"] != TARGET_DOCUMENTS:
        raise RuntimeError(f"the search by patient found {found}, not {TARGET_DOCUMENTS} each")
    if found["checked, unrelated organisation"]:
        raise RuntimeError("the checked search released documents to an unrelated org")
    return {
        "read_basis": decision.basis,
        "read_consents": list(decision.consents),
        "unrelated_read_status": stranger_status,
        "search_matches": found,
        "response_bytes": len(checked_body),
    }


async def _connect_nats(url: str, name: str = "barnebro-bench-consent") -> NATS:
    """A NATS client that fails fast when the server is not there (unlike the services',
    which reconnect for ever)."""
    return await nats.connect(url, name=name, connect_timeout=3, max_reconnect_attempts=2)


async def _cleanup(
    settings: Settings,
    nc: NATS | None,
    view: ConsentView | None,
    db: Database | None,
    options: ConsentOptions,
) -> dict[str, Any]:
    """Remove everything the run created, step by step (a failing step does not stop the
    others); report what was removed, what was not there (a phase that did not run) and
    what could not be removed."""
    done: dict[str, Any] = {
        "deleted_streams": [],
        "deleted_buckets": [],
        "dropped_schemas": [],
        "absent": [],
        "problems": [],
    }

    async def attempt(what: str, action: Callable[[], Awaitable[object]]) -> bool:
        try:
            await asyncio.wait_for(action(), 15)
            return True
        except NotFoundError:
            done["absent"].append(what.rsplit(" ", 1)[-1])
        except Exception as exc:
            done["problems"].append(f"{what}: {exc!r}")
        return False

    if view is not None:
        await attempt("stop the consent view", view.stop)
    if nc is not None and nc.is_connected:
        js = nc.jetstream()
        for stream in (settings.stream_name, settings.audit_stream_name):
            if await attempt(
                f"delete stream {stream}", functools.partial(js.delete_stream, stream)
            ):
                done["deleted_streams"].append(stream)
        for bucket in (settings.consent_view_bucket, settings.registry_bucket):
            if await attempt(
                f"delete bucket {bucket}", functools.partial(js.delete_key_value, bucket)
            ):
                done["deleted_buckets"].append(bucket)
    if nc is not None:
        await attempt("close NATS", nc.close)
    if db is not None:
        await attempt("close the database", db.close)
    if options.database == "postgresql":

        async def drop() -> None:
            done["dropped_schemas"] += await drop_schemas(
                options.database_url, settings.db_schema_prefix
            )

        await attempt(f"drop the schemas {settings.db_schema_prefix}_*", drop)
    return done


async def run_schemas(url: str, prefix: str) -> list[str]:
    """The PostgreSQL schemas of a run: `<prefix>_<service>` (bench, directory, consent)."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE $1 ORDER BY nspname",
            prefix.lower() + "\\_%",
        )
    finally:
        await conn.close()
    return [str(row[0]) for row in rows]


async def drop_schemas(url: str, prefix: str) -> list[str]:
    """Drop every schema of a run; return their names."""
    schemas = await run_schemas(url, prefix)
    conn = await asyncpg.connect(url)
    try:
        for schema in schemas:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()
    return schemas


async def nats_objects_left(url: str, settings_names: Mapping[str, Any]) -> list[str]:
    """Which of a run's streams and buckets still exist (for checking the cleanup)."""
    nc = await _connect_nats(url)
    left = []
    try:
        js = nc.jetstream()
        for stream in settings_names["streams"]:
            with contextlib.suppress(NotFoundError):
                await js.stream_info(stream)
                left.append(stream)
        for bucket in settings_names["buckets"]:
            with contextlib.suppress(NotFoundError):
                await js.stream_info(f"KV_{bucket}")
                left.append(bucket)
    finally:
        await nc.close()
    return left


SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _handle_signals(interrupt: Interrupt) -> dict[int, Any]:
    """Make SIGINT and SIGTERM cancel the run (once; a second one aborts at once), so the
    cleanup runs either way. Returns the handlers to restore (none outside the main
    thread, where signals cannot be handled)."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    previous: dict[int, Any] = {}
    if task is None:
        return previous

    def stop() -> None:
        if interrupt.requested:
            raise KeyboardInterrupt
        interrupt.requested = True
        task.cancel()

    for number in SIGNALS:
        handler = signal.getsignal(number)
        try:
            loop.add_signal_handler(number, stop)
        except (NotImplementedError, RuntimeError, ValueError):
            continue
        previous[number] = handler
    return previous


def _restore_signals(previous: Mapping[int, Any]) -> None:
    loop = asyncio.get_running_loop()
    for number, handler in previous.items():
        loop.remove_signal_handler(number)
        signal.signal(number, signal.SIG_DFL if handler is None else handler)


async def _run(options: ConsentOptions, result: dict[str, Any]) -> None:
    seed = options.seed if options.seed is not None else secrets.randbits(32)
    rng = random.Random(seed)
    tag = f"bench{secrets.token_hex(4)}"
    # The SQLite file's directory (`open_database` creates it); removed at the end.
    data_dir = Path(tempfile.gettempdir()) / f"barnebro-{tag}"
    database_url = ""
    if options.database == "postgresql":
        database_url = with_application_name(options.database_url, tag)
    settings = Settings(
        data_dir=data_dir,
        nats_url=options.nats_url,
        nats_prefix=tag,
        db_schema_prefix=tag,
        database_url=database_url,
    )
    schema = settings.db_schema_for(SERVICE)
    result["parameters"]["seed"] = seed
    result["nats"] = {
        "url": options.nats_url,
        "prefix": tag,
        "streams": [settings.stream_name, settings.audit_stream_name],
        "buckets": [settings.consent_view_bucket, settings.registry_bucket],
    }
    result["database"] = {
        "kind": options.database,
        "schema": schema if database_url else None,
        "schema_prefix": tag if database_url else None,
        "data_dir": str(data_dir),
    }
    nc: NATS | None = None
    view: ConsentView | None = None
    db: Database | None = None
    interrupt = Interrupt()
    handled = _handle_signals(interrupt)
    try:
        print(f"generating {options.patients} patients' consent states …", flush=True)
        population = generate_population(options.patients, rng)
        nc = await _connect_nats(options.nats_url)
        await ensure_event_stream(nc, settings)
        view = ConsentView(nc, settings.consent_view_bucket, settings.event_replicas)
        await view.start()
        cpu0 = time.process_time()
        for state in population.states:
            view.apply(state)
        applied_cpu = time.process_time() - cpu0
        result["population"] = {
            "patients": len(population.states),
            "grants": sum(len(s.grants) for s in population.states),
            "organisations_in_grants": len(population.orgs) + 1,
            "with_hidden_from_parents": sum(1 for s in population.states if s.hidden_from_parents),
            "recipient": population.recipient,
            "recipient_patients": len(population.recipient_patients),
            "target_patient": population.target.patient,
            "view_apply_cpu_s": round(applied_cpu, 4),
            "view_apply_per_cpu_second": per_cpu_second(len(population.states), applied_cpu),
        }
        db = await open_database(settings.database_url_for(SERVICE), schema, settings.db_pool_size)
        await create_schema(db)
        definitions: list[ResourceDefinition] = [BenchDocument()]
        categories = {d.resource_type: d.data_category for d in definitions}
        audit = AuditPublisher(nc, settings.nats_prefix, settings.request_timeout)
        guard = AccessGuard(SERVICE, view, audit, categories)
        bench = ConsentBench(
            options=options,
            rng=rng,
            population=population,
            settings=settings,
            nc=nc,
            view=view,
            db=db,
            unchecked=FhirRouter(FhirService(SERVICE, definitions, db, prefix=tag)),
            checked=FhirRouter(FhirService(SERVICE, definitions, db, prefix=tag, guard=guard)),
            guard=guard,
            results=result["phases"],
            interrupt=interrupt,
        )
        print(f"creating {options.documents} documents ({options.database}) …", flush=True)
        result["population"].update(await _create_documents(bench))
        result["sanity"] = await _sanity(bench)
        for phase in PHASES:
            interrupt.check()
            print(f"phase {phase.__name__} …", flush=True)
            result["phases"].append(await phase(bench))
    finally:
        try:
            result["cleanup"] = await _cleanup(settings, nc, view, db, options)
            shutil.rmtree(data_dir, ignore_errors=True)
        finally:
            _restore_signals(handled)


def _summary_ratios(phases: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    ratios: dict[str, Any] = {}
    for phase in phases:
        if "ratio_per_process_cpu_second" in phase:
            name = phase["name"]
            ratios[f"{name} checked/unchecked, per process CPU-s"] = phase[
                "ratio_per_process_cpu_second"
            ]
            ratios[f"{name} checked/unchecked, per wall s"] = phase["ratio_per_wall_second"]
            ratios[f"{name} checked/unchecked, incl. nats-server/postgres CPU"] = phase[
                "ratio_with_servers"
            ]
        elif phase["name"] == "transport":
            for name in ("read", "search"):
                compared = phase[name]
                ratios[f"transport {name} checked/unchecked, {phase['headline']}"] = compared[
                    "headline_ratio"
                ]
                ratios[f"transport {name} checked/unchecked, per process CPU-s"] = compared[
                    "ratio_per_process_cpu_second"
                ]
                ratios[f"transport {name} checked/unchecked, per wall s"] = compared[
                    "ratio_per_wall_second"
                ]
    return ratios


def run(options: ConsentOptions) -> tuple[dict[str, Any], Path | None]:
    """Run every phase; return the result and the JSON file it was written to. Ctrl-C and
    SIGTERM raise KeyboardInterrupt after the cleanup."""
    started = timestamp()
    result: dict[str, Any] = {
        "benchmark": "consent",
        "timestamp": started,
        "parameters": options.as_dict(),
        "machine": machine_info(),
        "phases": [],
    }
    try:
        asyncio.run(_run(options, result))
    except asyncio.CancelledError:  # SIGINT or SIGTERM, after the cleanup
        raise KeyboardInterrupt from None
    result["ratios"] = _summary_ratios(result["phases"])
    path = None
    if options.out_dir is not None:
        path = write_json(result, options.out_dir, f"consent-{options.database}-{started}.json")
    return result, path


# -- the printed summary ------------------------------------------------------------------------


def format_consent_report(result: Mapping[str, Any]) -> str:
    """The printed summary of a ``consent`` result (every number is also in the JSON)."""
    params, machine = result["parameters"], result["machine"]
    population = result.get("population", {})
    out = [
        f"barnebro consent benchmark — database {params['database']},"
        f" {population.get('patients')} patients ({population.get('grants')} grants),"
        f" {params['concurrency']} concurrent tasks, nproc {machine['nproc']},"
        f" Python {machine['python']}",
        "All rates are per CPU-second of this process unless marked wall.",
        "",
    ]
    local_rows: list[list[object]] = []
    compared = []
    for phase in result["phases"]:
        if phase["name"] == "decide":
            local_rows.append(
                [
                    "decide (per decision)",
                    phase["decisions"],
                    phase["cpu_s"],
                    phase["per_cpu_second"],
                    phase["cpu_us_per_decision"],
                ]
            )
        elif phase["name"] == "visibility":
            local_rows.append(
                [
                    f"visibility ({phase['states_found']} states = "
                    f"{phase['share_of_patients']:.1%} of patients)",
                    phase["filters"],
                    phase["cpu_s"],
                    phase["per_cpu_second"],
                    phase["cpu_us_per_filter"],
                ]
            )
        elif "checked" in phase:
            compared.append(phase)
    if population.get("view_apply_per_cpu_second"):
        local_rows.append(
            [
                "view.apply (seeding the view)",
                population["patients"],
                population["view_apply_cpu_s"],
                population["view_apply_per_cpu_second"],
                round(population["view_apply_cpu_s"] * 1e6 / population["patients"], 3),
            ]
        )
    if local_rows:
        out.append(
            text_table(["local evaluation", "calls", "CPU s", "per CPU-s", "CPU µs"], local_rows)
        )
    for phase in result["phases"]:
        if phase["name"] == "decide":
            mix = ", ".join(f"{k} {v}%" for k, v in phase["basis_mix_percent"].items())
            out.append(f"decision bases: {mix}")
    if compared:
        rows: list[list[object]] = []
        for phase in compared:
            for variant in ("unchecked", "checked"):
                s = phase[variant]
                rows.append(
                    [
                        f"{phase['name']} {variant}",
                        s["requests"],
                        s["errors"],
                        s["process_cpu_s"],
                        s["per_process_cpu_second"],
                        s["per_wall_second"],
                        s["p50_ms"],
                        s["p99_ms"],
                    ]
                )
        out += [
            "",
            f"checked vs unchecked, in-process FhirRouter.handle, {params['windows']}"
            f" interleaved windows of {params['window_seconds']:g} s",
        ]
        out.append(
            text_table(
                ["", "requests", "errors", "CPU s", "per CPU-s", "per wall s", "p50 ms", "p99 ms"],
                rows,
            )
        )
        out.append("")
        for phase in compared:
            verdict = "met" if phase["aim_met"] else "NOT met"
            with_servers = phase["ratio_with_servers"]
            per_cpu = _ratio(phase["ratio_per_process_cpu_second"])
            out.append(
                f"{phase['name']}: checked/unchecked {per_cpu}"
                f" per CPU-s (aim ≥ {phase['aim']:.2f}: {verdict});"
                f" pairs {_ratio(phase['pair_ratio_min'])}–{_ratio(phase['pair_ratio_max'])}"
                f" (median {_ratio(phase['pair_ratio_median'])});"
                f" wall {_ratio(phase['ratio_per_wall_second'])}"
                + (
                    f"; incl. nats-server/postgres CPU {_ratio(with_servers)}"
                    if with_servers is not None
                    else ""
                )
            )
            out.append(
                f"  audit records written {phase['audit_records_written']}"
                f" in {phase['audit_messages_written']} messages"
                f" for {phase['checked_requests']} checked requests"
            )
            for sample in phase["error_samples"]:
                out.append(f"  error: {sample}")
    for phase in result["phases"]:
        if phase["name"] == "checked-parts":
            out += ["", "where the extra CPU of a checked request goes (each part measured alone)"]
            rows = [
                [part["part"], part["calls"], part["per_cpu_second"], part["cpu_us_each"]]
                for part in phase["parts"]
            ]
            out.append(text_table(["part", "calls", "per CPU-s", "CPU µs each"], rows))
            for name in ("read", "search"):
                info = phase[name]
                out.append(
                    f"{name}: unchecked {table_cell(info['unchecked_cpu_us'])} CPU µs, checked"
                    f" overhead {table_cell(info['overhead_cpu_us'])} CPU µs, its parts measured"
                    f" alone {table_cell(info['parts_cpu_us'])} CPU µs"
                )
    for phase in result["phases"]:
        if phase["name"] == "transport":
            out += _transport_report(phase, params)
        elif phase["name"] == "withdrawal":
            out += _withdrawal_report(phase)
    cleanup = result.get("cleanup", {})
    schemas = cleanup.get("dropped_schemas", [])
    out.append(
        f"\ncleanup: streams {', '.join(cleanup.get('deleted_streams', [])) or '-'};"
        f" buckets {', '.join(cleanup.get('deleted_buckets', [])) or '-'}"
        + (f"; schemas {', '.join(schemas)}" if schemas else "")
    )
    for problem in cleanup.get("problems", []):
        out.append(f"  cleanup problem: {problem}")
    return "\n".join(out)


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _transport_report(phase: Mapping[str, Any], params: Mapping[str, Any]) -> list[str]:
    rows: list[list[object]] = []
    for name in ("read", "search"):
        for variant in VARIANTS:
            s = phase[name][variant]
            rows.append(
                [
                    f"{name} {variant}",
                    s["requests"],
                    s["errors"],
                    s["process_cpu_s"],
                    s["servers_cpu_s"].get(NATS_PROGRAM, "-"),
                    s["per_process_cpu_second"],
                    s["per_cpu_second_with_nats"] or "-",
                    s["per_wall_second"],
                    s["p50_ms"],
                    s["p99_ms"],
                ]
            )
    out = [
        "",
        "checked vs unchecked over NATS request/reply (Forwarder → nats-server → ServiceHost →"
        f" FhirService; no gateway/HTTP), {params['windows']} interleaved windows of"
        f" {params['window_seconds']:g} s; CPU counted: {phase['cpu_counted']}",
        text_table(
            [
                "",
                "requests",
                "errors",
                "CPU s",
                "nats CPU s",
                "per CPU-s",
                "per CPU-s +nats",
                "per wall s",
                "p50 ms",
                "p99 ms",
            ],
            rows,
        ),
        "",
    ]
    for name in ("read", "search"):
        c = phase[name]
        verdict = "met" if c["aim_met"] else "NOT met"
        out.append(
            f"transport {name}: checked/unchecked {_ratio(c['headline_ratio'])}"
            f" {phase['headline']} (aim ≥ {c['aim']:.2f}: {verdict});"
            f" process only {_ratio(c['ratio_per_process_cpu_second'])};"
            f" pairs {_ratio(c['pair_ratio_min'])}–{_ratio(c['pair_ratio_max'])}"
            f" (median {_ratio(c['pair_ratio_median'])}); wall {_ratio(c['ratio_per_wall_second'])}"
        )
        out.append(
            f"  audit records written {c['audit_records_written']} in"
            f" {c['audit_messages_written']} messages for {c['checked_requests']} checked requests"
        )
        for sample in c["error_samples"]:
            out.append(f"  error: {sample}")
    for problem in phase["problems"]:
        out.append(f"  problem: {problem}")
    return out


def _withdrawal_report(phase: Mapping[str, Any]) -> list[str]:
    relay = phase["outbox_relay"]

    def spread(values: Mapping[str, float]) -> str:
        return (
            f"p50 {values['p50_ms']:.1f} ms, p99 {values['p99_ms']:.1f} ms,"
            f" max {values['max_ms']:.1f} ms"
        )

    verdict = "met" if phase["aim_met"] else "NOT met"
    out = [
        "",
        f"withdrawal → every consent view: {phase['withdrawals']} withdrawals,"
        f" {len(phase['views'])} views ({', '.join(phase['views'])}); outbox relay poll"
        f" {relay['poll_interval_s']:g} s, linger {relay['linger_s'] * 1000:g} ms",
        f"  request sent → last view: {spread(phase['to_last_view'])}"
        f" (aim < {phase['aim_s'] * 1000:.0f} ms: {verdict};"
        f" {phase['within_aim']}/{phase['withdrawals']} within)",
        f"  reply (committed) → last view: {spread(phase['reply_to_last_view'])}",
        f"  request sent → first view: {spread(phase['to_first_view'])}",
        f"  the withdrawal request itself: {spread(phase['withdrawal_request'])}",
        f"  a new consent's grant, reply → last view: {spread(phase['grant_reply_to_last_view'])}",
    ]
    for problem in phase["problems"]:
        out.append(f"  problem: {problem}")
    return out
