"""The phases: care plan reads and updates per server CPU-second."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import asyncpg

from bench.actors import admit_all
from bench.careplan.requests import WORKERS, CareplanWorld, populate, sanity, wait_until_routed
from bench.careplan.world import (
    EXPLAINED,
    PHASES,
    SERVERS,
    CareplanOptions,
    Organisations,
    SeededChild,
    coordinator_params,
)
from bench.cpu import CpuMeter
from bench.crud import (
    Identifiers,
    backend_lookup,
    phase_summary,
)
from bench.load import PidLookup, Recorder, http_client, run_phase
from bench.referral import (
    RunningStack,
)
from bench.report import (
    per_cpu_second,
)
from services.careplan import NAME
from services.careplan.resources import careplan_definitions
from shared.config import Settings
from shared.fhir.search_query import parse_search
from shared.outside_reads import OutsideReads
from shared.store.access_sql import AccessFilter
from shared.store.database import open_database
from shared.store.search_sql import build_search


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


async def measure(
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
