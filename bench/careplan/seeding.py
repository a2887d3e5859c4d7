"""Seeding the care plan schema directly through the service's storage path."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import date
from typing import Any

from bench.actors import organisation_caller
from bench.careplan.world import (
    SEED_CONNECTIONS,
    TABLES,
    CareplanOptions,
    Organisations,
    SeededChild,
    seeded_plan,
    seeded_team,
)
from bench.crud import (
    Identifiers,
    with_application_name,
)
from bench.tables import vacuum_and_count
from services.careplan import NAME
from services.careplan.resources import careplan_definitions
from shared.auth.scopes import ALL_SYSTEM_SCOPES
from shared.codes import OrganisationKind
from shared.config import Settings
from shared.fhir.service import FhirService
from shared.fhir.unit_of_work import StoreUnitOfWork
from shared.outside_reads import OutsideReads
from shared.store.database import Database, open_database
from shared.store.resource_store import new_id
from shared.store.schema import create_schema
from shared.transport.wire import FhirRequest


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
    tables = await vacuum_and_count(options.database_url, schema, TABLES)
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
