"""Setting up the benchmark's world, running its phases and tearing everything down,
also after an error, Ctrl-C or SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import secrets
import shutil
import signal
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from nats.aio.client import Client as NATS
from nats.js.errors import NotFoundError

from bench.consent.checked import (
    measure_checked_parts,
    measure_read,
    measure_search,
    read_request,
    search_request,
)
from bench.consent.local import measure_decisions, measure_visibility
from bench.consent.population import generate_population
from bench.consent.transport import measure_transport
from bench.consent.withdrawal import measure_withdrawal
from bench.consent.world import (
    AUTHOR_KIND,
    AUTHOR_ORG,
    BASE_URL,
    SERVICE,
    TARGET_DOCUMENTS,
    BenchDocument,
    ConsentBench,
    ConsentOptions,
    Interrupt,
    Phase,
    connect_nats,
    document,
    org_caller,
)
from bench.crud import (
    with_application_name,
)
from bench.report import (
    machine_info,
    per_cpu_second,
    timestamp,
    write_json,
)
from shared.access.audit import AuditPublisher
from shared.access.guard import AccessGuard
from shared.access.view import ConsentView
from shared.config import Settings
from shared.fhir.definitions import ResourceDefinition
from shared.fhir.errors import FhirError
from shared.fhir.router import FhirRouter
from shared.fhir.service import FhirService
from shared.store.database import Database, open_database
from shared.store.schema import create_schema
from shared.transport.nats_connection import ensure_event_stream
from shared.transport.wire import FhirRequest

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
    read = read_request(bench)
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
        await bench.checked.handle(read_request(bench, stranger), b"")
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
        bundle = orjson.loads((await service.handle(search_request(bench, caller), b"")).body)
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
        for stream in result_streams(settings):
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


def result_streams(settings: Settings) -> list[str]:
    """The streams a run's services create (and its cleanup deletes)."""
    return [settings.stream_name, settings.audit_stream_name, settings.dead_letter_stream_name]


async def nats_objects_left(url: str, settings_names: Mapping[str, Any]) -> list[str]:
    """Which of a run's streams and buckets still exist (for checking the cleanup)."""
    nc = await connect_nats(url)
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
        "streams": result_streams(settings),
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
        nc = await connect_nats(options.nats_url)
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
