"""Starting the stack, running the phases and tearing everything down."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.crud import (
    CrudOptions,
    bench_environment,
    drop_schemas,
)
from bench.referral.clients import RunningStack
from bench.referral.phases import measure, scaling_ratios
from bench.referral.world import ReferralOptions
from bench.report import (
    machine_info,
    timestamp,
    write_json,
)
from services.cli import SERVICES
from services.stack import LocalStack, free_port


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
        result.update(asyncio.run(measure(options, running)))
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
