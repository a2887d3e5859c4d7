"""The phases: write-to-partner latency per channel at fixed event rates."""

from __future__ import annotations

import time
from collections.abc import (
    Iterable,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from typing import Any

import asyncpg

from bench.cpu import CpuMeter, CpuUsage
from bench.event_source import (
    TaskSource,
    Writes,
    open_loop,
    write_event,
)
from bench.load import PidLookup, Recorder, run_phase
from bench.partner import (
    Ledger,
    delivery_summary,
    event_differences,
    spread,
)
from bench.report import (
    per_cpu_second,
    ratio,
)
from bench.subscriptions.world import SANITY_LIMIT, Channel, SubscriptionsOptions


def backend_groups(conn: asyncpg.Connection[Any], groups: Mapping[str, str]) -> PidLookup:
    """The PostgreSQL backends of each application name in `groups` (label → name)."""
    labels = {name: label for label, name in groups.items()}

    async def lookup() -> Mapping[str, Iterable[int]]:
        rows = await conn.fetch(
            "SELECT pid, application_name FROM pg_stat_activity"
            " WHERE application_name = ANY($1::text[])",
            list(labels),
        )
        found: dict[str, list[int]] = {label: [] for label in groups}
        for row in rows:
            found[labels[str(row["application_name"])]].append(int(row["pid"]))
        return found

    return lookup


@dataclass(frozen=True)
class Measurement:
    source: TaskSource
    ledger: Ledger
    meter: CpuMeter
    backends: PidLookup
    options: SubscriptionsOptions


async def measure_channel(
    channel: Channel,
    rate: float,
    m: Measurement,
    limit: Mapping[str, Any] | None,
    idle: Mapping[str, Any] | None,
) -> dict[str, Any]:
    phase = f"{channel.name} {rate:g}/s"
    recorder, writes = Recorder(), Writes()

    async def fire(due: float, measured: bool) -> None:
        if measured:
            writes.scheduled += 1
        task = channel.next_task()
        await write_event(m.source, m.ledger, task, phase, measured, due, writes, recorder)

    notifications_before = m.ledger.notifications[phase]
    window = await run_phase(
        [open_loop(rate, fire, recorder)],
        recorder,
        m.meter,
        warmup=m.options.warmup,
        seconds=m.options.seconds,
        extra_pids=m.backends,
    )
    stopped = time.perf_counter()
    await m.ledger.settled(phase, m.options.late_after)
    drained = time.perf_counter() - stopped
    delivered = delivery_summary(m.ledger.of_phase(phase), m.options.late_after)
    count, usage = delivered["delivered"], window.usage
    notifications = m.ledger.notifications[phase] - notifications_before
    errors = writes.commit.errors + delivered["missing"] + delivered["late"]
    summary: dict[str, Any] = {
        "channel": channel.name,
        "rate": rate,
        "window_s": round(window.seconds, 3),
        "scheduled": writes.scheduled,
        **delivered,
        "write_errors": writes.commit.errors,
        "errors": errors,
        "errors_outside_window": recorder.unmeasured_errors + delivered["missing_outside_window"],
        "delivered_per_second": round(count / window.seconds, 1),
        "notifications": notifications,
        "events_per_notification": round(len(m.ledger.of_phase(phase)) / notifications, 2)
        if notifications
        else None,
        "write": writes.commit.summary(window.seconds),
        "schedule_lag": spread(writes.lags),
        "drain_s": round(drained, 3),
        "per_server_cpu_second": per_cpu_second(count, usage.server),
        "cpu": usage.as_dict(),
        "cpu_ms_per_event": cpu_per_event(usage, count),
        "server_cpu_ms_per_event_above_idle": above_idle(usage, count, window.seconds, idle),
        "vs_raw": versus_raw(delivered["latency"], limit),
        "error_samples": [s.as_dict() for s in recorder.samples],
    }
    if rate == m.options.aim_rate:
        p99 = delivered["latency"]["p99_ms"]
        summary["aim"] = {
            "p99_ms": m.options.aim_p99_ms,
            "met": bool(count) and p99 <= m.options.aim_p99_ms,
        }
    return summary


def cpu_per_event(usage: CpuUsage, events: int) -> dict[str, float | None]:
    """CPU ms per delivered event of each server process, the server and this process
    (the source's writes and relay, the partners)."""
    if not events:
        return {}
    found: dict[str, float | None] = {
        name: round(seconds * 1000 / events, 3) for name, seconds in usage.seconds.items()
    }
    found["server"] = round(usage.server * 1000 / events, 3)
    found["load generator"] = round(usage.load_generator * 1000 / events, 3)
    return found


def above_idle(
    usage: CpuUsage, events: int, seconds: float, idle: Mapping[str, Any] | None
) -> float | None:
    """Server CPU ms per event once what the idle stack spends in as long is taken off."""
    if not events or idle is None:
        return None
    busy = usage.server - float(idle["server_cpu_s_per_s"]) * seconds
    return round(busy * 1000 / events, 3)


def versus_raw(latency: Mapping[str, Any], limit: Mapping[str, Any] | None) -> dict[str, Any]:
    """The phase's p50 and p99 as multiples of the raw NATS ones at the same rate."""
    if limit is None:
        return {}
    core, stream = limit["core"]["latency"], limit["jetstream"]["latency"]
    return {
        "core_p50_ms": core["p50_ms"],
        "core_p99_ms": core["p99_ms"],
        "jetstream_p50_ms": stream["p50_ms"],
        "jetstream_p99_ms": stream["p99_ms"],
        "p50_over_core_p50": ratio(latency["p50_ms"], core["p50_ms"]),
        "p99_over_core_p99": ratio(latency["p99_ms"], core["p99_ms"]),
        "p99_over_jetstream_p99": ratio(latency["p99_ms"], stream["p99_ms"]),
    }


async def sanity(channels: Sequence[Channel], m: Measurement) -> dict[str, Any]:
    """One write per channel, not measured: each must reach its partner, and its event
    must be the one the referral service itself raised for the same change of the same
    Task while it was set up through the API."""
    recorder, writes = Recorder(measuring=True), Writes()
    delivered: dict[str, float] = {}
    compared: dict[str, str] = {}
    for channel in channels:
        started = time.perf_counter()
        task = channel.next_task()
        await write_event(m.source, m.ledger, task, "sanity", False, started, writes, recorder)
        if recorder.samples:
            raise RuntimeError(f"the source cannot write a Task: {recorder.samples[0].as_dict()}")
        if not await m.ledger.settled("sanity", SANITY_LIMIT):
            raise RuntimeError(
                f"an event did not reach the {channel.name} partner in {SANITY_LIMIT:g} s;"
                f" problems: {m.ledger.problem_samples}"
            )
        delivered[channel.name] = round((time.perf_counter() - started) * 1000, 1)
        ours = next((e for k, e in m.ledger.source_events.items() if k[0] == task.id), None)
        theirs = m.ledger.service_events.get((task.id, str((ours or {}).get("type"))))
        if ours is None or theirs is None:
            raise RuntimeError(f"no event of Task/{task.id} to compare: {ours}, {theirs}")
        differences = event_differences(ours, theirs)
        if differences:
            raise RuntimeError(
                f"the {m.options.source} source's event differs from the referral service's"
                f" in {differences}: {ours} vs {theirs}"
            )
        compared[channel.name] = str(ours["type"])
    return {"first_delivery_ms": delivered, "event_same_as_the_service_raised": compared}
