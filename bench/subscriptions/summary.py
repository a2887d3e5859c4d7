"""The printed summary of a subscriptions benchmark result."""

from __future__ import annotations

from collections.abc import (
    Mapping,
    Sequence,
)
from typing import Any

from bench.report import (
    table_cell,
    text_table,
)
from bench.subscriptions.world import TOPIC
from services.subscriptions.domain.settings import DEFAULT_MAX_COUNT


def format_subscriptions_report(result: Mapping[str, Any]) -> str:
    """The printed summary of a ``subscriptions`` result (every number is also in the JSON)."""
    params, machine = result["parameters"], result["machine"]
    phases, limits = result.get("phases", []), result.get("limits", [])
    max_count = params["max_count"] or DEFAULT_MAX_COUNT
    out = [
        f"barnebro subscriptions benchmark — PostgreSQL, source {params['source']},"
        f" {params['referrals_per_channel']} referrals per channel, topic {TOPIC} filtered by"
        f" performer, id-only, at most {max_count} events per notification;"
        f" {params['seconds']:g} s per phase after {params['warmup_seconds']:g} s warm-up, raw"
        f" NATS {params['limit_seconds']:g} s, late after {params['late_after_seconds']:g} s;"
        f" nproc {machine['nproc']}, Python {machine['python']}",
    ]
    errors = result.get("errors_total", 0)
    if errors:
        out.append(
            f"!! {errors} ERRORS (failed writes, missing or late events, lost or unreadable"
            " notifications): the phases with errors do not measure what they claim; see below"
        )
    out += ["", latency_table(phases, limits), "", stage_table(phases), "", cpu_table(phases)]
    idle = result.get("idle")
    if idle:
        above = [
            f"{p['channel']} {p['rate']:g}/s {table_cell(p['server_cpu_ms_per_event_above_idle'])}"
            for p in phases
        ]
        out.append(
            f"idle stack: {idle['server_cpu_s_per_s']:.3f} server CPU-s per second"
            f" ({idle['window_s']:g} s with nothing written); server CPU ms per event above"
            f" idle: {', '.join(above)}"
        )
    out += aim_lines(phases)
    out += problem_lines(result)
    cleanup = result.get("cleanup", {})
    out.append(
        f"\ncleanup: schemas {', '.join(cleanup.get('dropped_schemas', [])) or '-'};"
        f" data directory removed: {cleanup.get('data_dir_removed')}"
    )
    out += [f"  cleanup problem: {problem}" for problem in cleanup.get("problems", [])]
    return "\n".join(out)


def latency_table(phases: Sequence[Mapping[str, Any]], limits: Sequence[Mapping[str, Any]]) -> str:
    rows: list[list[object]] = []
    for limit in limits:
        rate = limit["rate"]
        for kind, label in (("core", "raw core NATS"), ("jetstream", "raw JetStream")):
            raw = limit[kind]
            lat = raw["latency"]
            rows.append([label, f"{rate:g}", raw["sent"], raw["received"], raw["errors"],
                         lat["p50_ms"], lat["p99_ms"], lat["max_ms"], None, None,
                         raw["messages_per_nats_cpu_second"], raw["nats_cpu_s"], None])  # fmt: skip
        for p in phases:
            if p["rate"] != rate:
                continue
            lat, vs = p["latency"], p["vs_raw"]
            rows.append([p["channel"], f"{rate:g}", p["written"], p["delivered"], p["errors"],
                         lat["p50_ms"], lat["p99_ms"], lat["max_ms"],
                         vs.get("p99_over_core_p99"), vs.get("p99_over_jetstream_p99"),
                         p["per_server_cpu_second"], p["cpu"]["server_total_s"],
                         p["events_per_notification"]])  # fmt: skip
    headers = ["path", "rate/s", "written", "delivered", "errors", "p50 ms", "p99 ms", "max ms",
               "p99/core", "p99/JS", "per CPU-s", "CPU s", "ev/notif"]  # fmt: skip
    return (
        "write → partner latency per event; raw rows: publish → subscriber at the same rate."
        " p99/core, p99/JS: p99 as a multiple of the raw p99; per CPU-s: events delivered per"
        " server CPU-s (raw: messages per nats-server CPU-s)\n" + text_table(headers, rows)
    )


def stage_table(phases: Sequence[Mapping[str, Any]]) -> str:
    def both(values: Mapping[str, Any]) -> str:
        return f"{table_cell(values['p50_ms'])} / {table_cell(values['p99_ms'])}"

    rows = [
        [
            f"{p['channel']} {p['rate']:g}/s",
            both(p["write"]),
            both(p["stages"]["write_to_nats"]),
            both(p["stages"]["nats_to_partner"]),
            both(p["latency"]),
            both(p["schedule_lag"]),
        ]
        for p in phases
    ]
    headers = ["phase", "write", "write → NATS", "NATS → partner", "write → partner",
               "start lag"]  # fmt: skip
    return (
        "where the time goes, p50 / p99 ms (write = its transaction, from its start; start lag ="
        " how late the source began writes)\n" + text_table(headers, rows)
    )


def cpu_table(phases: Sequence[Mapping[str, Any]]) -> str:
    names = list(dict.fromkeys(n for p in phases for n in p["cpu_ms_per_event"]))
    rows: list[list[object]] = [
        [f"{p['channel']} {p['rate']:g}/s", *(p["cpu_ms_per_event"].get(n) for n in names)]
        for p in phases
    ]
    for p in phases:
        cpu = p["cpu"]
        seconds = [cpu["per_process_s"].get(n) for n in names[:-2]]
        label = f"{p['channel']} {p['rate']:g}/s, CPU s"
        rows.append([label, *seconds, cpu["server_total_s"], cpu["load_generator_s"]])
    return (
        "CPU ms per delivered event, then CPU seconds of the window (server = the processes"
        " named and every postgres; load generator = this process: the source and its relay,"
        " the partners)\n" + text_table(["phase", *names], rows)
    )


def aim_lines(phases: Sequence[Mapping[str, Any]]) -> list[str]:
    out = []
    for p in phases:
        aim = p.get("aim")
        if aim is not None:
            verdict = "met" if aim["met"] else "NOT met"
            out.append(
                f"aim p99 ≤ {aim['p99_ms']:g} ms at {p['rate']:g}/s, {p['channel']}:"
                f" {verdict} (p99 {table_cell(p['latency']['p99_ms'])} ms)"
            )
    return ["", *out] if out else []


def problem_lines(result: Mapping[str, Any]) -> list[str]:
    out = []
    for p in result.get("phases", []):
        label = f"{p['channel']} {p['rate']:g}/s"
        if p["missing"] or p["late"] or p["write_errors"]:
            out.append(
                f"  {label}: {p['write_errors']} failed writes, {p['missing']} events missing,"
                f" {p['late']} late"
            )
        for s in p["error_samples"]:
            where = "" if s["in_measured_window"] else " (outside window)"
            out.append(f"  {label}: {s['method']} {s['path']} -> {s['status']}{where}: {s['body']}")
    for limit in result.get("limits", []):
        for kind in ("core", "jetstream"):
            raw = limit[kind]
            if raw["errors"]:
                out.append(
                    f"  raw {kind} {limit['rate']:g}/s: {raw['missing']} missing,"
                    f" {raw['errors'] - raw['missing']} failed publishes {raw['error_samples']}"
                )
    partner = result.get("partner", {})
    if partner.get("unexpected_events"):
        out.append(f"  {partner['unexpected_events']} events notified that were never written")
    out += [f"  partner: {text}" for text in partner.get("problem_samples", [])]
    return ["", "errors:", *out] if out else []
