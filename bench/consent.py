"""The consent benchmark: what the consent step costs, measured in one run.

Why it exists: every service that holds information about a child decides, per resource
and per search, whether the caller may see it (`shared.access.decision`), and writes an
audit record to JetStream before anything leaves (`shared.access.guard`,
`shared.access.audit`). The project's aim is that a checked read costs at most about 10 %
more than an unchecked one (checked/unchecked ≥ 0.90). This module measures that, and the
local decision functions underneath, on the shared 2-core development machine — so every
number is a rate per CPU-second of this process or a ratio between two things measured
side by side, never an absolute wall-clock claim.

The phases (``PHASES``; each returns one entry of the JSON result's ``phases`` list, so a
later phase — e.g. the propagation of a withdrawal — is one more function appended there):

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

Everything it creates — the SQLite file or PostgreSQL schema, the NATS streams and the
consent-view bucket under a unique prefix ``bench<random>`` — is removed at the end, also
after an error, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
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

import asyncpg
import nats
import orjson
from nats.aio.client import Client as NATS
from nats.js.errors import NotFoundError

from bench.cpu import CLOCK_TICKS, program_ticks
from bench.crud import DEFAULT_DATABASE_URL, RESULTS_DIR, Identifiers, with_application_name
from bench.report import (
    _cell,
    _table,
    machine_info,
    per_cpu_second,
    percentile,
    ratio,
    timestamp,
    write_json,
)
from shared.access.audit import AuditPublisher, AuditRecord
from shared.access.decision import (
    AccessContext,
    ResourceFacts,
    actor_keys,
    decide,
    today,
    visibility,
)
from shared.access.guard import AccessGuard
from shared.access.state import Grant, HiddenFromParents, PatientAccessState
from shared.access.view import ConsentView
from shared.codes import DataCategory, OrganisationKind
from shared.config import Settings
from shared.fhir.definitions import ResourceDefinition
from shared.fhir.errors import FhirError
from shared.fhir.interactions import FhirService
from shared.fhir.search_params import ParamType, SearchParam
from shared.fhir.search_query import parse_search
from shared.identifiers import ORGNR_SYSTEM
from shared.store.access_sql import AccessFilter
from shared.store.database import Database, open_database
from shared.store.resource_store import SearchPage
from shared.store.schema import create_schema
from shared.transport.nats_connection import ensure_event_stream
from shared.transport.wire import Caller, FhirRequest

DatabaseKind = Literal["sqlite", "postgresql"]
DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
SERVICE = "bench"
"""The service name of both FhirServices (and of the audit subjects)."""
BASE_URL = "http://bench/fhir"
AIM = 0.90
"""The project's aim: a checked read does at least 90 % of the unchecked reads per CPU-s."""

AUTHOR_ORG = "974760673"
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

    def __post_init__(self) -> None:
        if self.windows < 2 or self.windows % 2:
            raise ValueError("windows must be an even number of at least 2")
        if self.patients < 1 or self.documents < TARGET_DOCUMENTS or self.concurrency < 1:
            raise ValueError(
                f"at least 1 patient, {TARGET_DOCUMENTS} documents and 1 concurrent task"
            )

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
    unchecked: FhirService
    checked: FhirService
    target_documents: list[str] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)
    """The results of the phases run so far (the result's ``phases``)."""
    interrupt: Interrupt = field(default_factory=Interrupt)

    def caller(self, orgnr: str | None = None, kind: str | None = None) -> Caller:
        """The reading organisation (or another one) as an authenticated caller."""
        return Caller(
            orgnr=orgnr or self.population.recipient, org_kind=kind or RECIPIENT_KIND, scopes=SCOPES
        )

    async def audit_messages(self) -> int:
        info = await self.nc.jetstream().stream_info(self.settings.audit_stream_name)
        return int(info.state.messages)


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
                caller = Caller(orgnr=rng.choice(population.unrelated), org_kind=grant.kinds[0])
            else:
                caller = Caller(orgnr=rng.choice(grant.orgs), org_kind=AUTHOR_KIND)
        elif actor == "unrelated":
            caller = Caller(orgnr=rng.choice(population.unrelated), org_kind=RECIPIENT_KIND)
        elif actor == "parent":
            caller = Caller(fhir_user=rng.choice(state.parents))
            if state.hidden_from_parents and rng.random() < 0.5:
                author = state.hidden_from_parents[0].orgs[0]
                category = CATEGORY
        else:
            caller = Caller(orgnr=author, org_kind=AUTHOR_KIND)
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
    service: FhirService,
    request: FhirRequest,
    *,
    variant: str,
    concurrency: int,
    seconds: float,
    programs: Sequence[str],
    error_samples: list[str],
    interrupt: Interrupt | None = None,
) -> WindowStats:
    """`concurrency` tasks send `request` to `service` until `seconds` have passed. CPU and
    wall time are taken before the tasks start and after the last one ended, so every
    request counted is inside the interval measured."""
    latencies: list[float] = []
    errors = 0

    async def client() -> None:
        nonlocal errors
        while time.perf_counter() < deadline and not (interrupt and interrupt.requested):
            sent = time.perf_counter()
            try:
                response = await service.handle(request, b"")
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


async def compare(bench: ConsentBench, name: str, request: FhirRequest) -> dict[str, Any]:
    """The same request through the unchecked and the checked service, interleaved."""
    options = bench.options
    services = {"unchecked": bench.unchecked, "checked": bench.checked}
    programs = [p for p in SERVER_PROGRAMS if p != "postgres" or options.database == "postgresql"]
    error_samples: list[str] = []
    audit_before = await bench.audit_messages()
    checked_requests = 0
    for variant in ("unchecked", "checked"):  # unmeasured warm-up
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
    audit_records = await bench.audit_messages() - audit_before
    summaries = {
        variant: _variant_summary([w for w in windows if w.variant == variant])
        for variant in ("unchecked", "checked")
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
    known = sorted(r for r in pair_ratios if r is not None)
    return {
        "name": name,
        "what": f"FhirService.handle({request.interaction} {request.resource_type}"
        f"{'/' + request.id if request.id else ''}"
        f"{'?' + '&'.join(f'{k}={v}' for k, v in request.params) if request.params else ''})"
        f" by organisation {request.caller.orgnr} ({request.caller.org_kind}),"
        " permitted by consent",
        "unchecked": unchecked,
        "checked": checked,
        "ratio_per_process_cpu_second": per_cpu,
        "ratio_per_wall_second": ratio(
            checked["per_wall_second"] or 0, unchecked["per_wall_second"] or 0
        ),
        "ratio_with_servers": with_servers,
        "pair_ratios": pair_ratios,
        "pair_ratio_min": known[0] if known else None,
        "pair_ratio_median": known[len(known) // 2] if known else None,
        "pair_ratio_max": known[-1] if known else None,
        "aim": AIM,
        "aim_met": per_cpu is not None and per_cpu >= AIM,
        "checked_requests": checked_requests,
        "audit_records_written": audit_records,
        "windows": [w.as_dict() for w in windows],
        "error_samples": error_samples,
    }


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
    guard = bench.checked.guard
    assert guard is not None
    discard = _DiscardAudit()
    quiet = AccessGuard(SERVICE, bench.view, discard, guard.categories)
    resource_type = BenchDocument.resource_type

    read = _read_request(bench)
    async with bench.db.reader() as conn:
        stored = await bench.checked.store.read(conn, resource_type, read.id or "")
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
    store, db = bench.checked.store, bench.db
    query = parse_search(resource_type, search.params, bench.checked.search_params)
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


PHASES: list[Phase] = [
    measure_decisions,
    measure_visibility,
    measure_read,
    measure_search,
    measure_checked_parts,
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
            caller=Caller(orgnr=author, org_kind=AUTHOR_KIND, scopes=SCOPES),
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
        stored = await bench.checked.store.read(conn, BenchDocument.resource_type, read.id or "")
    assert stored is not None and bench.checked.guard is not None
    decision = bench.checked.guard.decide(read, stored)
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


async def _connect_nats(url: str) -> NATS:
    """A NATS client that fails fast when the server is not there (unlike the services',
    which reconnect for ever)."""
    return await nats.connect(
        url, name="barnebro-bench-consent", connect_timeout=3, max_reconnect_attempts=2
    )


async def _cleanup(
    settings: Settings,
    nc: NATS | None,
    view: ConsentView | None,
    db: Database | None,
    options: ConsentOptions,
    schema: str,
) -> dict[str, Any]:
    """Remove everything the run created, step by step (a failing step does not stop the
    others); report what was removed and what could not be."""
    done: dict[str, Any] = {"deleted_streams": [], "deleted_buckets": [], "problems": []}

    async def attempt(what: str, action: Callable[[], Awaitable[object]]) -> bool:
        try:
            await asyncio.wait_for(action(), 15)
            return True
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
        bucket = settings.consent_view_bucket
        if await attempt(f"delete bucket {bucket}", lambda: js.delete_key_value(bucket)):
            done["deleted_buckets"].append(bucket)
    if nc is not None:
        await attempt("close NATS", nc.close)
    if db is not None:
        await attempt("close the database", db.close)
    if options.database == "postgresql":

        async def drop() -> None:
            conn = await asyncpg.connect(options.database_url)
            try:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            finally:
                await conn.close()

        if await attempt(f"drop schema {schema}", drop):
            done["dropped_schema"] = schema
    return done


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
        "buckets": [settings.consent_view_bucket],
    }
    result["database"] = {"kind": options.database, "schema": schema if database_url else None}
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
            unchecked=FhirService(SERVICE, definitions, db, prefix=tag, guard=None),
            checked=FhirService(SERVICE, definitions, db, prefix=tag, guard=guard),
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
            result["cleanup"] = await _cleanup(settings, nc, view, db, options, schema)
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
            _table(["local evaluation", "calls", "CPU s", "per CPU-s", "CPU µs"], local_rows)
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
            f"checked vs unchecked, in-process FhirService.handle, {params['windows']}"
            f" interleaved windows of {params['window_seconds']:g} s",
        ]
        out.append(
            _table(
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
            out.append(_table(["part", "calls", "per CPU-s", "CPU µs each"], rows))
            for name in ("read", "search"):
                info = phase[name]
                out.append(
                    f"{name}: unchecked {_cell(info['unchecked_cpu_us'])} CPU µs, checked"
                    f" overhead {_cell(info['overhead_cpu_us'])} CPU µs, its parts measured"
                    f" alone {_cell(info['parts_cpu_us'])} CPU µs"
                )
    cleanup = result.get("cleanup", {})
    out.append(
        f"\ncleanup: streams {', '.join(cleanup.get('deleted_streams', [])) or '-'};"
        f" buckets {', '.join(cleanup.get('deleted_buckets', [])) or '-'}"
        + (f"; schema {cleanup['dropped_schema']}" if cleanup.get("dropped_schema") else "")
    )
    for problem in cleanup.get("problems", []):
        out.append(f"  cleanup problem: {problem}")
    return "\n".join(out)


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
