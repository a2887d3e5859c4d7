"""Starting the stack, running the phases and tearing everything down."""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path
from typing import Any

from bench.careplan.phases import measure
from bench.careplan.seeding import seed, seeded_children
from bench.careplan.world import STACK_SERVICES, CareplanOptions, Organisations
from bench.crud import (
    CrudOptions,
    Identifiers,
    bench_environment,
)
from bench.referral import (
    RunningStack,
    finish_result,
    new_result,
    stack_cleanup,
)
from services.careplan import NAME
from services.stack import LocalStack, free_port
from shared.clock import today
from shared.config import Settings


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
        result.update(asyncio.run(measure(options, settings, running, seeded, orgs, day, ids)))
    finally:
        stack.stop()
