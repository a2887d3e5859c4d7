"""The printed summary of a consent benchmark result."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bench.consent.checked import NATS_PROGRAM, VARIANTS
from bench.report import (
    table_cell,
    text_table,
)


def format_consent_report(result: Mapping[str, Any]) -> str:
    """The printed summary of a ``consent`` result (every number is also in the JSON)."""
    params, machine = result["parameters"], result["machine"]
    population = result.get("population", {})
    out = [
        f"barnebro consent benchmark — database {params['database']},"
        f" {population.get('patients')} patients ({population.get('grants')} grants),"
        f" {params['concurrency']} concurrent tasks, nproc {machine['nproc']},"
        f" Python {machine['python']}",
        "All rates are per CPU-second of this process unless marked wall.",
        "",
    ]
    local_rows: list[list[object]] = []
    compared = []
    for phase in result["phases"]:
        if phase["name"] == "decide":
            local_rows.append(
                [
                    "decide (per decision)",
                    phase["decisions"],
                    phase["cpu_s"],
                    phase["per_cpu_second"],
                    phase["cpu_us_per_decision"],
                ]
            )
        elif phase["name"] == "visibility":
            local_rows.append(
                [
                    f"visibility ({phase['states_found']} states = "
                    f"{phase['share_of_patients']:.1%} of patients)",
                    phase["filters"],
                    phase["cpu_s"],
                    phase["per_cpu_second"],
                    phase["cpu_us_per_filter"],
                ]
            )
        elif "checked" in phase:
            compared.append(phase)
    if population.get("view_apply_per_cpu_second"):
        local_rows.append(
            [
                "view.apply (seeding the view)",
                population["patients"],
                population["view_apply_cpu_s"],
                population["view_apply_per_cpu_second"],
                round(population["view_apply_cpu_s"] * 1e6 / population["patients"], 3),
            ]
        )
    if local_rows:
        out.append(
            text_table(["local evaluation", "calls", "CPU s", "per CPU-s", "CPU µs"], local_rows)
        )
    for phase in result["phases"]:
        if phase["name"] == "decide":
            mix = ", ".join(f"{k} {v}%" for k, v in phase["basis_mix_percent"].items())
            out.append(f"decision bases: {mix}")
    if compared:
        rows: list[list[object]] = []
        for phase in compared:
            for variant in ("unchecked", "checked"):
                s = phase[variant]
                rows.append(
                    [
                        f"{phase['name']} {variant}",
                        s["requests"],
                        s["errors"],
                        s["process_cpu_s"],
                        s["per_process_cpu_second"],
                        s["per_wall_second"],
                        s["p50_ms"],
                        s["p99_ms"],
                    ]
                )
        out += [
            "",
            f"checked vs unchecked, in-process FhirRouter.handle, {params['windows']}"
            f" interleaved windows of {params['window_seconds']:g} s",
        ]
        out.append(
            text_table(
                ["", "requests", "errors", "CPU s", "per CPU-s", "per wall s", "p50 ms", "p99 ms"],
                rows,
            )
        )
        out.append("")
        for phase in compared:
            verdict = "met" if phase["aim_met"] else "NOT met"
            with_servers = phase["ratio_with_servers"]
            per_cpu = _ratio(phase["ratio_per_process_cpu_second"])
            out.append(
                f"{phase['name']}: checked/unchecked {per_cpu}"
                f" per CPU-s (aim ≥ {phase['aim']:.2f}: {verdict});"
                f" pairs {_ratio(phase['pair_ratio_min'])}–{_ratio(phase['pair_ratio_max'])}"
                f" (median {_ratio(phase['pair_ratio_median'])});"
                f" wall {_ratio(phase['ratio_per_wall_second'])}"
                + (
                    f"; incl. nats-server/postgres CPU {_ratio(with_servers)}"
                    if with_servers is not None
                    else ""
                )
            )
            out.append(
                f"  audit records written {phase['audit_records_written']}"
                f" in {phase['audit_messages_written']} messages"
                f" for {phase['checked_requests']} checked requests"
            )
            for sample in phase["error_samples"]:
                out.append(f"  error: {sample}")
    for phase in result["phases"]:
        if phase["name"] == "checked-parts":
            out += ["", "where the extra CPU of a checked request goes (each part measured alone)"]
            rows = [
                [part["part"], part["calls"], part["per_cpu_second"], part["cpu_us_each"]]
                for part in phase["parts"]
            ]
            out.append(text_table(["part", "calls", "per CPU-s", "CPU µs each"], rows))
            for name in ("read", "search"):
                info = phase[name]
                out.append(
                    f"{name}: unchecked {table_cell(info['unchecked_cpu_us'])} CPU µs, checked"
                    f" overhead {table_cell(info['overhead_cpu_us'])} CPU µs, its parts measured"
                    f" alone {table_cell(info['parts_cpu_us'])} CPU µs"
                )
    for phase in result["phases"]:
        if phase["name"] == "transport":
            out += _transport_report(phase, params)
        elif phase["name"] == "withdrawal":
            out += _withdrawal_report(phase)
    cleanup = result.get("cleanup", {})
    schemas = cleanup.get("dropped_schemas", [])
    out.append(
        f"\ncleanup: streams {', '.join(cleanup.get('deleted_streams', [])) or '-'};"
        f" buckets {', '.join(cleanup.get('deleted_buckets', [])) or '-'}"
        + (f"; schemas {', '.join(schemas)}" if schemas else "")
    )
    for problem in cleanup.get("problems", []):
        out.append(f"  cleanup problem: {problem}")
    return "\n".join(out)


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _transport_report(phase: Mapping[str, Any], params: Mapping[str, Any]) -> list[str]:
    rows: list[list[object]] = []
    for name in ("read", "search"):
        for variant in VARIANTS:
            s = phase[name][variant]
            rows.append(
                [
                    f"{name} {variant}",
                    s["requests"],
                    s["errors"],
                    s["process_cpu_s"],
                    s["servers_cpu_s"].get(NATS_PROGRAM, "-"),
                    s["per_process_cpu_second"],
                    s["per_cpu_second_with_nats"] or "-",
                    s["per_wall_second"],
                    s["p50_ms"],
                    s["p99_ms"],
                ]
            )
    out = [
        "",
        "checked vs unchecked over NATS request/reply (Forwarder → nats-server → ServiceHost →"
        f" FhirService; no gateway/HTTP), {params['windows']} interleaved windows of"
        f" {params['window_seconds']:g} s; CPU counted: {phase['cpu_counted']}",
        text_table(
            [
                "",
                "requests",
                "errors",
                "CPU s",
                "nats CPU s",
                "per CPU-s",
                "per CPU-s +nats",
                "per wall s",
                "p50 ms",
                "p99 ms",
            ],
            rows,
        ),
        "",
    ]
    for name in ("read", "search"):
        c = phase[name]
        verdict = "met" if c["aim_met"] else "NOT met"
        out.append(
            f"transport {name}: checked/unchecked {_ratio(c['headline_ratio'])}"
            f" {phase['headline']} (aim ≥ {c['aim']:.2f}: {verdict});"
            f" process only {_ratio(c['ratio_per_process_cpu_second'])};"
            f" pairs {_ratio(c['pair_ratio_min'])}–{_ratio(c['pair_ratio_max'])}"
            f" (median {_ratio(c['pair_ratio_median'])}); wall {_ratio(c['ratio_per_wall_second'])}"
        )
        out.append(
            f"  audit records written {c['audit_records_written']} in"
            f" {c['audit_messages_written']} messages for {c['checked_requests']} checked requests"
        )
        for sample in c["error_samples"]:
            out.append(f"  error: {sample}")
    for problem in phase["problems"]:
        out.append(f"  problem: {problem}")
    return out


def _withdrawal_report(phase: Mapping[str, Any]) -> list[str]:
    relay = phase["outbox_relay"]

    def spread(values: Mapping[str, float]) -> str:
        return (
            f"p50 {values['p50_ms']:.1f} ms, p99 {values['p99_ms']:.1f} ms,"
            f" max {values['max_ms']:.1f} ms"
        )

    verdict = "met" if phase["aim_met"] else "NOT met"
    out = [
        "",
        f"withdrawal → every consent view: {phase['withdrawals']} withdrawals,"
        f" {len(phase['views'])} views ({', '.join(phase['views'])}); outbox relay poll"
        f" {relay['poll_interval_s']:g} s, linger {relay['linger_s'] * 1000:g} ms",
        f"  request sent → last view: {spread(phase['to_last_view'])}"
        f" (aim < {phase['aim_s'] * 1000:.0f} ms: {verdict};"
        f" {phase['within_aim']}/{phase['withdrawals']} within)",
        f"  reply (committed) → last view: {spread(phase['reply_to_last_view'])}",
        f"  request sent → first view: {spread(phase['to_first_view'])}",
        f"  the withdrawal request itself: {spread(phase['withdrawal_request'])}",
        f"  a new consent's grant, reply → last view: {spread(phase['grant_reply_to_last_view'])}",
    ]
    for problem in phase["problems"]:
        out.append(f"  problem: {problem}")
    return out
