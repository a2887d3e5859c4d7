"""Phases 1-2: the local decision functions, per CPU-second (`decide`, `visibility`)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from bench.consent.population import decision_cases
from bench.consent.world import ACTOR_MIX, CATEGORY, DECISION_CASES, ConsentBench, Interrupt
from bench.report import (
    per_cpu_second,
)
from shared.access.decision import (
    AccessContext,
    actor_keys,
    decide,
    visibility,
)


async def cpu_loop(
    step: Callable[[int], object], budget: float, batch: int, interrupt: Interrupt
) -> tuple[int, float, float]:
    """Call `step(i)` in batches until `budget` CPU seconds are spent; (calls, CPU s, wall s).

    Between batches (of a few milliseconds) the event loop gets a turn, so that Ctrl-C is
    handled promptly."""
    calls = 0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    while True:
        for _ in range(batch):
            step(calls)
            calls += 1
        cpu = time.process_time() - cpu0
        if cpu >= budget:
            return calls, cpu, time.perf_counter() - wall0
        await asyncio.sleep(0)
        interrupt.check()


async def measure_decisions(bench: ConsentBench) -> dict[str, Any]:
    """Decisions per CPU-second of `decide` over the generated view (pure local work)."""
    cases = decision_cases(bench.population, bench.rng, DECISION_CASES)
    bases = Counter(decide(*case).basis for case in cases)  # also warms up
    size = len(cases)

    def step(i: int) -> None:
        state, facts, context = cases[i % size]
        decide(state, facts, context)

    calls, cpu, wall = await cpu_loop(step, bench.options.local_seconds, 1000, bench.interrupt)
    return {
        "name": "decide",
        "what": "shared.access.decision.decide(state, facts, context), prepared cases",
        "decisions": calls,
        "cpu_s": round(cpu, 4),
        "wall_s": round(wall, 4),
        "per_cpu_second": per_cpu_second(calls, cpu),
        "per_wall_second": per_cpu_second(calls, wall),
        "cpu_us_per_decision": round(cpu * 1e6 / calls, 3),
        "cases": size,
        "actor_mix_percent": dict(ACTOR_MIX),
        "basis_mix_percent": {basis: round(100 * n / size, 1) for basis, n in bases.most_common()},
    }


async def measure_visibility(bench: ConsentBench) -> dict[str, Any]:
    """Search filters per CPU-second for the reader (grants for ~1 % of the patients)."""
    view = bench.view
    caller = bench.caller()
    context = AccessContext(caller=caller, day=bench.population.day)
    keys = actor_keys(caller)
    states = view.states_for(keys)
    found = visibility(states, CATEGORY, context)

    def step(i: int) -> None:
        visibility(view.states_for(actor_keys(caller)), CATEGORY, context)

    calls, cpu, wall = await cpu_loop(step, bench.options.local_seconds, 100, bench.interrupt)
    return {
        "name": "visibility",
        "what": "view.states_for(actor_keys(caller)) + visibility(states, category, context)",
        "filters": calls,
        "cpu_s": round(cpu, 4),
        "wall_s": round(wall, 4),
        "per_cpu_second": per_cpu_second(calls, cpu),
        "per_wall_second": per_cpu_second(calls, wall),
        "cpu_us_per_filter": round(cpu * 1e6 / calls, 3),
        "actor_keys": keys,
        "states_found": len(states),
        "patients_in_filter": len(found.patients),
        "share_of_patients": round(len(states) / len(bench.population.states), 4),
    }
