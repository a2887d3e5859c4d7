"""The CRUD benchmark: linked directory resources created, read, updated and deleted.

Modelled on the open HealthSamurai FHIR server benchmark, adapted to what barnebro's
directory owns: every iteration of every client creates the chain Organization →
Practitioner → PractitionerRole (practitioner + the client's own organisation) → Patient
(managing organisation: the chain's Organization; general practitioner: the
PractitionerRole) → RelatedPerson (patient, parental responsibility ``felles``), reads
each by id, updates each (PUT), and deletes each in reverse order — 20 requests per chain.

Each type is written, read, updated and deleted with the credential that may write it in
a real deployment (``WRITERS``): Organization with the operator credential (the operator's
register), Practitioner, PractitionerRole and Patient with the token of the benchmark's
client organisation (a BUP the operator registers at set-up, ``CLIENT_ORGNR``), and
RelatedPerson with the population register's credential. The resources are valid for
barnebro's rules: organisasjonsnummer pass the mod-11 check, fødselsnummer are synthetic
(month + 80) with correct check digits, and every business key (orgnr, fødselsnummer,
HPR) is unique within the run.

`run` is the whole benchmark: it starts a local stack (its own nats-server, the directory
service and the gateway, on SQLite or PostgreSQL) in a temporary data directory, runs the
CRUD window, a read-only phase, then the limits (``bench.limits``), stops and cleans up
everything (also on error or Ctrl-C) and returns the result for ``bench.report``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import orjson

from bench.actors import admit, credential_client
from bench.cpu import CpuMeter
from bench.limits import http_limit, storage_limit
from bench.load import (
    HttpClient,
    PidLookup,
    Recorder,
    Reply,
    Window,
    Worker,
    http_client,
    read_worker,
    run_phase,
)
from bench.report import (
    OPERATIONS,
    machine_info,
    per_cpu_second,
    percentile,
    ratio,
    timestamp,
    write_json,
)
from services.stack import LocalStack, free_port
from shared.auth.local_keys import issue_token
from shared.codes import (
    MUNICIPALITY_EXTENSION,
    ORGANISATION_KIND_SYSTEM,
    PARENTAL_RESPONSIBILITY_SYSTEM,
    ROLE_SYSTEM,
)
from shared.config import Settings
from shared.identifiers import FNR_SYSTEM, HPR_SYSTEM, KOMMUNENUMMER_SYSTEM, ORGNR_SYSTEM

Database = Literal["sqlite", "postgresql"]
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"
RESULTS_DIR = Path(__file__).resolve().parent / "results"
CHAIN = ("Organization", "Practitioner", "PractitionerRole", "Patient", "RelatedPerson")
REQUESTS_PER_CHAIN = 4 * len(CHAIN)
CLIENT_ORGNR = "910000209"
"""The organisation the benchmark's client token is issued to: a BUP, registered by the
operator at set-up. It is none of the demonstration organisations `LocalStack` registers,
and far from the run's generated organisation numbers (`Identifiers`: 80000000-89999999
and on, as 8-digit prefixes)."""
CLIENT_KIND = "bup"
OWN_ORGANIZATION = "own Organization"
"""The key of the client's own Organization id in a chain's references: a
PractitionerRole names the organisation that writes it."""
Writer = Literal["operator", "client", "register"]
WRITERS: dict[str, Writer] = {
    "Organization": "operator",
    "Practitioner": "client",
    "PractitionerRole": "client",
    "Patient": "client",
    "RelatedPerson": "register",
}
"""Whose credential creates, reads, updates and deletes each type of the chain: the
operator's register, the client organisation, the population register."""
READ_PATIENTS = 64
"""Patients created for the read-only phase (and the bare limits), read at random."""

MANAGED_ENVIRONMENT = (
    "NATS_URL",
    "DATABASE_URL",
    "BARNEBRO_DB_SCHEMA_PREFIX",
    "BARNEBRO_JWKS_URL",
    "BARNEBRO_JWKS_FILE",
    "BARNEBRO_JWT_ISSUER",
    "BARNEBRO_JWT_AUDIENCE",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)
"""Variables the run sets or removes so the stack's children inherit a known setup; they
are restored afterwards. NATS_URL is removed so the stack starts (and we measure) its own
nats-server; the JWT settings so that the locally issued token verifies; the OTLP endpoint
so that tracing export does not run during the measurement."""


# -- valid, unique identifiers ---------------------------------------------------------------

_ORGNR_WEIGHTS = (3, 2, 7, 6, 5, 4, 3, 2)
_K1_WEIGHTS = (3, 7, 6, 1, 8, 9, 4, 5, 2)
_K2_WEIGHTS = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)
_FNR_SPACE = 28 * 12 * 100 * 1000
"""Day 1-28 (always a real date), month 1-12, two-digit year, individnummer 000-999."""


def _mod11(digits: str, weights: tuple[int, ...]) -> int | None:
    """The mod-11 check digit of `digits`, or None when none exists (remainder 1)."""
    remainder = sum(int(d) * w for d, w in zip(digits, weights, strict=True)) % 11
    if remainder == 1:
        return None
    return 0 if remainder == 0 else 11 - remainder


def orgnr_for(base: int) -> str | None:
    """The organisasjonsnummer with the 8-digit prefix `base`, if its check digit exists."""
    digits = f"{base:08d}"
    check = _mod11(digits, _ORGNR_WEIGHTS)
    return None if check is None else digits + str(check)


def synthetic_fnr_for(index: int) -> str | None:
    """The synthetic fødselsnummer (month + 80) number `index`, if its check digits exist."""
    index %= _FNR_SPACE
    index, day = divmod(index, 28)
    index, month = divmod(index, 12)
    individ, year = divmod(index, 100)
    digits = f"{day + 1:02d}{month + 81:02d}{year:02d}{individ:03d}"
    k1 = _mod11(digits, _K1_WEIGHTS)
    if k1 is None:
        return None
    k2 = _mod11(digits + str(k1), _K2_WEIGHTS)
    if k2 is None:
        return None
    return f"{digits}{k1}{k2}"


class Identifiers:
    """Unique, valid business identifiers: each call moves a counter, so none repeats."""

    def __init__(self, seed: int) -> None:
        rng = random.Random(seed)
        self._orgnr = self._counter(80_000_000 + rng.randrange(10_000_000))
        self._fnr = self._counter(rng.randrange(_FNR_SPACE))
        self._hpr = self._counter(1_000_000 + rng.randrange(8_000_000))

    @staticmethod
    def _counter(start: int) -> Iterator[int]:
        value = start
        while True:
            yield value
            value += 1

    def orgnr(self) -> str:
        while True:
            value = orgnr_for(next(self._orgnr) % 100_000_000)
            if value is not None:
                return value

    def fnr(self) -> str:
        while True:
            value = synthetic_fnr_for(next(self._fnr))
            if value is not None:
                return value

    def hpr(self) -> str:
        return str(next(self._hpr))


# -- the resources ---------------------------------------------------------------------------


def _ref(refs: Mapping[str, str], resource_type: str) -> dict[str, str]:
    return {"reference": f"{resource_type}/{refs[resource_type]}"}


def organization(orgnr: str, name: str) -> dict[str, Any]:
    """A BUP's Organization as the operator registers it."""
    return {
        "resourceType": "Organization",
        "identifier": [{"system": ORGNR_SYSTEM, "value": orgnr}],
        "active": True,
        "type": [{"coding": [{"system": ORGANISATION_KIND_SYSTEM, "code": CLIENT_KIND}]}],
        "name": name,
        "telecom": [{"system": "phone", "value": "+47 22 00 00 00", "use": "work"}],
        "address": [
            {
                "extension": [
                    {
                        "url": MUNICIPALITY_EXTENSION,
                        "valueCoding": {"system": KOMMUNENUMMER_SYSTEM, "code": "0301"},
                    }
                ],
                "line": ["Sognsvannsveien 21"],
                "postalCode": "0372",
                "city": "Oslo",
            }
        ],
    }


def build_resource(resource_type: str, refs: Mapping[str, str], ids: Identifiers) -> dict[str, Any]:
    """A realistic, valid instance of `resource_type` referring to the ids in `refs`
    (`refs[OWN_ORGANIZATION]`: the writing client's own Organization)."""
    if resource_type == "Organization":
        orgnr = ids.orgnr()
        return organization(orgnr, f"BUP Benk {orgnr}")
    if resource_type == "Practitioner":
        return {
            "resourceType": "Practitioner",
            "identifier": [{"system": HPR_SYSTEM, "value": ids.hpr()}],
            "active": True,
            "name": [{"family": "Hansen", "given": ["Kari"]}],
            "gender": "female",
            "telecom": [{"system": "email", "value": "kari.hansen@example.no"}],
        }
    if resource_type == "PractitionerRole":
        return {
            "resourceType": "PractitionerRole",
            "active": True,
            "practitioner": _ref(refs, "Practitioner"),
            "organization": {"reference": f"Organization/{refs[OWN_ORGANIZATION]}"},
            "code": [{"coding": [{"system": ROLE_SYSTEM, "code": "behandler"}]}],
        }
    if resource_type == "Patient":
        return {
            "resourceType": "Patient",
            "identifier": [{"system": FNR_SYSTEM, "value": ids.fnr()}],
            "active": True,
            "name": [{"family": "Nordmann", "given": ["Ola"]}],
            "gender": "male",
            "managingOrganization": _ref(refs, "Organization"),
            "generalPractitioner": [_ref(refs, "PractitionerRole")],
            "address": [{"line": ["Storgata 1"], "postalCode": "0155", "city": "Oslo"}],
        }
    if resource_type == "RelatedPerson":
        return {
            "resourceType": "RelatedPerson",
            "identifier": [{"system": FNR_SYSTEM, "value": ids.fnr()}],
            "active": True,
            "patient": _ref(refs, "Patient"),
            "relationship": [
                {"coding": [{"system": PARENTAL_RESPONSIBILITY_SYSTEM, "code": "felles"}]}
            ],
            "name": [{"family": "Nordmann", "given": ["Kari"]}],
        }
    raise ValueError(f"no builder for {resource_type}")


def _parsed(reply: Reply) -> dict[str, Any] | None:
    """The resource a successful create returned, or None if it returned none."""
    try:
        data = orjson.loads(reply.body)
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) and isinstance(data.get("id"), str) else None


@dataclass(frozen=True)
class Actors:
    """The clients of a run (one aiohttp session) and the client's own Organization."""

    operator: HttpClient
    client: HttpClient
    register: HttpClient
    own_organization: str
    """The id of the client organisation's Organization (registered by the operator)."""

    def writer(self, resource_type: str) -> HttpClient:
        """The client that may write `resource_type` (``WRITERS``)."""
        clients = {"operator": self.operator, "client": self.client, "register": self.register}
        return clients[WRITERS[resource_type]]


async def create(
    actors: Actors,
    resource_type: str,
    refs: Mapping[str, str],
    ids: Identifiers,
    recorder: Recorder,
) -> dict[str, Any] | None:
    path = f"/{resource_type}"
    known = {OWN_ORGANIZATION: actors.own_organization, **refs}
    body = orjson.dumps(build_resource(resource_type, known, ids))
    reply = await actors.writer(resource_type).call("POST", path, body)
    resource = _parsed(reply) if reply.ok else None
    if reply.ok and resource is None:
        recorder.failure("create", "POST", path, reply.status, b"no resource with an id returned")
        return None
    recorder.record("create", resource_type, "POST", path, reply)
    return resource


async def run_chain(
    actors: Actors, ids: Identifiers, recorder: Recorder, stop: asyncio.Event
) -> bool:
    """One iteration: create the chain, read, update and delete each; True if all 20 worked.
    Every request about a type is made by that type's writer (``WRITERS``).

    Returns early (False) when `stop` is set. When a create fails, the resources already
    created are still read, updated and deleted.
    """
    refs: dict[str, str] = {}
    created: list[tuple[str, dict[str, Any]]] = []
    complete = True
    for resource_type in CHAIN:
        if stop.is_set():
            return False
        resource = await create(actors, resource_type, refs, ids, recorder)
        if resource is None:
            complete = False
            break
        refs[resource_type] = resource["id"]
        created.append((resource_type, resource))
    for resource_type, resource in created:
        if stop.is_set():
            return False
        path = f"/{resource_type}/{resource['id']}"
        reply = await actors.writer(resource_type).call("GET", path)
        complete &= recorder.record("read", resource_type, "GET", path, reply)
    for resource_type, resource in created:
        if stop.is_set():
            return False
        path = f"/{resource_type}/{resource['id']}"
        changed = {**resource, "active": False}
        reply = await actors.writer(resource_type).call("PUT", path, orjson.dumps(changed))
        complete &= recorder.record("update", resource_type, "PUT", path, reply)
    for resource_type, resource in reversed(created):
        if stop.is_set():
            return False
        path = f"/{resource_type}/{resource['id']}"
        reply = await actors.writer(resource_type).call("DELETE", path)
        complete &= recorder.record("delete", resource_type, "DELETE", path, reply)
    return complete


def crud_worker(actors: Actors, ids: Identifiers, recorder: Recorder) -> Worker:
    async def run(stop: asyncio.Event) -> None:
        while not stop.is_set():
            if await run_chain(actors, ids, recorder, stop) and recorder.measuring:
                recorder.chains += 1

    return run


@dataclass(frozen=True)
class SampleRead:
    """A real Patient read: the paths to read and the bytes and headers one returned."""

    paths: list[str]
    body: bytes
    headers: dict[str, str]


async def seed_patients(actors: Actors, ids: Identifiers, count: int) -> SampleRead:
    """Create `count` Patients (with their organisation and fastlege) for the read phase;
    the client registers them, so it reads them on its relation to each child."""
    client = actors.client
    recorder = Recorder(measuring=True)
    refs: dict[str, str] = {}
    for resource_type in ("Organization", "Practitioner", "PractitionerRole"):
        resource = await create(actors, resource_type, refs, ids, recorder)
        if resource is None:
            raise RuntimeError(
                f"could not create the read phase's {resource_type}: {recorder.samples}"
            )
        refs[resource_type] = resource["id"]
    paths = []
    for _ in range(count):
        resource = await create(actors, "Patient", refs, ids, recorder)
        if resource is None:
            raise RuntimeError(f"could not create the read phase's Patients: {recorder.samples}")
        paths.append(f"/Patient/{resource['id']}")
    reply = await client.call("GET", paths[0])
    if not reply.ok:
        raise RuntimeError(f"could not read {paths[0]}: {reply.status} {reply.body[:500]!r}")
    keep = ("Content-Type", "ETag", "Last-Modified")
    headers = {name: reply.headers[name] for name in keep if name in reply.headers}
    return SampleRead(paths, reply.body, headers)


async def wait_until_served(writers: Mapping[str, HttpClient], limit: float = 60.0) -> float:
    """Wait until the gateway routes every type in `writers` (type → the client that asks
    for it); return the seconds waited.

    The stack counts as started once the gateway answers /healthz, but the gateway learns
    which service owns a type from the registry, which the directory fills only when it
    is up: until then a request gets 404 "not supported". The benchmark must not count that.
    """
    started = time.perf_counter()
    deadline = started + limit
    for resource_type, client in writers.items():
        while True:
            reply = await client.call("GET", f"/{resource_type}?_count=1")
            if reply.ok:
                break
            if time.perf_counter() > deadline:
                raise RuntimeError(
                    f"the stack does not serve {resource_type} after {limit:g} s:"
                    f" {reply.status} {reply.body[:500]!r}"
                )
            await asyncio.sleep(0.1)
    return time.perf_counter() - started


# -- the run ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CrudOptions:
    clients: int = 32
    seconds: float = 20.0
    warmup: float = 3.0
    limit_seconds: float = 5.0
    limit_warmup: float = 1.0
    database: Database = "sqlite"
    database_url: str = DEFAULT_DATABASE_URL
    limits: bool = True
    out_dir: Path | None = field(default=RESULTS_DIR)
    seed: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "clients": self.clients,
            "seconds": self.seconds,
            "warmup_seconds": self.warmup,
            "limit_seconds": self.limit_seconds,
            "limit_warmup_seconds": self.limit_warmup,
            "database": self.database,
            "database_url": self.database_url if self.database == "postgresql" else None,
            "limits": self.limits,
        }


def with_application_name(url: str, name: str) -> str:
    """`url` with ``application_name=name`` (asyncpg passes it to the server), so that the
    PostgreSQL backends serving this run can be told from everyone else's."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "application_name"]
    query.append(("application_name", name))
    return urlunsplit(parts._replace(query=urlencode(query)))


def backend_lookup(conn: asyncpg.Connection[Any], application_name: str) -> PidLookup:
    async def lookup() -> Mapping[str, Iterable[int]]:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1", application_name
        )
        return {"postgres backends of this run": [int(row["pid"]) for row in rows]}

    return lookup


@contextlib.contextmanager
def bench_environment(options: CrudOptions, tag: str) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in MANAGED_ENVIRONMENT}
    try:
        for name in MANAGED_ENVIRONMENT:
            os.environ.pop(name, None)
        if options.database == "postgresql":
            os.environ["DATABASE_URL"] = with_application_name(options.database_url, tag)
            os.environ["BARNEBRO_DB_SCHEMA_PREFIX"] = tag
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def phase_summary(recorder: Recorder, window: Window, operations: Iterable[str]) -> dict[str, Any]:
    seconds = window.seconds
    ok = recorder.successes
    cpu = window.usage
    return {
        "window_s": round(seconds, 3),
        "operations": {op: recorder.ops[op].summary(seconds) for op in operations},
        "successful_requests": ok,
        "errors": recorder.errors,
        "errors_outside_window": recorder.unmeasured_errors,
        "requests_per_second": round(ok / seconds, 1),
        "requests_per_server_cpu_second": per_cpu_second(ok, cpu.server),
        "cpu": cpu.as_dict(),
        "load_generator_cpu_ms_per_request": (
            round(cpu.load_generator * 1000 / ok, 3) if ok else None
        ),
    }


async def set_up_actors(client: HttpClient, data_dir: Path) -> tuple[Actors, float]:
    """The operator's and the register's clients next to `client` (the client
    organisation's), and the client organisation registered by the operator before its
    first request; the actors and the seconds waited for the gateway to route."""
    operator = credential_client(client, data_dir, "operator")
    register = credential_client(client, data_dir, "register")
    waited = await wait_until_served({"Organization": operator})
    own = await admit(operator, organization(CLIENT_ORGNR, "BUP Benk (the benchmark's client)"))
    actors = Actors(operator, client, register, own)
    waited += await wait_until_served({t: actors.writer(t) for t in CHAIN})
    return actors, waited


async def _stack_phases(
    options: CrudOptions,
    base_url: str,
    token: str,
    data_dir: Path,
    pids: Mapping[str, int],
    tag: str,
) -> tuple[dict[str, Any], dict[str, Any], SampleRead, list[dict[str, Any]]]:
    """The CRUD window and the read-only phase, against the running stack (`token`: the
    client organisation's)."""
    monitor = None
    if options.database == "postgresql":
        monitor = await asyncpg.connect(options.database_url)
    try:
        lookup = backend_lookup(monitor, tag) if monitor is not None else None
        servers = {"gateway": "gateway", "directory": "directory", "nats-server": "nats"}
        meter = CpuMeter(
            {name: pids[child] for name, child in servers.items()},
            programs=["postgres"] if options.database == "postgresql" else [],
        )
        ids = Identifiers(options.seed if options.seed is not None else secrets.randbits(32))
        async with http_client(base_url, token, options.clients) as client:
            actors, waited = await set_up_actors(client, data_dir)
            recorder = Recorder()
            workers = [crud_worker(actors, ids, recorder) for _ in range(options.clients)]
            window = await run_phase(
                workers,
                recorder,
                meter,
                warmup=options.warmup,
                seconds=options.seconds,
                extra_pids=lookup,
            )
            crud = phase_summary(recorder, window, OPERATIONS)
            crud["chains_completed"] = recorder.chains
            crud["waited_for_routing_s"] = round(waited, 3)
            crud["by_type"] = {
                resource_type: {op: _latency_summary(by_op[op]) for op in OPERATIONS if op in by_op}
                for resource_type, by_op in sorted(recorder.by_type.items())
            }
            crud["p50_ms_by_type"] = {
                resource_type: {op: s["p50_ms"] for op, s in by_op.items()}
                for resource_type, by_op in crud["by_type"].items()
            }
            samples = [s.as_dict() for s in recorder.samples]

            sample = await seed_patients(actors, ids, max(READ_PATIENTS, 2 * options.clients))
            read_recorder = Recorder()
            workers = [
                read_worker(client, sample.paths, read_recorder, seed)
                for seed in range(options.clients)
            ]
            window = await run_phase(
                workers,
                read_recorder,
                meter,
                warmup=options.limit_warmup,
                seconds=options.limit_seconds,
                extra_pids=lookup,
            )
            read = phase_summary(read_recorder, window, ["read"])
            stats = read["operations"]["read"]
            read.update({k: stats[k] for k in ("p50_ms", "p95_ms", "p99_ms")})
            read["response_bytes"] = len(sample.body)
            samples += [s.as_dict() for s in read_recorder.samples]
    finally:
        if monitor is not None:
            await monitor.close()
    return crud, read, sample, samples


def _latency_summary(latencies: list[float]) -> dict[str, Any]:
    ordered = sorted(latencies)
    return {
        "count": len(ordered),
        "p50_ms": round(percentile(ordered, 0.5) * 1000, 2),
        "p95_ms": round(percentile(ordered, 0.95) * 1000, 2),
        "p99_ms": round(percentile(ordered, 0.99) * 1000, 2),
    }


async def _limits(
    options: CrudOptions, sample: SampleRead, token: str, data_dir: Path, tag: str
) -> dict[str, Any]:
    http = await http_limit(
        body=sample.body,
        headers=sample.headers,
        paths=sample.paths,
        token=token,
        clients=options.clients,
        warmup=options.limit_warmup,
        seconds=options.limit_seconds,
    )
    if options.database == "postgresql":
        name = f"{tag}-limit"
        monitor = await asyncpg.connect(options.database_url)
        try:
            storage = await storage_limit(
                database="postgresql",
                body=sample.body,
                clients=options.clients,
                warmup=options.limit_warmup,
                seconds=options.limit_seconds,
                database_url=with_application_name(options.database_url, name),
                pool_size=Settings().db_pool_size,
                backend_pids=backend_lookup(monitor, name),
            )
        finally:
            await monitor.close()
    else:
        storage = await storage_limit(
            database="sqlite",
            body=sample.body,
            clients=options.clients,
            warmup=options.limit_warmup,
            seconds=options.limit_seconds,
            sqlite_path=data_dir / "bench-limit.sqlite3",
        )
    return {"http": http, "storage": storage}


async def drop_schemas(url: str, prefix: str) -> list[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE $1", prefix + "\\_%"
        )
        names = [str(row["nspname"]) for row in rows]
        for name in names:
            await conn.execute(f'DROP SCHEMA "{name}" CASCADE')
        return names
    finally:
        await conn.close()


def _ratios(result: Mapping[str, Any]) -> dict[str, float | None]:
    crud, read = result["crud"], result.get("read_by_id")
    limits = result.get("limits") or {}
    http, storage = limits.get("http"), limits.get("storage")
    ratios: dict[str, float | None] = {}
    crud_per_cpu = crud["requests_per_server_cpu_second"] or 0.0
    if read and http:
        ratios["FHIR read / HTTP limit, per server CPU-s"] = ratio(
            read["requests_per_server_cpu_second"] or 0.0,
            http["requests_per_server_cpu_second"] or 0.0,
        )
        ratios["FHIR read / HTTP limit, raw req/s"] = ratio(
            read["requests_per_second"], http["requests_per_second"]
        )
    if http:
        ratios["CRUD mix / HTTP limit, per server CPU-s"] = ratio(
            crud_per_cpu, http["requests_per_server_cpu_second"] or 0.0
        )
    if storage:
        ratios["CRUD mix / storage limit, per CPU-s (req vs statements)"] = ratio(
            crud_per_cpu, storage["statements_per_storage_cpu_second"] or 0.0
        )
        ratios["CRUD mix / storage limit, raw per s (req vs statements)"] = ratio(
            crud["requests_per_second"], storage["statements_per_second"]
        )
    return ratios


def run(options: CrudOptions) -> tuple[dict[str, Any], Path | None]:
    """Run the whole benchmark; return the result and the JSON file it was written to."""
    tag = f"bench{secrets.token_hex(4)}"
    started = timestamp()
    result: dict[str, Any] = {
        "benchmark": "crud",
        "timestamp": started,
        "parameters": options.as_dict(),
        "machine": machine_info(),
    }
    data_dir = Path(tempfile.mkdtemp(prefix="barnebro-bench-"))
    try:
        with bench_environment(options, tag):
            port = free_port()
            base_url = f"http://127.0.0.1:{port}/fhir"
            stack = LocalStack(data_dir, port, ("directory", "gateway"))
            print(f"starting the stack ({options.database}) in {data_dir} …", flush=True)
            try:
                stack.start()
                token = issue_token(data_dir, orgnr=CLIENT_ORGNR)
                pids = {name: process.pid for name, process in stack.children}
                print(
                    f"running {options.clients} clients: {options.warmup:g} s warm-up,"
                    f" {options.seconds:g} s CRUD, {options.limit_seconds:g} s read-only …",
                    flush=True,
                )
                crud, read, sample, samples = asyncio.run(
                    _stack_phases(options, base_url, token, data_dir, pids, tag)
                )
            finally:
                stack.stop()
            result["crud"], result["read_by_id"] = crud, read
            result["error_samples"] = samples
            if options.limits:
                print("measuring the HTTP and storage limits …", flush=True)
                result["limits"] = asyncio.run(_limits(options, sample, token, data_dir, tag))
                result["error_samples"] += result["limits"]["http"]["error_samples"]
                result["error_samples"] += result["limits"]["storage"]["error_samples"]
            result["ratios"] = _ratios(result)
    finally:
        if options.database == "postgresql":
            try:
                dropped = asyncio.run(drop_schemas(options.database_url, tag))
                result.setdefault("cleanup", {})["dropped_schemas"] = dropped
            except Exception as exc:
                print(f"warning: could not drop the schemas {tag}_*: {exc}", flush=True)
        shutil.rmtree(data_dir, ignore_errors=True)
    path = None
    if options.out_dir is not None:
        path = write_json(result, options.out_dir, f"crud-{options.database}-{started}.json")
    return result, path
