"""The printed summary of a referral benchmark result."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bench.report import (
    table_cell,
    text_table,
)


def format_referral_report(result: Mapping[str, Any]) -> str:
    """The printed summary of a ``referral`` result (every number is also in the JSON)."""
    params, machine = result["parameters"], result["machine"]
    phases = result.get("phases", [])
    out = [
        f"barnebro referral benchmark — database {params['database']},"
        f" {params['patients']} children, {params['seconds']:g} s per phase after"
        f" {params['warmup_seconds']:g} s warm-up, nproc {machine['nproc']},"
        f" Python {machine['python']}",
    ]
    errors = result.get("errors_total", 0)
    if errors:
        out.append(
            f"!! {errors} FAILED REQUESTS in the measured windows: the phases with errors do"
            " not measure what they claim; see the error bodies below"
        )
    out += ["", _headline_table(phases), "", _kinds_table(phases), "", cpu_summary(phases)]
    ratios = result.get("ratios", {})
    if ratios:
        out += ["", "scaling (1.0 = as efficient as at the first client count)"]
        out += [f"  {name}: {table_cell(value)}" for name, value in ratios.items()]
    out += error_lines(phases)
    cleanup = result.get("cleanup", {})
    out.append(
        f"\ncleanup: schemas {', '.join(cleanup.get('dropped_schemas', [])) or '-'};"
        f" data directory removed: {cleanup.get('data_dir_removed')}"
    )
    out += [f"  cleanup problem: {problem}" for problem in cleanup.get("problems", [])]
    return "\n".join(out)


def _headline_table(phases: Sequence[Mapping[str, Any]]) -> str:
    rows = [
        [
            p["name"],
            p["clients"],
            p["headline"]["count"],
            p["headline"]["errors"],
            p["errors"],
            p["headline"]["per_second"],
            p["cpu"]["server_total_s"],
            p["headline"]["per_server_cpu_second"],
            p["requests_per_server_cpu_second"],
            p["headline"]["p50_ms"],
            p["headline"]["p99_ms"],
        ]
        for p in phases
    ]
    headers = ["phase", "clients", "count", "failed", "req errors", "per s",
               "server CPU s", "per CPU-s", "req/CPU-s", "p50 ms", "p99 ms"]  # fmt: skip
    return "per phase (count = submits or complete lifecycles ending in the window)\n" + text_table(
        headers, rows
    )


def _kinds_table(phases: Sequence[Mapping[str, Any]]) -> str:
    rows = [
        [f"{p['name']}: {kind}", p["clients"], s["count"], s["errors"], s["p50_ms"], s["p99_ms"]]
        for p in phases
        for kind, s in p["operations"].items()
    ]
    return "per request kind\n" + text_table(
        ["request", "clients", "count", "errors", "p50 ms", "p99 ms"], rows
    )


def cpu_summary(phases: Sequence[Mapping[str, Any]]) -> str:
    names = list(dict.fromkeys(n for p in phases for n in p["cpu"]["per_process_s"]))
    rows = []
    for p in phases:
        cpu = p["cpu"]
        rows.append(
            [
                f"{p['name']} {p['clients']}",
                *(cpu["per_process_s"].get(n) for n in names),
                cpu["server_total_s"],
                cpu["load_generator_s"],
                cpu["unattributed_s"],
                cpu["machine_steal_s"],
            ]
        )
    headers = ["CPU seconds", *names, "server", "load gen", "unattributed", "steal"]
    return (
        "CPU seconds in each window (server = the processes named; load generator and"
        " other load not counted)\n" + text_table(headers, rows)
    )


def error_lines(phases: Sequence[Mapping[str, Any]]) -> list[str]:
    out = []
    for p in phases:
        for s in p["error_samples"]:
            where = "" if s["in_measured_window"] else " (outside window)"
            out.append(
                f"  {p['name']} {p['clients']}: {s['operation']} {s['method']} {s['path']}"
                f" -> {s['status']}{where}: {s['body']}"
            )
    return ["", "first error bodies:", *out] if out else []
