"""The comparison of the two sizes, and the printed summary of a scale result.

`compare` is the benchmark's verdict and is kept pure (the unit tests check it): per
query, p95 at the large size over p95 at the baseline, and whether it is within the aim's
factor. A query with any error at either size is not within the aim, whatever its
latencies: its percentiles are of the answers that were right.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bench.report import table_cell, text_table
from bench.scale.mix import IMPORT_ORDER
from bench.scale.world import RATIO_LIMIT


def _ratio(large: float, baseline: float) -> float | None:
    return round(large / baseline, 2) if baseline > 0 else None


def compare(
    baseline: Mapping[str, Mapping[str, Any]],
    large: Mapping[str, Mapping[str, Any]],
    limit: float = RATIO_LIMIT,
) -> dict[str, dict[str, Any]]:
    """Per query measured at both sizes: p50/p95/p99 ratios large ÷ baseline, whether
    the p95 ratio is within `limit` (None: no successful request at the baseline), and the
    control: the same ratio of the CPU per request of the processes whose work does not
    grow with what is stored (1.0: the machine ran as fast in both measurements)."""
    found: dict[str, dict[str, Any]] = {}
    for name, before in baseline.items():
        after = large.get(name)
        if after is None:
            continue
        ratio = _ratio(after["p95_ms"], before["p95_ms"])
        clean = before["errors"] == 0 and after["errors"] == 0
        found[name] = {
            "p95_baseline_ms": before["p95_ms"],
            "p95_large_ms": after["p95_ms"],
            "p95_ratio": ratio,
            "p50_ratio": _ratio(after["p50_ms"], before["p50_ms"]),
            "p99_ratio": _ratio(after["p99_ms"], before["p99_ms"]),
            "within": clean and ratio is not None and ratio <= limit,
            "control_cpu_ratio": _ratio(
                after["control_cpu_ms_per_request"] or 0.0,
                before["control_cpu_ms_per_request"] or 0.0,
            ),
        }
    return found


def aim(comparison: Mapping[str, Mapping[str, Any]], limit: float = RATIO_LIMIT) -> dict[str, Any]:
    """Whether every query's p95 at the large size is within `limit` × the baseline's."""
    beyond = [name for name, c in comparison.items() if not c["within"]]
    return {
        "p95_ratio_limit": limit,
        "met": bool(comparison) and not beyond,
        "not_within": beyond,
    }


def format_scale_report(result: Mapping[str, Any]) -> str:
    params, machine = result["parameters"], result["machine"]
    sizes = result.get("sizes", [])
    out = [
        f"barnebro scale benchmark — PostgreSQL, baseline {params['baseline']:,} and"
        f" {params['resources']:,} resources imported; {params['requests']} requests per"
        f" query at concurrency {params['concurrency']} (after {params['warmup_requests']}"
        f" unmeasured), nproc {machine['nproc']}, Python {machine['python']}",
    ]
    errors = result.get("errors_total", 0)
    if errors:
        out.append(
            f"!! {errors} ERRORS (refused imports, failed or wrong answers): the comparison"
            " does not measure what it claims; see the samples below"
        )
    if result.get("stopped"):
        out.append(f"!! stopped early: {result['stopped']}")
    for size in sizes:
        out += ["", _import_table(size), "", _query_table(size)]
    comparison = result.get("comparison") or {}
    if comparison:
        out += ["", _comparison_table(comparison)]
        verdict = result["aim"]
        limit = table_cell(verdict["p95_ratio_limit"])
        out.append(
            f"aim, p95 at {params['resources']:,} within {limit} × the p95 at"
            f" {params['baseline']:,}: {'met' if verdict['met'] else 'NOT met'}"
            + (f" ({', '.join(verdict['not_within'])} beyond)" if verdict["not_within"] else "")
        )
    out += _error_lines(sizes)
    cleanup = result.get("cleanup", {})
    out.append(
        f"\ncleanup: schemas {', '.join(cleanup.get('dropped_schemas', [])) or '-'};"
        f" data directory removed: {cleanup.get('data_dir_removed')}"
    )
    out += [f"  cleanup problem: {problem}" for problem in cleanup.get("problems", [])]
    return "\n".join(out)


def _import_table(size: Mapping[str, Any]) -> str:
    types = size["import"]
    rows = [
        [
            name,
            t["parties"],
            t["imported"],
            t["failed"],
            t["import_s"],
            t["per_second"],
            t["settle_s"],
            t["server_cpu_s"],
            t["per_server_cpu_second"],
            t["others_cpu_s"],
        ]
        for name in IMPORT_ORDER
        if (t := types.get(name)) is not None
    ]
    headers = ["type", "parties", "imported", "failed", "import s", "per s", "settle s",
               "server CPU s", "per CPU-s", "others' CPU s"]  # fmt: skip
    tables = size.get("database") or {}
    stored = "; ".join(
        f"{schema} {t['total_mb']:g} MB: "
        + ", ".join(f"{n:,} {kind}" for kind, n in t["resources_by_type"].items())
        for schema, t in tables.items()
    )
    return (
        f"{size['name']}: {size['children_added']:,} children added, {size['resources']:,}"
        f" resources imported in all ({size['children']:,} children); import (per s: wall"
        " during the import; per CPU-s: server CPU of the import and its settling)\n"
        + text_table(headers, rows)
        + f"\n  stored: {stored}; VACUUM ANALYZE {table_cell(size.get('vacuum_analyze_s'))} s"
    )


def _query_table(size: Mapping[str, Any]) -> str:
    rows = [
        [
            name,
            q["eligible_children"],
            q["count"],
            q["errors"],
            q["per_second"],
            q["per_server_cpu_second"],
            q["p50_ms"],
            q["p95_ms"],
            q["p99_ms"],
            q["max_ms"],
            q["control_cpu_ms_per_request"],
            q["others_cpu_s"],
        ]
        for name, q in size["queries"].items()
    ]
    headers = ["query", "children", "count", "errors", "per s", "per CPU-s", "p50 ms", "p95 ms",
               "p99 ms", "max ms", "control ms/req", "others' CPU s"]  # fmt: skip
    return (
        f"{size['name']}: queries (control: gateway + nats-server CPU per request; others':"
        " machine CPU not this run's, PostgreSQL beyond its backends included)\n"
        + text_table(headers, rows)
    )


def _comparison_table(comparison: Mapping[str, Mapping[str, Any]]) -> str:
    rows = [
        [
            name,
            c["p95_baseline_ms"],
            c["p95_large_ms"],
            c["p95_ratio"],
            c["p50_ratio"],
            c["p99_ratio"],
            "yes" if c["within"] else "NO",
            c["control_cpu_ratio"],
        ]
        for name, c in comparison.items()
    ]
    headers = ["query", "p95 baseline ms", "p95 large ms", "p95 ratio", "p50 ratio",
               "p99 ratio", "within", "control"]  # fmt: skip
    return (
        "large ÷ baseline (control: gateway + nats-server CPU per request, large ÷ baseline;"
        " far from 1.0, the machine's speed changed between the two)\n" + text_table(headers, rows)
    )


def _error_lines(sizes: Sequence[Mapping[str, Any]]) -> list[str]:
    out = []
    for size in sizes:
        for name, t in size["import"].items():
            for sample in t["failure_samples"]:
                out.append(f"  {size['name']} import {name} {sample['where']}: {sample['reason']}")
        for name, q in size["queries"].items():
            for s in q["error_samples"]:
                out.append(
                    f"  {size['name']} {name} GET {s['path']} -> {s['status']}"
                    f"{'' if s['in_measured_window'] else ' (warm-up)'}: {s['body'][:300]}"
                )
    return ["", "first errors:", *out] if out else []
