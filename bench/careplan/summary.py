"""The printed summary of a care plan benchmark result."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bench.referral import (
    cpu_summary,
    error_lines,
)
from bench.report import (
    table_cell,
    text_table,
)


def format_careplan_report(result: Mapping[str, Any]) -> str:
    """The printed summary of a ``careplan`` result (every number is also in the JSON)."""
    params, machine = result["parameters"], result["machine"]
    phases = result.get("phases", [])
    out = [
        f"barnebro care plan benchmark — PostgreSQL, {params['plans']:,} seeded plans,"
        f" {params['updated_plans']} updated, {params['seconds']:g} s per phase after"
        f" {params['warmup_seconds']:g} s warm-up, nproc {machine['nproc']},"
        f" Python {machine['python']}",
    ]
    errors = result.get("errors_total", 0)
    if errors:
        out.append(
            f"!! {errors} FAILED REQUESTS in the measured windows: the phases with errors do"
            " not measure what they claim; see the error bodies below"
        )
    seeding = result.get("seeding")
    if seeding:
        out += ["", _seeding_lines(seeding)]
    out += ["", _headline_table(phases), "", cpu_summary(phases)]
    ratios = result.get("ratios", {})
    if ratios:
        out += ["", "scaling (1.0 = as efficient as at the first client count)"]
        out += [f"  {name}: {table_cell(value)}" for name, value in ratios.items()]
    explained = (result.get("explain") or {}).get("coordinator")
    if explained:
        out += ["", _explain_lines(explained)]
    out += error_lines(phases)
    cleanup = result.get("cleanup", {})
    out.append(
        f"\ncleanup: schemas {', '.join(cleanup.get('dropped_schemas', [])) or '-'};"
        f" data directory removed: {cleanup.get('data_dir_removed')}"
    )
    out += [f"  cleanup problem: {problem}" for problem in cleanup.get("problems", [])]
    return "\n".join(out)


def _explain_lines(explained: Mapping[str, Any]) -> str:
    def listed(values: Sequence[float | None]) -> str:
        return " ".join(table_cell(v) for v in values)

    out = [
        f"coordinator search SQL on the full tables, EXPLAIN ANALYZE for"
        f" {explained['children']} children (ms):"
    ]
    for name in ("custom", "generic"):
        run = explained[name]
        out.append(
            f"  {name} plan: planning {listed(run['planning_ms'])};"
            f" execution {listed(run['execution_ms'])}"
        )
    out.append("  the generic plan of the last child:")
    out += [f"    {line}" for line in explained["generic"]["plan"]]
    return "\n".join(out)


def _seeding_lines(seeding: Mapping[str, Any]) -> str:
    tables = ", ".join(
        f"{name} {t['rows']:,} rows / {t['total_mb']:g} MB" for name, t in seeding["tables"].items()
    )
    return (
        f"seeding: {seeding['plans']:,} plans + {seeding['care_teams']:,} care teams in"
        f" {seeding['seconds']:g} s = {seeding['plans_per_second']:,.0f} plans per second"
        f" ({seeding['batch']} children per transaction, {seeding['connections']} at once),"
        f" then VACUUM ANALYZE {seeding['vacuum_analyze_s']:g} s\n  tables: {tables}"
    )


def _headline_table(phases: Sequence[Mapping[str, Any]]) -> str:
    rows = [
        [
            p["name"],
            p["clients"],
            p["headline"]["count"],
            p["headline"]["errors"],
            p["headline"]["per_second"],
            p["cpu"]["server_total_s"],
            p["headline"]["per_server_cpu_second"],
            p["headline"]["p50_ms"],
            p["headline"]["p99_ms"],
            p["headline"]["max_ms"],
        ]
        for p in phases
    ]
    headers = ["phase", "clients", "count", "errors", "per s", "server CPU s", "per CPU-s",
               "p50 ms", "p99 ms", "max ms"]  # fmt: skip
    return "per phase (count = requests completed in the window)\n" + text_table(headers, rows)
