"""The load-generating code shared by the CRUD workload and the limit measurements.

A limit is only comparable to the real thing when it is driven the same way, so the FHIR
workload, the read-only phase and the bare HTTP server are all hit by this one client (one
aiohttp session, keep-alive pool as large as the number of clients, the same headers), and
every phase — including the bare storage loop — is timed by the same measured-window runner:
clients start, run through a warm-up, then CPU is sampled, requests completing inside the
window are recorded, CPU is sampled again, and the clients stop at their next request.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import defaultdict
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench.cpu import CpuMeter, CpuUsage
from bench.report import MAX_ERROR_SAMPLES, ErrorSample, OpStats

FHIR_JSON = "application/fhir+json"
REQUEST_TIMEOUT = 30.0
"""Seconds one request may take before the client counts it as an error (status 0)."""


@dataclass(frozen=True)
class Reply:
    """What one request returned; status 0 means no HTTP answer (connection error, timeout)."""

    status: int
    body: bytes
    headers: Mapping[str, str]
    latency: float

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class HttpClient:
    """One aiohttp session for all clients of a phase; requests carry the bearer token."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, token: str) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.headers = {"Accept": FHIR_JSON, "Authorization": f"Bearer {token}"}
        self.write_headers = {**self.headers, "Content-Type": FHIR_JSON}

    async def call(self, method: str, path: str, body: bytes | None = None) -> Reply:
        headers = self.headers if body is None else self.write_headers
        started = time.perf_counter()
        try:
            async with self.session.request(
                method, self.base_url + path, data=body, headers=headers
            ) as response:
                data = await response.read()
                return Reply(
                    response.status, data, dict(response.headers), time.perf_counter() - started
                )
        except (aiohttp.ClientError, TimeoutError) as exc:
            text = f"{type(exc).__name__}: {exc}".encode()
            return Reply(0, text, {}, time.perf_counter() - started)


@contextlib.asynccontextmanager
async def http_client(base_url: str, token: str, clients: int) -> AsyncIterator[HttpClient]:
    """A client whose connection pool lets every one of `clients` tasks keep a connection."""
    connector = aiohttp.TCPConnector(limit=clients + 4, limit_per_host=0)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        yield HttpClient(session, base_url, token)


@dataclass
class Recorder:
    """Latencies and errors per operation, recorded only while `measuring` is set."""

    measuring: bool = False
    ops: dict[str, OpStats] = field(default_factory=lambda: defaultdict(OpStats))
    by_type: dict[str, dict[str, list[float]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list))
    )
    samples: list[ErrorSample] = field(default_factory=list)
    unmeasured_errors: int = 0
    chains: int = 0

    def success(self, op: str, latency: float, resource_type: str | None = None) -> None:
        if not self.measuring:
            return
        self.ops[op].latencies.append(latency)
        if resource_type is not None:
            self.by_type[resource_type][op].append(latency)

    def failure(self, op: str, method: str, path: str, status: int, body: bytes | str) -> None:
        if self.measuring:
            self.ops[op].errors += 1
        else:
            self.unmeasured_errors += 1
        if sum(1 for s in self.samples if s.operation == op) < MAX_ERROR_SAMPLES:
            text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
            self.samples.append(ErrorSample(op, method, path, status, text[:800], self.measuring))

    def record(self, op: str, resource_type: str, method: str, path: str, reply: Reply) -> bool:
        """Record one HTTP request; True when it succeeded (2xx)."""
        if reply.ok:
            self.success(op, reply.latency, resource_type)
        else:
            self.failure(op, method, path, reply.status, reply.body)
        return reply.ok

    @property
    def successes(self) -> int:
        return sum(len(s.latencies) for s in self.ops.values())

    @property
    def errors(self) -> int:
        return sum(s.errors for s in self.ops.values())


Worker = Callable[[asyncio.Event], Coroutine[Any, Any, None]]
"""One client: runs until the event is set, then returns at its next request boundary."""

PidLookup = Callable[[], Awaitable[Mapping[str, Iterable[int]]]]


@dataclass(frozen=True)
class Window:
    seconds: float
    usage: CpuUsage


async def run_phase(
    workers: Sequence[Worker],
    recorder: Recorder,
    meter: CpuMeter,
    *,
    warmup: float,
    seconds: float,
    extra_pids: PidLookup | None = None,
    grace: float = REQUEST_TIMEOUT + 10,
) -> Window:
    """Run the workers through a warm-up and a measured window; return its length and CPU.

    CPU is sampled right before recording starts and right after it stops, with no await in
    between, so the requests counted and the CPU counted cover the same interval. Workers
    are stopped afterwards and given `grace` seconds to finish the request they are in.
    """
    stop = asyncio.Event()
    tasks = [asyncio.create_task(worker(stop)) for worker in workers]
    try:
        await _sleep_unless_failed(tasks, warmup)
        extra = await extra_pids() if extra_pids else None
        start = meter.snapshot(extra)
        started = time.perf_counter()
        recorder.measuring = True
        await _sleep_unless_failed(tasks, seconds)
        extra = await extra_pids() if extra_pids else None
        recorder.measuring = False
        ended = time.perf_counter()
        end = meter.snapshot(extra)
    except BaseException:
        # A failure or Ctrl-C: do not wait for requests under way.
        recorder.measuring = False
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    stop.set()
    _, pending = await asyncio.wait(tasks, timeout=grace)
    for task in pending:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            raise RuntimeError("a load-generating client failed") from task.exception()
    return Window(ended - started, CpuMeter.usage(start, end))


async def _sleep_unless_failed(tasks: Sequence[asyncio.Task[None]], seconds: float) -> None:
    """Sleep, but stop early (raising) if a worker ends, which only a bug makes it do."""
    if seconds <= 0:
        return
    done, _ = await asyncio.wait(tasks, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    for task in done:
        exc = task.exception()
        raise RuntimeError("a load-generating client stopped early") from exc


def read_worker(client: HttpClient, paths: Sequence[str], recorder: Recorder, seed: int) -> Worker:
    """A client that GETs random paths of `paths` until stopped (FHIR read or bare GET)."""
    rng = random.Random(seed)

    async def run(stop: asyncio.Event) -> None:
        while not stop.is_set():
            path = rng.choice(paths)
            reply = await client.call("GET", path)
            recorder.record("read", "Patient", "GET", path, reply)

    return run
