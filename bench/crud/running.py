"""Running the CRUD benchmark: the stack, the phases, the limits and the result."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from bench.actors import admit, credential_client
from bench.cpu import CpuMeter
from bench.crud.identifiers import Identifiers
from bench.crud.resources import (
    Actors,
    SampleRead,
    crud_worker,
    organization,
    seed_patients,
    wait_until_served,
)
from bench.crud.world import (
    CHAIN,
    CLIENT_ORGNR,
    DEFAULT_DATABASE_URL,
    MANAGED_ENVIRONMENT,
    READ_PATIENTS,
    RESULTS_DIR,
    Database,
)
from bench.limits import http_limit, storage_limit
from bench.load import (
    HttpClient,
    PidLookup,
    Recorder,
    Window,
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
from shared.config import Settings


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


BACKENDS = "postgres backends of this run"
"""The informational CPU group of the PostgreSQL backends `backend_lookup` finds."""


def backend_lookup(conn: asyncpg.Connection[Any], application_name: str) -> PidLookup:
    async def lookup() -> Mapping[str, Iterable[int]]:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1", application_name
        )
        return {BACKENDS: [int(row["pid"]) for row in rows]}

    return lookup


@contextlib.contextmanager
def environment_restored(names: Iterable[str]) -> Iterator[None]:
    """Put these environment variables back as they were when the block ends."""
    saved = {name: os.environ.get(name) for name in names}
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def bench_environment(options: CrudOptions, tag: str) -> Iterator[None]:
    with environment_restored(MANAGED_ENVIRONMENT):
        for name in MANAGED_ENVIRONMENT:
            os.environ.pop(name, None)
        if options.database == "postgresql":
            os.environ["DATABASE_URL"] = with_application_name(options.database_url, tag)
            os.environ["BARNEBRO_DB_SCHEMA_PREFIX"] = tag
        yield


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
