"""The referral benchmark: a henvisning submitted and carried through its lifecycle.

Why it exists: a referral is the heaviest write barnebro has. Submitting one is a FHIR
transaction (three attachments and the ServiceRequest pointing at them by ``urn:uuid``)
that the referral service checks against the directory over NATS (who refers, who
receives, which child), then stores with a server-made Task, sharing the attachments with
the receiver. Moving the Task (received → accepted → in-progress → completed) is an
optimistic-locked update that runs the state machine, and the discharge asks the directory
for the follow-up service and the child's GP. This module measures what that costs the
whole stack, per server CPU-second (the development machine has 2 shared cores, so
wall-clock rates mean little), and how latency and efficiency hold up as concurrency
grows from 16 to 64 clients.

`run` starts a local stack (``services.stack.LocalStack`` with every service of
``services.cli.SERVICES`` and its own nats-server, on PostgreSQL or SQLite, as
``bench.crud`` does), registers a GP office (fastlege), a BUP and a municipal health
service (kommune-helse) as the operator, has the GP register a pool of children (with
itself as their GP), checks one full lifecycle, then runs two phases at each client count:

* ``submit``: each client POSTs referral transactions as the GP (expects 200);
* ``lifecycle``: each client submits as the GP, then as the BUP finds the Task
  (``GET Task?focus=ServiceRequest/<id>``) and moves it through four PUTs with
  ``If-Match``: received, accepted (with a frist 30 days ahead), in-progress and
  completed (with a follow-up plan and the kommune-helse as responsible for follow-up).
  Six requests make one lifecycle.

Each phase is the measured window of ``bench.load.run_phase`` (warm-up, CPU sampled at the
edges, only what completes inside the window counted), with the CPU of the stack's
processes and PostgreSQL counted as ``bench.cpu`` does. Every failed request is counted
and the first bodies kept; the stack, its data directory (with the nats-server's streams)
and the PostgreSQL schemas are removed at the end, also after an error or Ctrl-C.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import random
import secrets
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from bench.actors import admit_all, credential_client, organisation_client
from bench.cpu import CpuMeter
from bench.crud import (
    DEFAULT_DATABASE_URL,
    RESULTS_DIR,
    CrudOptions,
    Database,
    Identifiers,
    backend_lookup,
    bench_environment,
    drop_schemas,
    phase_summary,
)
from bench.load import HttpClient, PidLookup, Recorder, Reply, Worker, http_client, run_phase
from bench.report import (
    OpStats,
    machine_info,
    per_cpu_second,
    ratio,
    table_cell,
    text_table,
    timestamp,
    write_json,
)
from services.cli import SERVICES
from services.referral.domain.vocabulary import (
    ATTACHMENT_SYSTEM,
    FRIST_EXT,
    OUTPUT_SYSTEM,
    Attachment,
    Output,
    TaskStatus,
)
from services.stack import LocalStack, free_port
from shared.codes import MUNICIPALITY_EXTENSION, ORGANISATION_KIND_SYSTEM, OrganisationKind
from shared.identifiers import FNR_SYSTEM, KOMMUNENUMMER_SYSTEM, ORGNR_SYSTEM

PHASES = ("submit", "lifecycle")
MOVES = (TaskStatus.RECEIVED, TaskStatus.ACCEPTED, TaskStatus.IN_PROGRESS, TaskStatus.COMPLETED)
"""The Task's way through a lifecycle, one PUT each (its first status is requested)."""
FIND_TASK = "find-task"
REQUEST_KINDS: dict[str, tuple[str, ...]] = {
    "submit": ("submit",),
    "lifecycle": ("submit", FIND_TASK, *(status.value for status in MOVES)),
}
"""The request kinds of each phase (operations of its ``Recorder``)."""
ATTACHMENTS = (
    Attachment.KOMMUNAL_KARTLEGGING,
    Attachment.BARNETS_STEMME,
    Attachment.SOMATISK_VURDERING,
)
"""What a complete referral to BUP carries (``domain/completeness.py``)."""
FRIST_DAYS = 30
ROUTED_TYPES = ("Organization", "Patient", "DocumentReference", "ServiceRequest", "Task")
SERVERS = {
    "gateway": "gateway",
    "directory": "directory",
    "consent": "consent",
    "referral": "referral",
    "nats-server": "nats",
}
"""Server CPU: reported name → the stack's child process name."""
SETUP_CONCURRENCY = 16
MUNICIPALITY = "0301"


@dataclass(frozen=True)
class ReferralOptions:
    clients: tuple[int, ...] = (16, 64)
    """Concurrent clients; every phase runs once at each count, in this order."""
    seconds: float = 15.0
    warmup: float = 3.0
    """Unmeasured seconds before each phase's window."""
    patients: int = 500
    """Children registered with the GP; each referral is about a random one."""
    database: Database = "postgresql"
    database_url: str = DEFAULT_DATABASE_URL
    out_dir: Path | None = field(default=RESULTS_DIR)
    seed: int | None = None

    def __post_init__(self) -> None:
        if not self.clients or min(self.clients) < 1:
            raise ValueError("at least one client count, each at least 1")
        if self.patients < 1 or self.seconds <= 0:
            raise ValueError("at least 1 patient and a positive number of seconds")

    def as_dict(self) -> dict[str, Any]:
        return {
            "clients": list(self.clients),
            "seconds": self.seconds,
            "warmup_seconds": self.warmup,
            "patients": self.patients,
            "database": self.database,
            "database_url": self.database_url if self.database == "postgresql" else None,
            "seed": self.seed,
        }


# -- the resources ----------------------------------------------------------------------------


def org_reference(orgnr: str) -> dict[str, Any]:
    return {"type": "Organization", "identifier": {"system": ORGNR_SYSTEM, "value": orgnr}}


def organisation(orgnr: str, kind: OrganisationKind) -> dict[str, Any]:
    """A directory Organization of `kind` in Oslo (the municipality extension is required)."""
    municipality = {
        "url": MUNICIPALITY_EXTENSION,
        "valueCoding": {"system": KOMMUNENUMMER_SYSTEM, "code": MUNICIPALITY},
    }
    return {
        "resourceType": "Organization",
        "identifier": [{"system": ORGNR_SYSTEM, "value": orgnr}],
        "active": True,
        "type": [{"coding": [{"system": ORGANISATION_KIND_SYSTEM, "code": kind.value}]}],
        "name": f"{kind.value} benk {orgnr}",
        "address": [{"extension": [municipality], "city": "Oslo"}],
    }


def patient(fnr: str, gp_id: str) -> dict[str, Any]:
    """A child with a synthetic fødselsnummer whose GP is the Organization `gp_id`."""
    return {
        "resourceType": "Patient",
        "identifier": [{"system": FNR_SYSTEM, "value": fnr}],
        "active": True,
        "name": [{"family": "Nordmann", "given": ["Ola"]}],
        "generalPractitioner": [{"reference": f"Organization/{gp_id}"}],
    }


_NOTES = {
    Attachment.KOMMUNAL_KARTLEGGING: "Kartlegging i kommunen: samtaler med helsesykepleier og"
    " kommunepsykolog over tre måneder, tiltak i skolen prøvd uten bedring.",
    Attachment.BARNETS_STEMME: "Barnet forteller selv at det er redd for å gå på skolen og"
    " sover dårlig; ønsker hjelp til å få det bedre hjemme og på skolen.",
    Attachment.SOMATISK_VURDERING: "Somatisk undersøkt hos fastlege: normal vekst, ingen"
    " funn ved blodprøver; søvnvansker uten kjent somatisk årsak.",
}


def attachment(fnr: str, kind: Attachment) -> dict[str, Any]:
    """A referral attachment of `kind` about the child `fnr`, its text inline."""
    text = _NOTES[kind]
    return {
        "resourceType": "DocumentReference",
        "status": "current",
        "type": {"coding": [{"system": ATTACHMENT_SYSTEM, "code": kind.value}]},
        "subject": {"identifier": {"system": FNR_SYSTEM, "value": fnr}},
        "description": text,
        "content": [
            {
                "attachment": {
                    "contentType": "text/plain",
                    "data": base64.b64encode(text.encode()).decode(),
                    "title": kind.value,
                }
            }
        ],
    }


def referral_bundle(fnr: str, gp: str, bup: str) -> dict[str, Any]:
    """A transaction: the three attachments and the ServiceRequest that points to them."""
    entries = [
        {
            "fullUrl": f"urn:uuid:{uuid.uuid4()}",
            "resource": attachment(fnr, kind),
            "request": {"method": "POST", "url": "DocumentReference"},
        }
        for kind in ATTACHMENTS
    ]
    service_request = {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "priority": "routine",
        "subject": {"identifier": {"system": FNR_SYSTEM, "value": fnr}},
        "requester": org_reference(gp),
        "performer": [org_reference(bup)],
        "reasonCode": [{"text": "Angst og skolevegring over tid"}],
        "supportingInfo": [{"reference": entry["fullUrl"]} for entry in entries],
    }
    entries.append(
        {
            "fullUrl": f"urn:uuid:{uuid.uuid4()}",
            "resource": service_request,
            "request": {"method": "POST", "url": "ServiceRequest"},
        }
    )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _output(kind: Output, value: Mapping[str, Any]) -> dict[str, Any]:
    return {"type": {"coding": [{"system": OUTPUT_SYSTEM, "code": kind.value}]}, **value}


def moved(task: Mapping[str, Any], status: TaskStatus, follow_up: str) -> dict[str, Any]:
    """`task` moved to `status` with what that change must carry; the server derives the
    businessStatus (step) and its dates."""
    changed = {k: v for k, v in task.items() if k != "businessStatus"}
    changed["status"] = status.value
    if status is TaskStatus.ACCEPTED:
        frist = (date.today() + timedelta(days=FRIST_DAYS)).isoformat()
        kept = [e for e in task.get("extension") or [] if e.get("url") != FRIST_EXT]
        changed["extension"] = [*kept, {"url": FRIST_EXT, "valueDate": frist}]
    if status is TaskStatus.COMPLETED:
        changed["output"] = [
            _output(Output.OPPFOLGINGSPLAN, {"valueString": "Kommunepsykolog hver 14. dag"}),
            _output(Output.ANSVARLIG_OPPFOLGING, {"valueReference": org_reference(follow_up)}),
        ]
    return changed


# -- reading the answers ----------------------------------------------------------------------


def _json(reply: Reply) -> dict[str, Any] | None:
    try:
        data = orjson.loads(reply.body)
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def submitted_referral(reply: Reply) -> dict[str, Any] | None:
    """The ServiceRequest (with its id) in a transaction-response, or None."""
    for entry in (_json(reply) or {}).get("entry") or []:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(resource, dict) and resource.get("resourceType") == "ServiceRequest":
            return resource if isinstance(resource.get("id"), str) else None
    return None


def only_task(reply: Reply) -> dict[str, Any] | None:
    """The one Task a search by focus found, or None if it found none or several."""
    found = [
        entry["resource"]
        for entry in (_json(reply) or {}).get("entry") or []
        if isinstance(entry, dict)
        and (entry.get("search") or {}).get("mode", "match") == "match"
        and (entry.get("resource") or {}).get("resourceType") == "Task"
    ]
    return found[0] if len(found) == 1 else None


def task_in(status: TaskStatus) -> Callable[[Reply], dict[str, Any] | None]:
    """A check that an update returned the Task, now in `status`."""

    def check(reply: Reply) -> dict[str, Any] | None:
        task = _json(reply)
        if task is None or task.get("resourceType") != "Task" or task.get("status") != status:
            return None
        return task

    return check


def etag(resource: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> str:
    """The version to name in If-Match: the ETag header, else ``W/"<meta.versionId>"``."""
    for name, value in (headers or {}).items():
        if name.lower() == "etag":
            return value
    return f'W/"{(resource.get("meta") or {}).get("versionId", "")}"'


# -- the clients ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Parties:
    gp: str
    bup: str
    kommune: str
    gp_id: str
    """The GP office's Organization id (the children's generalPractitioner)."""


@dataclass(frozen=True)
class ReferralWorld:
    gp: HttpClient
    """The GP office's client (refers)."""
    bup: HttpClient
    """The BUP's client (finds and moves the Task)."""
    parties: Parties
    children: list[str]
    """The children's fødselsnummer."""


def with_header(client: HttpClient, name: str, value: str) -> HttpClient:
    """`client` (same session and token) sending one more header on writes."""
    conditional = copy.copy(client)
    conditional.write_headers = {**client.write_headers, name: value}
    return conditional


async def bench_request(
    client: HttpClient,
    recorder: Recorder,
    op: str,
    method: str,
    path: str,
    body: Mapping[str, Any] | None,
    expect: Callable[[Reply], dict[str, Any] | None],
) -> tuple[dict[str, Any], Reply] | None:
    """One request; recorded as a success only if it is 2xx and `expect` finds what it
    should return, else as an error with its body."""
    reply = await client.call(method, path, None if body is None else orjson.dumps(body))
    found = expect(reply) if reply.ok else None
    if found is None:
        why = reply.body if not reply.ok else b"unexpected answer: " + reply.body
        recorder.failure(op, method, path, reply.status, why)
        return None
    recorder.success(op, reply.latency)
    return found, reply


async def submit(world: ReferralWorld, fnr: str, recorder: Recorder) -> dict[str, Any] | None:
    """POST one referral transaction as the GP; the stored ServiceRequest, or None."""
    bundle = referral_bundle(fnr, world.parties.gp, world.parties.bup)
    done = await bench_request(world.gp, recorder, "submit", "POST", "", bundle, submitted_referral)
    return None if done is None else done[0]


async def lifecycle(world: ReferralWorld, fnr: str, recorder: Recorder) -> dict[str, Any] | None:
    """Submit, find the Task as the BUP and move it to completed; the final Task, or None
    at the first request that failed."""
    referral = await submit(world, fnr, recorder)
    if referral is None:
        return None
    path = f"/Task?focus=ServiceRequest/{referral['id']}"
    done = await bench_request(world.bup, recorder, FIND_TASK, "GET", path, None, only_task)
    if done is None:
        return None
    task, version = done[0], etag(done[0])
    for status in MOVES:
        client = with_header(world.bup, "If-Match", version)
        body = moved(task, status, world.parties.kommune)
        path = f"/Task/{task['id']}"
        done = await bench_request(
            client, recorder, status.value, "PUT", path, body, task_in(status)
        )
        if done is None:
            return None
        task, version = done[0], etag(done[0], done[1].headers)
    return task


def submit_worker(
    world: ReferralWorld, recorder: Recorder, lifecycles: OpStats, rng: random.Random
) -> Worker:
    """Submits referrals (`lifecycles` is unused: every worker takes the same arguments)."""

    async def run(stop: asyncio.Event) -> None:
        while not stop.is_set():
            await submit(world, rng.choice(world.children), recorder)

    return run


def lifecycle_worker(
    world: ReferralWorld, recorder: Recorder, lifecycles: OpStats, rng: random.Random
) -> Worker:
    """Runs lifecycles; one that ends (completed or failed) inside the window is counted
    in `lifecycles`: its latency, or as an error."""

    async def run(stop: asyncio.Event) -> None:
        while not stop.is_set():
            started = time.perf_counter()
            task = await lifecycle(world, rng.choice(world.children), recorder)
            if not recorder.measuring:
                continue
            if task is None:
                lifecycles.errors += 1
            else:
                lifecycles.latencies.append(time.perf_counter() - started)

    return run


WORKERS = {"submit": submit_worker, "lifecycle": lifecycle_worker}


# -- setting up the world ---------------------------------------------------------------------


async def _create(client: HttpClient, resource: Mapping[str, Any]) -> str:
    path = f"/{resource['resourceType']}"
    reply = await client.call("POST", path, orjson.dumps(resource))
    created = _json(reply) if reply.ok else None
    if created is None or not isinstance(created.get("id"), str):
        raise RuntimeError(f"setup: POST {path} -> {reply.status}: {reply.body[:800]!r}")
    return str(created["id"])


async def wait_until_routed(
    client: HttpClient, types: Sequence[str] = ROUTED_TYPES, limit: float = 60.0
) -> float:
    """Wait until the gateway routes every type in `types` for `client`; the seconds
    waited.

    The gateway learns which service owns a type from the registry, which each service
    fills when it is up; until then a request gets 404 "not supported"."""
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


async def populate(
    stack: RunningStack, base: HttpClient, ids: Identifiers, children: int
) -> tuple[Parties, list[str], float]:
    """The three organisations, registered by the operator, and `children` children
    registered by the GP office with itself as their GP; also the seconds waited for the
    gateway to route the types the benchmark uses."""
    operator = stack.operator(base)
    waited = await wait_until_routed(operator, ("Organization",))
    gp, bup, kommune = ids.orgnr(), ids.orgnr(), ids.orgnr()
    gp_id, _, _ = await admit_all(
        operator,
        [
            organisation(gp, OrganisationKind.FASTLEGE),
            organisation(bup, OrganisationKind.BUP),
            organisation(kommune, OrganisationKind.KOMMUNE_HELSE),
        ],
    )
    registrar = stack.client(base, gp)
    waited += await wait_until_routed(registrar)
    fnrs = [ids.fnr() for _ in range(children)]
    gate = asyncio.Semaphore(SETUP_CONCURRENCY)

    async def register(fnr: str) -> None:
        async with gate:
            await _create(registrar, patient(fnr, gp_id))

    await asyncio.gather(*(register(fnr) for fnr in fnrs))
    return Parties(gp, bup, kommune, gp_id), fnrs, waited


async def sanity(world: ReferralWorld) -> dict[str, Any]:
    """One lifecycle before anything is measured: it must complete as the rules say."""
    recorder = Recorder(measuring=True)
    task = await lifecycle(world, world.children[0], recorder)
    if task is None:
        samples = [s.as_dict() for s in recorder.samples]
        raise RuntimeError(f"a referral lifecycle fails before the measurement: {samples}")
    step = ((task.get("businessStatus") or {}).get("coding") or [{}])[0].get("code")
    if step != "utskrevet":
        raise RuntimeError(f"the completed Task's businessStatus is {step!r}, not utskrevet")
    return {
        "requests": recorder.successes,
        "task_status": task["status"],
        "business_status": step,
        "version": (task.get("meta") or {}).get("versionId"),
    }


# -- the phases -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measurement:
    """What every phase is measured with."""

    world: ReferralWorld
    meter: CpuMeter
    backends: PidLookup | None
    options: ReferralOptions


async def measure_phase(name: str, clients: int, m: Measurement) -> dict[str, Any]:
    recorder, lifecycles = Recorder(), OpStats()
    seed = m.options.seed or 0
    workers = [
        WORKERS[name](m.world, recorder, lifecycles, random.Random(f"{seed}-{name}-{clients}-{i}"))
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
    summary.update(phase_summary(recorder, window, REQUEST_KINDS[name]))
    headline = recorder.ops["submit"] if name == "submit" else lifecycles
    summary["headline"] = {
        "operation": name,
        **headline.summary(window.seconds),
        "per_server_cpu_second": per_cpu_second(len(headline.latencies), window.usage.server),
    }
    summary["error_samples"] = [s.as_dict() for s in recorder.samples]
    return summary


def scaling_ratios(phases: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
    """Each phase at every client count against the same phase at the first count."""
    first: dict[str, Mapping[str, Any]] = {}
    ratios: dict[str, float | None] = {}
    for phase in phases:
        name, clients, headline = phase["name"], phase["clients"], phase["headline"]
        base = first.setdefault(name, phase)
        if base is phase:
            continue
        label = f"{name} {clients} vs {base['clients']} clients"
        ratios[f"{label}, per server CPU-s"] = ratio(
            headline["per_server_cpu_second"] or 0.0,
            base["headline"]["per_server_cpu_second"] or 0.0,
        )
        ratios[f"{label}, per wall s"] = ratio(
            headline["per_second"], base["headline"]["per_second"]
        )
    return ratios


@dataclass(frozen=True)
class RunningStack:
    """Where the started stack answers, its processes and this run's tag."""

    base_url: str
    data_dir: Path
    pids: Mapping[str, int]
    tag: str
    """``bench<random>``: the schema prefix and the PostgreSQL application_name."""

    def client(self, base: HttpClient, orgnr: str) -> HttpClient:
        """A client on `base`'s session with a token of the organisation `orgnr` (which
        names no kind: the operator's register states it)."""
        return organisation_client(base, self.data_dir, orgnr)

    def operator(self, base: HttpClient) -> HttpClient:
        """A client on `base`'s session with the operator's credential (registers
        organisations)."""
        return credential_client(base, self.data_dir, "operator")


async def _measure(options: ReferralOptions, stack: RunningStack) -> dict[str, Any]:
    """Set up the world, check one lifecycle, run every phase at every client count."""
    monitor = None
    if options.database == "postgresql":
        monitor = await asyncpg.connect(options.database_url)
    try:
        meter = CpuMeter(
            {name: stack.pids[child] for name, child in SERVERS.items()},
            programs=["postgres"] if options.database == "postgresql" else [],
        )
        ids = Identifiers(options.seed if options.seed is not None else secrets.randbits(32))
        async with http_client(stack.base_url, "", max(options.clients)) as base:
            parties, children, waited = await populate(stack, base, ids, options.patients)
            world = ReferralWorld(
                gp=stack.client(base, parties.gp),
                bup=stack.client(base, parties.bup),
                parties=parties,
                children=children,
            )
            checked = await sanity(world)
            backends = backend_lookup(monitor, stack.tag) if monitor is not None else None
            measurement = Measurement(world, meter, backends, options)
            phases = []
            for clients in options.clients:
                for name in PHASES:
                    print(f"phase {name}, {clients} clients …", flush=True)
                    phases.append(await measure_phase(name, clients, measurement))
    finally:
        if monitor is not None:
            await monitor.close()
    organisations = {"fastlege": parties.gp, "bup": parties.bup, "kommune-helse": parties.kommune}
    return {
        "setup": {
            "waited_for_routing_s": round(waited, 3),
            "organisations": organisations,
            "patients": len(children),
            "sanity": checked,
        },
        "phases": phases,
    }


# -- the run ----------------------------------------------------------------------------------


def run(options: ReferralOptions) -> tuple[dict[str, Any], Path | None]:
    """Run the whole benchmark; return the result and the JSON file it was written to.
    Ctrl-C raises KeyboardInterrupt after the cleanup."""
    result, data_dir, tag = new_result("referral", options.as_dict(), SERVICES, options.database)
    started = result["timestamp"]
    try:
        # bench.crud's environment: its own nats-server, this run's schemas, local tokens.
        environment = CrudOptions(database=options.database, database_url=options.database_url)
        with bench_environment(environment, tag):
            _run_stack(options, result, data_dir, tag)
    finally:
        result["cleanup"] = stack_cleanup(options.database, options.database_url, data_dir, tag)
    name = f"referral-{options.database}-{started}.json"
    return result, finish_result(result, options.out_dir, name)


def _run_stack(options: ReferralOptions, result: dict[str, Any], data_dir: Path, tag: str) -> None:
    port = free_port()
    stack = LocalStack(data_dir, port, SERVICES)
    print(f"starting the stack ({options.database}) in {data_dir} …", flush=True)
    try:
        stack.start()
        pids = {name: process.pid for name, process in stack.children}
        result["stack"]["pids"] = pids
        print(
            f"{options.patients} children, clients {', '.join(map(str, options.clients))}:"
            f" {options.warmup:g} s warm-up + {options.seconds:g} s per phase …",
            flush=True,
        )
        running = RunningStack(f"http://127.0.0.1:{port}/fhir", data_dir, pids, tag)
        result.update(asyncio.run(_measure(options, running)))
    finally:
        stack.stop()


def new_result(
    benchmark: str, parameters: dict[str, Any], services: Sequence[str], database: str
) -> tuple[dict[str, Any], Path, str]:
    """A result that says what runs where (benchmark, time, parameters, machine, stack),
    the run's data directory, and the tag of its database schemas."""
    tag = f"bench{secrets.token_hex(4)}"
    data_dir = Path(tempfile.mkdtemp(prefix="barnebro-bench-"))
    result: dict[str, Any] = {
        "benchmark": benchmark,
        "timestamp": timestamp(),
        "parameters": parameters,
        "machine": machine_info(),
        "stack": {
            "services": list(services),
            "data_dir": str(data_dir),
            "schema_prefix": tag if database == "postgresql" else None,
        },
    }
    return result, data_dir, tag


def finish_result(result: dict[str, Any], out_dir: Path | None, name: str) -> Path | None:
    """Add the scaling ratios and error totals of the phases to a result and write it as
    JSON to `out_dir` (if given); returns the file."""
    phases = result.get("phases", [])
    result["ratios"] = scaling_ratios(phases)
    result["errors_total"] = sum(p["errors"] for p in phases)
    result["errors_outside_windows"] = sum(p["errors_outside_window"] for p in phases)
    return write_json(result, out_dir, name) if out_dir is not None else None


def stack_cleanup(database: str, database_url: str, data_dir: Path, tag: str) -> dict[str, Any]:
    """Drop this run's schemas and remove the data directory (SQLite files, the
    nats-server's streams, the signing key)."""
    cleanup: dict[str, Any] = {"dropped_schemas": [], "problems": []}
    if database == "postgresql":
        try:
            cleanup["dropped_schemas"] = asyncio.run(drop_schemas(database_url, tag))
        except Exception as exc:
            cleanup["problems"].append(f"could not drop the schemas {tag}_*: {exc}")
            print(f"warning: could not drop the schemas {tag}_*: {exc}", flush=True)
    shutil.rmtree(data_dir, ignore_errors=True)
    cleanup["data_dir_removed"] = not data_dir.exists()
    return cleanup


# -- the printed summary ----------------------------------------------------------------------


def format_referral_report(result: Mapping[str, Any]) -> str:
    """The printed summary of a ``referral`` result (every number is also in the JSON)."""
    params, machine = result["parameters"], result["machine"]
    phases = result.get("phases", [])
    out = [
        f"barnebro referral benchmark — database {params['database']},"
        f" {params['patients']} children, {params['seconds']:g} s per phase after"
        f" {params['warmup_seconds']:g} s warm-up, nproc {machine['nproc']},"
        f" Python {machine['python']}",
    ]
    errors = result.get("errors_total", 0)
    if errors:
        out.append(
            f"!! {errors} FAILED REQUESTS in the measured windows: the phases with errors do"
            " not measure what they claim; see the error bodies below"
        )
    out += ["", _headline_table(phases), "", _kinds_table(phases), "", cpu_summary(phases)]
    ratios = result.get("ratios", {})
    if ratios:
        out += ["", "scaling (1.0 = as efficient as at the first client count)"]
        out += [f"  {name}: {table_cell(value)}" for name, value in ratios.items()]
    out += error_lines(phases)
    cleanup = result.get("cleanup", {})
    out.append(
        f"\ncleanup: schemas {', '.join(cleanup.get('dropped_schemas', [])) or '-'};"
        f" data directory removed: {cleanup.get('data_dir_removed')}"
    )
    out += [f"  cleanup problem: {problem}" for problem in cleanup.get("problems", [])]
    return "\n".join(out)


def _headline_table(phases: Sequence[Mapping[str, Any]]) -> str:
    rows = [
        [
            p["name"],
            p["clients"],
            p["headline"]["count"],
            p["headline"]["errors"],
            p["errors"],
            p["headline"]["per_second"],
            p["cpu"]["server_total_s"],
            p["headline"]["per_server_cpu_second"],
            p["requests_per_server_cpu_second"],
            p["headline"]["p50_ms"],
            p["headline"]["p99_ms"],
        ]
        for p in phases
    ]
    headers = ["phase", "clients", "count", "failed", "req errors", "per s",
               "server CPU s", "per CPU-s", "req/CPU-s", "p50 ms", "p99 ms"]  # fmt: skip
    return "per phase (count = submits or complete lifecycles ending in the window)\n" + text_table(
        headers, rows
    )


def _kinds_table(phases: Sequence[Mapping[str, Any]]) -> str:
    rows = [
        [f"{p['name']}: {kind}", p["clients"], s["count"], s["errors"], s["p50_ms"], s["p99_ms"]]
        for p in phases
        for kind, s in p["operations"].items()
    ]
    return "per request kind\n" + text_table(
        ["request", "clients", "count", "errors", "p50 ms", "p99 ms"], rows
    )


def cpu_summary(phases: Sequence[Mapping[str, Any]]) -> str:
    names = list(dict.fromkeys(n for p in phases for n in p["cpu"]["per_process_s"]))
    rows = []
    for p in phases:
        cpu = p["cpu"]
        rows.append(
            [
                f"{p['name']} {p['clients']}",
                *(cpu["per_process_s"].get(n) for n in names),
                cpu["server_total_s"],
                cpu["load_generator_s"],
                cpu["unattributed_s"],
                cpu["machine_steal_s"],
            ]
        )
    headers = ["CPU seconds", *names, "server", "load gen", "unattributed", "steal"]
    return (
        "CPU seconds in each window (server = the processes named; load generator and"
        " other load not counted)\n" + text_table(headers, rows)
    )


def error_lines(phases: Sequence[Mapping[str, Any]]) -> list[str]:
    out = []
    for p in phases:
        for s in p["error_samples"]:
            where = "" if s["in_measured_window"] else " (outside window)"
            out.append(
                f"  {p['name']} {p['clients']}: {s['operation']} {s['method']} {s['path']}"
                f" -> {s['status']}{where}: {s['body']}"
            )
    return ["", "first error bodies:", *out] if out else []
