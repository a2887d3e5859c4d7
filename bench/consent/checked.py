"""Phases 3-4: the same read and search checked and unchecked, side by side, and where
the checked request's extra CPU goes."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from bench.consent.local import cpu_loop
from bench.consent.world import (
    AIM,
    BASE_URL,
    SERVICE,
    TARGET_DOCUMENTS,
    BenchDocument,
    ConsentBench,
    ConsentOptions,
    Interrupt,
)
from bench.cpu import CLOCK_TICKS, pid_listening, process_ticks, program_ticks
from bench.report import (
    per_cpu_second,
    percentile,
    ratio,
)
from shared.access.audit import AuditPublisher, AuditRecord
from shared.access.guard import AccessGuard
from shared.fhir.errors import FhirError
from shared.fhir.router import FhirRouter
from shared.fhir.search_query import parse_search
from shared.store.access_sql import AccessFilter
from shared.store.resource_store import SearchPage
from shared.transport.wire import Caller, FhirRequest, FhirResponse

SERVER_PROGRAMS = ("nats-server", "postgres")
"""Local server processes whose CPU is also reported (informational: they serve others too)."""
NATS_PROGRAM = "nats-server"
VARIANTS = ("unchecked", "checked")
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")

Sender = Callable[[FhirRequest], Awaitable[FhirResponse]]
"""How a comparison sends its request: in process, or over NATS request/reply."""


def in_process(service: FhirRouter) -> Sender:
    async def send(request: FhirRequest) -> FhirResponse:
        return await service.handle(request, b"")

    return send


def _is_local(url: str) -> bool:
    return urlparse(url).hostname in LOCAL_HOSTS


def server_programs(options: ConsentOptions) -> dict[str, int | None]:
    """The local server programs whose CPU can be read: nats-server when `--nats-url` is
    on this machine (the one process that listens on its port, when it can be found; else
    every nats-server), postgres (all of its processes) when `--database postgresql` and
    its URL is."""
    programs: dict[str, int | None] = {}
    if _is_local(options.nats_url):
        programs[NATS_PROGRAM] = pid_listening(
            NATS_PROGRAM, urlparse(options.nats_url).port or 4222
        )
    if options.database == "postgresql" and _is_local(options.database_url):
        programs["postgres"] = None
    return programs


@dataclass
class WindowStats:
    variant: str
    requests: int
    errors: int
    wall_s: float
    cpu_s: float
    servers_cpu_s: dict[str, float]
    latencies: list[float]

    def as_dict(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "requests": self.requests,
            "errors": self.errors,
            "wall_s": round(self.wall_s, 4),
            "process_cpu_s": round(self.cpu_s, 4),
            "servers_cpu_s": {k: round(v, 3) for k, v in self.servers_cpu_s.items()},
            "per_process_cpu_second": per_cpu_second(self.requests, self.cpu_s),
        }


def _server_ticks(programs: Mapping[str, int | None]) -> dict[str, tuple[int, int]]:
    """(ticks, processes counted) of each program: of its one process when named, else of
    every process of that name."""
    ticks = {}
    for name, pid in programs.items():
        if pid is None:
            ticks[name] = program_ticks(name)
        else:
            own = process_ticks(pid, include_children=True)
            ticks[name] = (own, 1) if own is not None else (0, 0)
    return ticks


async def run_window(
    send: Sender,
    request: FhirRequest,
    *,
    variant: str,
    concurrency: int,
    seconds: float,
    programs: Mapping[str, int | None],
    error_samples: list[str],
    interrupt: Interrupt | None = None,
) -> WindowStats:
    """`concurrency` tasks `send` the request until `seconds` have passed. CPU and
    wall time are taken before the tasks start and after the last one ended, so every
    request counted is inside the interval measured."""
    latencies: list[float] = []
    errors = 0

    async def client() -> None:
        nonlocal errors
        while time.perf_counter() < deadline and not (interrupt and interrupt.requested):
            sent = time.perf_counter()
            try:
                response = await send(request)
            except FhirError as exc:
                errors += 1
                if len(error_samples) < 5:
                    error_samples.append(f"{variant} {request.interaction}: {exc.status} {exc}")
                continue
            if response.status == 200:
                latencies.append(time.perf_counter() - sent)
            else:
                errors += 1
                if len(error_samples) < 5:
                    error_samples.append(f"{variant} {request.interaction}: {response.status}")

    servers_before = _server_ticks(programs)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    deadline = wall0 + seconds
    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(client())
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    servers_after = _server_ticks(programs)
    servers = {
        name: (servers_after[name][0] - servers_before[name][0]) / CLOCK_TICKS
        for name in programs
        if servers_after[name][1] and servers_before[name][1]
    }
    return WindowStats(variant, len(latencies), errors, wall, cpu, servers, latencies)


def _variant_summary(windows: Sequence[WindowStats]) -> dict[str, Any]:
    requests = sum(w.requests for w in windows)
    cpu = sum(w.cpu_s for w in windows)
    wall = sum(w.wall_s for w in windows)
    servers: dict[str, float] = {}
    for window in windows:
        for name, seconds in window.servers_cpu_s.items():
            servers[name] = servers.get(name, 0.0) + seconds
    ordered = sorted(latency for w in windows for latency in w.latencies)
    with_servers = cpu + sum(servers.values())
    nats = servers.get(NATS_PROGRAM)
    return {
        "requests": requests,
        "errors": sum(w.errors for w in windows),
        "wall_s": round(wall, 4),
        "process_cpu_s": round(cpu, 4),
        "per_process_cpu_second": per_cpu_second(requests, cpu),
        "per_wall_second": per_cpu_second(requests, wall),
        "process_cpu_us_per_request": round(cpu * 1e6 / requests, 1) if requests else None,
        "servers_cpu_s": {k: round(v, 3) for k, v in servers.items()},
        "per_cpu_second_with_servers": per_cpu_second(requests, with_servers) if servers else None,
        "per_cpu_second_with_nats": per_cpu_second(requests, cpu + nats)
        if nats is not None
        else None,
        "p50_ms": round(percentile(ordered, 0.50) * 1000, 3),
        "p95_ms": round(percentile(ordered, 0.95) * 1000, 3),
        "p99_ms": round(percentile(ordered, 0.99) * 1000, 3),
        "max_ms": round((ordered[-1] if ordered else 0.0) * 1000, 3),
    }


def abba(windows: int) -> list[str]:
    """checked, unchecked, unchecked, checked, …: a linear drift in the machine's speed
    affects both variants equally."""
    pattern = ("checked", "unchecked", "unchecked", "checked")
    return [pattern[i % 4] for i in range(windows)]


async def compare(
    bench: ConsentBench,
    name: str,
    request: FhirRequest,
    senders: Mapping[str, Sender] | None = None,
    what: str | None = None,
) -> dict[str, Any]:
    """The same request to the unchecked and the checked service, interleaved; by default
    in process (`FhirRouter.handle`), else through `senders` (e.g. over NATS)."""
    options = bench.options
    services = senders or {
        "unchecked": in_process(bench.unchecked),
        "checked": in_process(bench.checked),
    }
    programs = server_programs(options)
    error_samples: list[str] = []
    audit_before = await bench.audit_messages()
    records_before = bench.audit_records()
    checked_requests = 0
    for variant in VARIANTS:  # unmeasured warm-up
        warm = await run_window(
            services[variant],
            request,
            variant=variant,
            concurrency=options.concurrency,
            seconds=options.warmup / 2,
            programs={},
            error_samples=error_samples,
            interrupt=bench.interrupt,
        )
        bench.interrupt.check()
        if variant == "checked":
            checked_requests += warm.requests + warm.errors
    windows = []
    for variant in abba(options.windows):
        window = await run_window(
            services[variant],
            request,
            variant=variant,
            concurrency=options.concurrency,
            seconds=options.seconds / options.windows,
            programs=programs,
            error_samples=error_samples,
            interrupt=bench.interrupt,
        )
        bench.interrupt.check()
        windows.append(window)
        if variant == "checked":
            checked_requests += window.requests + window.errors
    audit_messages = await bench.audit_messages() - audit_before
    audit_records = bench.audit_records() - records_before
    summaries = {
        variant: _variant_summary([w for w in windows if w.variant == variant])
        for variant in VARIANTS
    }
    checked, unchecked = summaries["checked"], summaries["unchecked"]
    pair_ratios = []
    for first, second in zip(windows[0::2], windows[1::2], strict=True):
        pair = {first.variant: first, second.variant: second}
        pair_ratios.append(
            ratio(
                pair["checked"].requests / pair["checked"].cpu_s if pair["checked"].cpu_s else 0,
                pair["unchecked"].requests / pair["unchecked"].cpu_s
                if pair["unchecked"].cpu_s
                else 0,
            )
        )
    per_cpu = ratio(
        checked["per_process_cpu_second"] or 0, unchecked["per_process_cpu_second"] or 0
    )
    with_servers = None
    if checked["per_cpu_second_with_servers"] and unchecked["per_cpu_second_with_servers"]:
        with_servers = ratio(
            checked["per_cpu_second_with_servers"], unchecked["per_cpu_second_with_servers"]
        )
    with_nats = None
    if checked["per_cpu_second_with_nats"] and unchecked["per_cpu_second_with_nats"]:
        with_nats = ratio(
            checked["per_cpu_second_with_nats"], unchecked["per_cpu_second_with_nats"]
        )
    known = sorted(r for r in pair_ratios if r is not None)
    return {
        "name": name,
        "what": what
        or f"FhirRouter.handle({describe(request)}) by organisation {request.caller.orgnr}"
        f" ({request.caller.org_kind}), permitted by consent",
        "unchecked": unchecked,
        "checked": checked,
        "ratio_per_process_cpu_second": per_cpu,
        "ratio_per_wall_second": ratio(
            checked["per_wall_second"] or 0, unchecked["per_wall_second"] or 0
        ),
        "ratio_with_servers": with_servers,
        "ratio_with_nats": with_nats,
        "server_programs": list(programs),
        "pair_ratios": pair_ratios,
        "pair_ratio_min": known[0] if known else None,
        "pair_ratio_median": known[len(known) // 2] if known else None,
        "pair_ratio_max": known[-1] if known else None,
        "aim": AIM,
        "aim_met": per_cpu is not None and per_cpu >= AIM,
        "checked_requests": checked_requests,
        "audit_records_written": audit_records,
        "audit_messages_written": audit_messages,
        "windows": [w.as_dict() for w in windows],
        "error_samples": error_samples,
    }


def describe(request: FhirRequest) -> str:
    """`read DocumentReference/<id>`, `search DocumentReference?patient=…`."""
    query = "&".join(f"{k}={v}" for k, v in request.params)
    return (
        f"{request.interaction} {request.resource_type}"
        f"{'/' + request.id if request.id else ''}{'?' + query if query else ''}"
    )


def read_request(bench: ConsentBench, caller: Caller | None = None) -> FhirRequest:
    return FhirRequest(
        interaction="read",
        resource_type=BenchDocument.resource_type,
        id=bench.target_documents[0],
        base_url=BASE_URL,
        caller=caller or bench.caller(),
    )


def search_request(bench: ConsentBench, caller: Caller | None = None) -> FhirRequest:
    return FhirRequest(
        interaction="search",
        resource_type=BenchDocument.resource_type,
        params=[("patient", f"Patient/{bench.population.target.patient}")],
        base_url=BASE_URL,
        caller=caller or bench.caller(),
    )


async def measure_read(bench: ConsentBench) -> dict[str, Any]:
    """A read by id, checked (decision + audit) vs unchecked."""
    return await compare(bench, "read", read_request(bench))


async def measure_search(bench: ConsentBench) -> dict[str, Any]:
    """A search by patient (TARGET_DOCUMENTS matches), checked vs unchecked."""
    result = await compare(bench, "search", search_request(bench))
    result["matches"] = TARGET_DOCUMENTS
    return result


class _DiscardAudit:
    """An audit sink that keeps the last record and writes nothing."""

    last: AuditRecord | None = None

    async def record(self, record: AuditRecord) -> None:
        self.last = record


async def _async_cpu_loop(
    step: Callable[[], Awaitable[object]], budget: float, concurrency: int, interrupt: Interrupt
) -> tuple[int, float, float]:
    """`concurrency` tasks await `step()` until `budget` CPU seconds are spent."""
    calls = 0
    cpu0, wall0 = time.process_time(), time.perf_counter()

    async def client() -> None:
        nonlocal calls
        while time.process_time() - cpu0 < budget and not interrupt.requested:
            await step()
            calls += 1

    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(client())
    interrupt.check()
    return calls, time.process_time() - cpu0, time.perf_counter() - wall0


def _part(name: str, calls: int, cpu: float, wall: float) -> dict[str, Any]:
    return {
        "part": name,
        "calls": calls,
        "cpu_s": round(cpu, 4),
        "per_cpu_second": per_cpu_second(calls, cpu),
        "cpu_us_each": round(cpu * 1e6 / calls, 2) if calls else None,
        "per_wall_second": per_cpu_second(calls, wall),
    }


def _overhead(bench: ConsentBench, name: str) -> tuple[float | None, float | None]:
    """(unchecked CPU µs, checked − unchecked CPU µs) per request of an earlier phase."""
    phase = next((p for p in bench.results if p.get("name") == name), None)
    if phase is None:
        return None, None
    checked = phase["checked"]["process_cpu_us_per_request"]
    unchecked = phase["unchecked"]["process_cpu_us_per_request"]
    if checked is None or unchecked is None:
        return unchecked, None
    return unchecked, round(checked - unchecked, 1)


async def measure_checked_parts(bench: ConsentBench) -> dict[str, Any]:
    """Where the extra CPU of a checked read and search goes, each part in its own loop,
    per CPU-second of this process, next to the overheads measured in the ``read`` and
    ``search`` phases.

    Read: the decision (view look-up + `decide`); the decision with the audit record built
    but not written; publishing a record to JetStream and waiting for the acknowledgement
    (serialising included). Search: the SQL filter (`filter_for`: `states_for` +
    `visibility`); the same store search without and with that filter (with SQLite its
    CPU is in this process; PostgreSQL's is not); `released` (a decision per match and
    the record built, not written)."""
    options, interrupt = bench.options, bench.interrupt
    budget = options.local_seconds / 2
    guard = bench.guard
    discard = _DiscardAudit()
    quiet = AccessGuard(SERVICE, bench.view, discard, guard.categories)
    resource_type = BenchDocument.resource_type

    read = read_request(bench)
    async with bench.db.reader() as conn:
        stored = await bench.checked.service.store.read(conn, resource_type, read.id or "")
    assert stored is not None
    parts = {
        "read: decision (guard.decide)": await cpu_loop(
            lambda i: guard.decide(read, stored), budget, 100, interrupt
        ),
        "read: decision + audit record built": await _async_cpu_loop(
            lambda: quiet.check(read, stored), budget, 1, interrupt
        ),
    }
    template = discard.last
    assert template is not None
    settings = bench.settings
    publisher = AuditPublisher(bench.nc, settings.nats_prefix, settings.request_timeout)

    async def publish() -> None:
        await publisher.record(template.model_copy(update={"id": str(uuid.uuid4())}))

    parts["audit record serialised, published, acknowledged"] = await _async_cpu_loop(
        publish, budget, options.concurrency, interrupt
    )

    search = search_request(bench)
    parts["search: SQL filter (filter_for: states_for + visibility)"] = await cpu_loop(
        lambda i: guard.filter_for(search)(resource_type), budget, 10, interrupt
    )
    store, db = bench.checked.service.store, bench.db
    query = parse_search(resource_type, search.params, bench.checked.service.search_params)
    access = guard.filter_for(search)(resource_type)

    def only_this(res_type: str, patients: Collection[str] | None = None) -> AccessFilter | None:
        return access

    async def plain_search() -> SearchPage:
        async with db.reader() as conn:
            return await store.search(conn, query)

    async def filtered_search() -> SearchPage:
        async with db.reader() as conn:
            return await store.search(conn, query, access_for=only_this)

    parts["search: store.search, no filter"] = await _async_cpu_loop(
        plain_search, budget, 1, interrupt
    )
    parts["search: store.search, the reader's filter"] = await _async_cpu_loop(
        filtered_search, budget, 1, interrupt
    )
    page = await filtered_search()
    parts["search: released (decisions + audit record built)"] = await _async_cpu_loop(
        lambda: quiet.released(search, list(page.resources), "patient"), budget, 1, interrupt
    )
    rows = [_part(name, *measured) for name, measured in parts.items()]
    each = {row["part"]: row["cpu_us_each"] or 0.0 for row in rows}
    published = each["audit record serialised, published, acknowledged"]
    read_unchecked, read_overhead = _overhead(bench, "read")
    search_unchecked, search_overhead = _overhead(bench, "search")
    search_parts = (
        each["search: SQL filter (filter_for: states_for + visibility)"]
        + each["search: store.search, the reader's filter"]
        - each["search: store.search, no filter"]
        + each["search: released (decisions + audit record built)"]
        + published
    )
    return {
        "name": "checked-parts",
        "what": "the parts of the extra CPU of a checked read and search, each measured alone",
        "parts": rows,
        "read": {
            "unchecked_cpu_us": read_unchecked,
            "overhead_cpu_us": read_overhead,
            "parts_cpu_us": round(each["read: decision + audit record built"] + published, 1),
        },
        "search": {
            "unchecked_cpu_us": search_unchecked,
            "overhead_cpu_us": search_overhead,
            "parts_cpu_us": round(search_parts, 1),
            "filter_patients": len(access.patients) if access is not None else None,
        },
    }
