"""The phases: referral submit and lifecycle per server CPU-second."""

from __future__ import annotations

import random
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from bench.cpu import CpuMeter
from bench.crud import (
    Identifiers,
    backend_lookup,
    phase_summary,
)
from bench.load import PidLookup, Recorder, http_client, run_phase
from bench.referral.clients import WORKERS, ReferralWorld, RunningStack
from bench.referral.setup import populate, sanity
from bench.referral.world import PHASES, REQUEST_KINDS, SERVERS, ReferralOptions
from bench.report import (
    OpStats,
    per_cpu_second,
    ratio,
)


@dataclass(frozen=True)
class Measurement:
    """What every phase is measured with."""

    world: ReferralWorld
    meter: CpuMeter
    backends: PidLookup | None
    options: ReferralOptions


async def measure_phase(name: str, clients: int, m: Measurement) -> dict[str, Any]:
    recorder, lifecycles = Recorder(), OpStats()
    seed = m.options.seed or 0
    workers = [
        WORKERS[name](m.world, recorder, lifecycles, random.Random(f"{seed}-{name}-{clients}-{i}"))
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
    summary.update(phase_summary(recorder, window, REQUEST_KINDS[name]))
    headline = recorder.ops["submit"] if name == "submit" else lifecycles
    summary["headline"] = {
        "operation": name,
        **headline.summary(window.seconds),
        "per_server_cpu_second": per_cpu_second(len(headline.latencies), window.usage.server),
    }
    summary["error_samples"] = [s.as_dict() for s in recorder.samples]
    return summary


def scaling_ratios(phases: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
    """Each phase at every client count against the same phase at the first count."""
    first: dict[str, Mapping[str, Any]] = {}
    ratios: dict[str, float | None] = {}
    for phase in phases:
        name, clients, headline = phase["name"], phase["clients"], phase["headline"]
        base = first.setdefault(name, phase)
        if base is phase:
            continue
        label = f"{name} {clients} vs {base['clients']} clients"
        ratios[f"{label}, per server CPU-s"] = ratio(
            headline["per_server_cpu_second"] or 0.0,
            base["headline"]["per_server_cpu_second"] or 0.0,
        )
        ratios[f"{label}, per wall s"] = ratio(
            headline["per_second"], base["headline"]["per_second"]
        )
    return ratios


async def measure(options: ReferralOptions, stack: RunningStack) -> dict[str, Any]:
    """Set up the world, check one lifecycle, run every phase at every client count."""
    monitor = None
    if options.database == "postgresql":
        monitor = await asyncpg.connect(options.database_url)
    try:
        meter = CpuMeter(
            {name: stack.pids[child] for name, child in SERVERS.items()},
            programs=["postgres"] if options.database == "postgresql" else [],
        )
        ids = Identifiers(options.seed if options.seed is not None else secrets.randbits(32))
        async with http_client(stack.base_url, "", max(options.clients)) as base:
            parties, children, waited = await populate(stack, base, ids, options.patients)
            world = ReferralWorld(
                gp=stack.client(base, parties.gp),
                bup=stack.client(base, parties.bup),
                parties=parties,
                children=children,
            )
            checked = await sanity(world)
            backends = backend_lookup(monitor, stack.tag) if monitor is not None else None
            measurement = Measurement(world, meter, backends, options)
            phases = []
            for clients in options.clients:
                for name in PHASES:
                    print(f"phase {name}, {clients} clients …", flush=True)
                    phases.append(await measure_phase(name, clients, measurement))
    finally:
        if monitor is not None:
            await monitor.close()
    organisations = {"fastlege": parties.gp, "bup": parties.bup, "kommune-helse": parties.kommune}
    return {
        "setup": {
            "waited_for_routing_s": round(waited, 3),
            "organisations": organisations,
            "patients": len(children),
            "sanity": checked,
        },
        "phases": phases,
    }
