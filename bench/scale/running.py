"""Starting the stack, growing it to each size, measuring, and tearing everything down."""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import asyncpg

from bench.actors import admit_all
from bench.cpu import CpuMeter
from bench.crud import CrudOptions, Identifiers, backend_lookup, bench_environment
from bench.load import HttpClient, http_client
from bench.referral import RunningStack, new_result, stack_cleanup
from bench.referral.setup import wait_until_routed
from bench.report import write_json
from bench.scale.importing import ImportTarget, MixImporter
from bench.scale.mix import Child, Organisations, children_for, make_child, resources_for
from bench.scale.queries import QUERIES, Asking, measure_query
from bench.scale.settling import settle
from bench.scale.summary import aim, compare
from bench.scale.world import SERVERS, SIZES, STACK_SERVICES, STALL_LIMIT, ScaleOptions
from bench.tables import vacuum_and_count
from services.stack import LocalStack, free_port
from shared.clock import today
from shared.config import Settings
from shared.transport.nats_connection import close, connect


def run(options: ScaleOptions) -> tuple[dict[str, Any], Path | None]:
    """Run the whole benchmark; return the result and the JSON file it was written to.
    Ctrl-C raises KeyboardInterrupt after the cleanup."""
    result, data_dir, tag = new_result("scale", options.as_dict(), STACK_SERVICES, "postgresql")
    started = result["timestamp"]
    try:
        environment = CrudOptions(database="postgresql", database_url=options.database_url)
        with bench_environment(environment, tag):
            _run_stack(options, result, data_dir, tag)
    finally:
        result["cleanup"] = stack_cleanup("postgresql", options.database_url, data_dir, tag)
    sizes = result.get("sizes", [])
    if len(sizes) == len(SIZES):
        result["comparison"] = compare(sizes[0]["queries"], sizes[1]["queries"])
        result["aim"] = aim(result["comparison"])
    result["errors_total"] = sum(_errors(size) for size in sizes)
    path = None
    if options.out_dir is not None:
        path = write_json(result, options.out_dir, f"scale-{started}.json")
    return result, path


def _errors(size: Mapping[str, Any]) -> int:
    """Refused imports, and failed or wrong answers (in the warm-up too) at one size."""
    imports = sum(t["failed"] for t in size["import"].values())
    queries = sum(q["errors"] + q["errors_in_warmup"] for q in size["queries"].values())
    return int(imports + queries)


def _run_stack(options: ScaleOptions, result: dict[str, Any], data_dir: Path, tag: str) -> None:
    port = free_port()
    stack = LocalStack(data_dir, port, STACK_SERVICES)
    print(f"starting the stack in {data_dir} …", flush=True)
    try:
        stack.start()
        pids = {name: process.pid for name, process in stack.children}
        result["stack"]["pids"] = pids
        assert stack.own_nats_url is not None  # bench_environment removes NATS_URL
        running = RunningStack(f"http://127.0.0.1:{port}/fhir", data_dir, pids, tag)
        result.update(asyncio.run(_measure(options, running, stack.own_nats_url)))
    finally:
        stack.stop()


async def _measure(options: ScaleOptions, stack: RunningStack, nats_url: str) -> dict[str, Any]:
    settings = Settings().model_copy(update={"nats_url": nats_url})
    nc = await connect(settings, "bench-scale")
    monitor = await asyncpg.connect(options.database_url)
    try:
        meter = CpuMeter(
            {name: stack.pids[child] for name, child in SERVERS.items()}, programs=["postgres"]
        )
        backends = backend_lookup(monitor, stack.tag)

        async def settled() -> float:
            return await settle(nc, settings, STALL_LIMIT)

        importer = MixImporter(
            ImportTarget(stack.base_url, stack.data_dir, meter, backends, settled),
            batch=options.batch,
            parallel=options.parallel,
        )
        ids = Identifiers(options.seed if options.seed is not None else secrets.randbits(32))
        orgs = Organisations.made(ids, options.gps, options.bups, options.kommuner)
        day = today()
        async with http_client(stack.base_url, "", options.concurrency) as base:
            setup = await _set_up(stack, base, orgs)
            gp_ids = setup.pop("gp_ids")
            children: list[Child] = []
            sizes: list[dict[str, Any]] = []
            for name, target in zip(SIZES, (options.baseline, options.resources), strict=True):
                first = len(children)
                children += [make_child(i, ids, orgs) for i in range(first, children_for(target))]
                print(f"{name}: importing children {first:,}-{len(children) - 1:,} …", flush=True)
                size: dict[str, Any] = {
                    "name": name,
                    "resources_asked": target,
                    "resources": resources_for(len(children)),
                    "children": len(children),
                    "children_added": len(children) - first,
                }
                size["import"] = await importer.grow(
                    children[first:], ids, gp_ids, day, stack.data_dir
                )
                size.update(await _stored(options, stack.tag))
                print(f"{name}: measuring {len(QUERIES)} queries …", flush=True)
                # tokens made now: the import before may have taken longer than they last
                clients = {orgnr: stack.client(base, orgnr) for orgnr in (*orgs.gps, *orgs.bups)}
                asking = Asking(clients, importer.server_id, meter, backends, day, settled)
                size["queries"] = await _ask(options, name, children, asking)
                sizes.append(size)
                if _errors(size):
                    stopped = f"errors at the {name} size; the larger import was not started"
                    return {"setup": setup, "sizes": sizes, "stopped": stopped}
    finally:
        await monitor.close()
        await close(nc)
    return {"setup": setup, "sizes": sizes}


async def _set_up(stack: RunningStack, base: HttpClient, orgs: Organisations) -> dict[str, Any]:
    """The operator registers every organisation; the seconds waited for routing."""
    operator = stack.operator(base)
    waited = await wait_until_routed(operator, ("Organization",))
    registered = await admit_all(operator, orgs.organizations())
    waited += await wait_until_routed(
        stack.client(base, orgs.gps[0]), ("Patient", "RelatedPerson", "ServiceRequest")
    )
    waited += await wait_until_routed(stack.client(base, orgs.bups[0]), ("CareTeam", "CarePlan"))
    return {
        "waited_for_routing_s": round(waited, 3),
        "organisations": {
            "fastlege": list(orgs.gps),
            "bup": list(orgs.bups),
            "kommune-helse": list(orgs.kommuner),
        },
        "gp_ids": dict(zip(orgs.gps, registered[: len(orgs.gps)], strict=True)),
    }


async def _stored(options: ScaleOptions, tag: str) -> dict[str, Any]:
    """Every service's tables vacuumed and analysed; what each schema holds."""
    settings = Settings()
    started = time.perf_counter()
    database: dict[str, Any] = {}
    for service in STACK_SERVICES:
        if service == "gateway":
            continue
        schema = settings.db_schema_for(service)
        tables = await vacuum_and_count(options.database_url, schema)
        database[service] = {
            "resources_rows": tables.get("resources", {}).get("rows", 0),
            "resources_by_type": await _by_type(options.database_url, schema),
            "total_mb": round(sum(t["total_mb"] for t in tables.values()), 1),
            "tables": tables,
        }
    return {"database": database, "vacuum_analyze_s": round(time.perf_counter() - started, 2)}


async def _by_type(url: str, schema: str) -> dict[str, int]:
    """Current resources per type: what was imported, and what the stack made of it (the
    referrals' Tasks, the audit trail's AuditEvents)."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            f'SELECT res_type, count(*) AS n FROM "{schema}".resources'
            " GROUP BY res_type ORDER BY res_type"
        )
    finally:
        await conn.close()
    return {str(row["res_type"]): int(row["n"]) for row in rows}


async def _ask(
    options: ScaleOptions, size: str, children: Sequence[Child], asking: Asking
) -> dict[str, Any]:
    seed = options.seed or 0
    found = {}
    for query in QUERIES:
        found[query.name] = await measure_query(
            query,
            children,
            asking,
            requests=options.requests,
            warmup=options.warmup_requests,
            concurrency=options.concurrency,
            rng=random.Random(f"{seed}-{size}-{query.name}"),
        )
    return found
