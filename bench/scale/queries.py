"""The reads and searches measured at each size, and the fixed-count runner that times them.

Each query is asked by the party that would ask it in a deployment (the child's GP, the
BUP coordinating its team), about a random child that has what the query looks for, and
its answer is checked: a read or search that answers 200 with the wrong or no resource
is an error, so a faster empty answer cannot pass for a fast one. Every query runs a fixed
number of requests at a fixed concurrency, after a few unmeasured ones, at both sizes, so
the two runs differ only in what is stored.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import quote

from bench.careplan import coordinator_path, found_coordinator
from bench.cpu import CpuMeter, CpuUsage
from bench.load import HttpClient, PidLookup, Recorder, Reply
from bench.referral import bench_request
from bench.referral.clients import reply_json
from bench.report import per_cpu_second
from bench.scale.mix import Child
from bench.scale.world import others_cpu_s
from shared.identifiers import FNR_SYSTEM

CONTROL = ("gateway", "nats-server")
"""Processes whose work per request does not depend on what is stored (checking the
token, routing, carrying the request and the answer): their CPU per request at the two
sizes shows whether the machine ran at the same speed in both measurements."""

ServerId = Callable[[str], str]
"""The id the server gave the resource of a source `Type/id`."""


@dataclass(frozen=True)
class Asked:
    """One request of a query about one child: who asks, what, and what must come back."""

    asker: str
    """The organisasjonsnummer whose token asks."""
    path: str
    expect: Callable[[Reply], dict[str, Any] | None]


@dataclass(frozen=True)
class Query:
    name: str
    what: str
    eligible: Callable[[Child], bool]
    ask: Callable[[Child, ServerId, date], Asked]


def _entries(reply: Reply, mode: str) -> list[dict[str, Any]]:
    """The resources of a searchset Bundle found as `mode` (match or include)."""
    return [
        entry["resource"]
        for entry in (reply_json(reply) or {}).get("entry") or []
        if isinstance(entry, dict)
        and (entry.get("search") or {}).get("mode", "match") == mode
        and isinstance(entry.get("resource"), dict)
    ]


def _found(reply: Reply, mode: str, wanted: Sequence[str]) -> dict[str, Any] | None:
    """The answer, if its `mode` entries are exactly the resources `wanted` (`Type/id`)."""
    found = sorted(f"{r.get('resourceType')}/{r.get('id')}" for r in _entries(reply, mode))
    return {mode: found} if found == sorted(wanted) else None


def _read(child: Child, server_id: ServerId, day: date) -> Asked:
    patient = server_id(child.patient_key)

    def expect(reply: Reply) -> dict[str, Any] | None:
        found = reply_json(reply) or {}
        same = found.get("resourceType") == "Patient" and found.get("id") == patient
        return found if same else None

    return Asked(child.gp, f"/Patient/{patient}", expect)


def _by_identifier(child: Child, server_id: ServerId, day: date) -> Asked:
    patient = f"Patient/{server_id(child.patient_key)}"
    token = quote(f"{FNR_SYSTEM}|{child.fnr}", safe=":/.")
    return Asked(
        child.gp, f"/Patient?identifier={token}", lambda reply: _found(reply, "match", [patient])
    )


def _parents(child: Child, server_id: ServerId, day: date) -> Asked:
    parents = [
        f"RelatedPerson/{server_id(f'RelatedPerson/r{child.index}-{n}')}"
        for n in range(child.parents)
    ]
    path = f"/RelatedPerson?patient=Patient/{server_id(child.patient_key)}"
    return Asked(child.gp, path, lambda reply: _found(reply, "match", parents))


def _referrals(child: Child, server_id: ServerId, day: date) -> Asked:
    referral = f"ServiceRequest/{server_id(child.referral_key)}"
    path = f"/ServiceRequest?patient=Patient/{server_id(child.patient_key)}"
    return Asked(child.gp, path, lambda reply: _found(reply, "match", [referral]))


def _coordinator(child: Child, server_id: ServerId, day: date) -> Asked:
    wanted = {"team": server_id(child.team_key), "coordinator": child.bup}

    def expect(reply: Reply) -> dict[str, Any] | None:
        found = found_coordinator(reply, day)
        return found if found == wanted else None

    assert child.bup is not None
    return Asked(child.bup, coordinator_path(server_id(child.patient_key), day), expect)


def _plan_with_team(child: Child, server_id: ServerId, day: date) -> Asked:
    plan = f"CarePlan/{server_id(child.plan_key)}"
    team = f"CareTeam/{server_id(child.team_key)}"
    path = f"/CarePlan?patient=Patient/{server_id(child.patient_key)}&_include=CarePlan:care-team"

    def expect(reply: Reply) -> dict[str, Any] | None:
        matched, included = _found(reply, "match", [plan]), _found(reply, "include", [team])
        return {**matched, **included} if matched and included else None

    assert child.bup is not None
    return Asked(child.bup, path, expect)


def _referred(child: Child) -> bool:
    return child.bup is not None


def _planned(child: Child) -> bool:
    return child.planned


def _anyone(child: Child) -> bool:
    return True


QUERIES = (
    Query("read", "GET Patient/{id}, as its GP", _anyone, _read),
    Query(
        "by-identifier",
        "GET Patient?identifier=<fnr system>|<fnr>, as its GP",
        _anyone,
        _by_identifier,
    ),
    Query(
        "parents",
        "GET RelatedPerson?patient=Patient/{id}, as its GP (1-2 found)",
        _anyone,
        _parents,
    ),
    Query("referrals", "GET ServiceRequest?patient=Patient/{id}, as its GP", _referred, _referrals),
    Query(
        "coordinator",
        "GET CareTeam?patient=…&role=koordinator&coordinator-period=le…&ge…, as the team's BUP",
        _planned,
        _coordinator,
    ),
    Query(
        "include",
        "GET CarePlan?patient=Patient/{id}&_include=CarePlan:care-team, as its BUP",
        _planned,
        _plan_with_team,
    ),
)
"""Every query, in the order it is measured."""


@dataclass(frozen=True)
class Asking:
    """What every query at one size is measured with."""

    clients: Mapping[str, HttpClient]
    """A client per organisation that asks (its token)."""
    server_id: ServerId
    meter: CpuMeter
    backends: PidLookup | None
    day: date
    settle: Callable[[], Awaitable[float]]
    """Waits until the stack has settled (the audit trail of the answers stored); the
    seconds it took."""


async def _ask_all(
    query: Query, children: Sequence[Child], asking: Asking, recorder: Recorder, concurrency: int
) -> None:
    """Ask the query about each child in turn, `concurrency` requests under way at once."""
    queue = iter(children)

    async def worker() -> None:
        for child in queue:  # the workers share the iterator: each takes the next child
            asked = query.ask(child, asking.server_id, asking.day)
            client = asking.clients[asked.asker]
            await bench_request(client, recorder, query.name, "GET", asked.path, None, asked.expect)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def measure_query(
    query: Query,
    children: Sequence[Child],
    asking: Asking,
    *,
    requests: int,
    warmup: int,
    concurrency: int,
    rng: random.Random,
) -> dict[str, Any]:
    """`warmup` unmeasured then `requests` measured requests about random eligible
    children, each part followed by waiting until the stack has settled (the answers'
    audit trail stored), so that no query's work spills into the next; latency
    percentiles and errors of the measured requests, and the server CPU from their first
    to the end of that settling."""
    eligible = [child for child in children if query.eligible(child)]
    recorder = Recorder()
    await _ask_all(query, rng.choices(eligible, k=warmup), asking, recorder, concurrency)
    await asking.settle()
    chosen = rng.choices(eligible, k=requests)
    extra = await asking.backends() if asking.backends else None
    start = asking.meter.snapshot(extra)
    started = time.perf_counter()
    recorder.measuring = True
    await _ask_all(query, chosen, asking, recorder, concurrency)
    recorder.measuring = False
    seconds = time.perf_counter() - started
    settled = await asking.settle()
    extra = await asking.backends() if asking.backends else None
    usage = CpuMeter.usage(start, asking.meter.snapshot(extra))
    stats = recorder.ops[query.name]
    answered = len(stats.latencies)
    return {
        "what": query.what,
        "eligible_children": len(eligible),
        **stats.summary(seconds),
        "errors_in_warmup": recorder.unmeasured_errors,
        "seconds": round(seconds, 3),
        "settle_s": round(settled, 2),
        "server_cpu_s": round(usage.server, 3),
        "per_server_cpu_second": per_cpu_second(answered, usage.server),
        "control_cpu_ms_per_request": _per_request(usage, CONTROL, answered),
        "others_cpu_s": others_cpu_s(usage),
        "cpu": usage.as_dict(),
        "error_samples": [s.as_dict() for s in recorder.samples],
    }


def _per_request(usage: CpuUsage, names: Sequence[str], requests: int) -> float | None:
    """CPU ms per request of the processes `names`."""
    spent = sum(usage.seconds.get(name, 0.0) for name in names)
    return round(spent * 1000 / requests, 3) if requests else None
