"""What the machine can do without barnebro: the HTTP limit and the storage limit.

A FHIR request through barnebro is an HTTP request (parsed by aiohttp, answered with JSON
bytes) plus a NATS round trip, validation and database statements. Measuring the two ends
bare, in the same run and with the same client, tells how far the stack is from what the
platform itself allows, and the ratio stays meaningful when the shared machine is busy:

* HTTP limit — a bare aiohttp server in its own process whose only handler returns the
  bytes and headers of a real Patient read, with no work at all; hit with GETs by the same
  client code as the FHIR read phase. Result: requests per CPU-second of that process.
* storage limit — insert one row (the same JSON bytes) then select it by primary key, from
  as many concurrent tasks as there are clients, into the same database barnebro used:
  PostgreSQL through an asyncpg pool (in a throwaway schema ``bench_limit_<random>``,
  dropped afterwards) or a SQLite file in the data directory through aiosqlite, set up as
  barnebro sets it up (WAL, synchronous=NORMAL, one writer, one reader). Result: statements
  per CPU-second of the database — PostgreSQL's processes, or for SQLite (which runs inside
  the calling process) this benchmark process itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import secrets
import socket
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import aiosqlite
import asyncpg
from aiohttp import web

from bench.cpu import CpuMeter
from bench.load import PidLookup, Recorder, Worker, http_client, read_worker, run_phase
from bench.report import per_cpu_second, percentile
from services.stack import free_port

# -- HTTP limit ------------------------------------------------------------------------------


def serve_bare_http(port: int, body: bytes, headers: dict[str, str]) -> None:
    """The bare server (run in a child process): every GET returns the same bytes."""

    async def handle(request: web.Request) -> web.Response:
        return web.Response(body=body, headers=headers)

    app = web.Application()
    app.router.add_get("/fhir/{type}/{id}", handle)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


class BareHttpServer:
    """The bare aiohttp server in a separate (spawned) process, so its CPU is its own."""

    def __init__(self, body: bytes, headers: Mapping[str, str]) -> None:
        self.port = free_port()
        self.body = body
        self.headers = dict(headers)
        self.process: BaseProcess | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/fhir"

    @property
    def pid(self) -> int:
        assert self.process is not None and self.process.pid is not None
        return self.process.pid

    def start(self, timeout: float = 30.0) -> None:
        context = multiprocessing.get_context("spawn")
        self.process = context.Process(
            target=serve_bare_http,
            args=(self.port, self.body, self.headers),
            name="bench-bare-http",
            daemon=True,
        )
        self.process.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.process.is_alive():
                raise RuntimeError(f"the bare HTTP server exited ({self.process.exitcode})")
            with socket.socket() as sock:
                sock.settimeout(0.2)
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("the bare HTTP server did not start")

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(10)
            if self.process.is_alive():
                self.process.kill()
                self.process.join(5)
        self.process = None


async def http_limit(
    *,
    body: bytes,
    headers: Mapping[str, str],
    paths: Sequence[str],
    token: str,
    clients: int,
    warmup: float,
    seconds: float,
) -> dict[str, Any]:
    """GET `paths` from the bare server with `clients` clients; requests per server CPU-s."""
    server = BareHttpServer(body, headers)
    await asyncio.to_thread(server.start)
    try:
        recorder = Recorder()
        meter = CpuMeter({"bare-http": server.pid})
        async with http_client(server.base_url, token, clients) as client:
            workers = [read_worker(client, paths, recorder, seed) for seed in range(clients)]
            window = await run_phase(workers, recorder, meter, warmup=warmup, seconds=seconds)
    finally:
        await asyncio.to_thread(server.stop)
    stats = recorder.ops["read"]
    latencies = sorted(stats.latencies)
    cpu = window.usage
    return {
        "description": "bare aiohttp server in its own process returning the bytes of a"
        " Patient read, no work; same client code and concurrency",
        "window_s": round(window.seconds, 3),
        "response_bytes": len(body),
        "successful_requests": len(latencies),
        "errors": stats.errors,
        "requests_per_second": round(len(latencies) / window.seconds, 1),
        "server_cpu_s": round(cpu.server, 3),
        "requests_per_server_cpu_second": per_cpu_second(len(latencies), cpu.server),
        "load_generator_cpu_s": round(cpu.load_generator, 3),
        "machine_busy_cpu_s": round(cpu.machine_busy, 3),
        "unattributed_cpu_s": round(cpu.unattributed, 3),
        "p50_ms": round(percentile(latencies, 0.5) * 1000, 2),
        "p95_ms": round(percentile(latencies, 0.95) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        "error_samples": [s.as_dict() for s in recorder.samples],
    }


# -- storage limit ---------------------------------------------------------------------------

INSERT = (
    "INSERT INTO resources (res_type, res_id, version, last_updated, deleted, body) VALUES ({})"
)
SELECT = "SELECT body FROM resources WHERE res_type = {0} AND res_id = {1}"
CREATE_TABLE = """CREATE TABLE IF NOT EXISTS resources (
    res_type TEXT NOT NULL, res_id TEXT NOT NULL, version INTEGER NOT NULL,
    last_updated TEXT NOT NULL, deleted INTEGER NOT NULL, body {blob},
    PRIMARY KEY (res_type, res_id))"""
"""The same current-version table barnebro's store keeps (shared/store/schema.py)."""


class _Store:
    """An insert and a select by primary key, on one of the two databases."""

    async def insert(self, res_id: str, last_updated: str, body: bytes) -> None:
        raise NotImplementedError

    async def select(self, res_id: str) -> bytes | None:
        raise NotImplementedError


class _PostgresStore(_Store):
    def __init__(self, pool: asyncpg.Pool[Any]) -> None:
        self.pool = pool
        self.insert_sql = INSERT.format("$1, $2, 1, $3, 0, $4")
        self.select_sql = SELECT.format("$1", "$2")

    async def insert(self, res_id: str, last_updated: str, body: bytes) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(self.insert_sql, "Patient", res_id, last_updated, body)

    async def select(self, res_id: str) -> bytes | None:
        async with self.pool.acquire() as conn:
            value: bytes | None = await conn.fetchval(self.select_sql, "Patient", res_id)
            return value


class _SqliteStore(_Store):
    def __init__(self, writer: aiosqlite.Connection, reader: aiosqlite.Connection) -> None:
        self.writer = writer
        self.reader = reader
        self.lock = asyncio.Lock()
        self.insert_sql = INSERT.format("?, ?, 1, ?, 0, ?")
        self.select_sql = SELECT.format("?", "?")

    async def insert(self, res_id: str, last_updated: str, body: bytes) -> None:
        async with self.lock:
            cursor = await self.writer.execute(
                self.insert_sql, ("Patient", res_id, last_updated, body)
            )
            await cursor.close()

    async def select(self, res_id: str) -> bytes | None:
        rows = list(await self.reader.execute_fetchall(self.select_sql, ("Patient", res_id)))
        return bytes(rows[0][0]) if rows else None


def _storage_worker(store: _Store, body: bytes, recorder: Recorder) -> Worker:
    async def run(stop: asyncio.Event) -> None:
        while not stop.is_set():
            res_id = uuid.uuid4().hex
            last_updated = datetime.now(UTC).isoformat()
            started = time.perf_counter()
            try:
                await store.insert(res_id, last_updated, body)
                inserted = time.perf_counter()
                found = await store.select(res_id)
            except Exception as exc:
                recorder.failure("pair", "SQL", "insert+select", 0, f"{type(exc).__name__}: {exc}")
                continue
            done = time.perf_counter()
            if found != body:
                recorder.failure("pair", "SQL", "select", 0, "the row read back differs")
                continue
            recorder.success("insert", inserted - started)
            recorder.success("select", done - inserted)
            recorder.success("pair", done - started)

    return run


@contextlib.asynccontextmanager
async def _postgres_store(url: str, pool_size: int) -> AsyncIterator[_Store]:
    schema = f"bench_limit_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(url)
    try:
        await admin.execute(f"CREATE SCHEMA {schema}")
        await admin.execute(f"SET search_path = {schema}")
        await admin.execute(CREATE_TABLE.format(blob="BYTEA"))
        pool = await asyncpg.create_pool(
            url, min_size=pool_size, max_size=pool_size, server_settings={"search_path": schema}
        )
        try:
            yield _PostgresStore(pool)
        finally:
            await pool.close()
    finally:
        try:
            await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        finally:
            await admin.close()


@contextlib.asynccontextmanager
async def _sqlite_store(path: Path) -> AsyncIterator[_Store]:
    connections: list[aiosqlite.Connection] = []
    try:
        for _ in range(2):
            conn = await aiosqlite.connect(path, isolation_level=None)
            connections.append(conn)
            await conn.execute("PRAGMA journal_mode=WAL")
            await conn.execute("PRAGMA synchronous=NORMAL")
            await conn.execute("PRAGMA busy_timeout=10000")
        await connections[0].execute(CREATE_TABLE.format(blob="BLOB"))
        yield _SqliteStore(connections[0], connections[1])
    finally:
        for conn in connections:
            await conn.close()


async def storage_limit(
    *,
    database: str,
    body: bytes,
    clients: int,
    warmup: float,
    seconds: float,
    database_url: str = "",
    sqlite_path: Path | None = None,
    pool_size: int = 10,
    backend_pids: PidLookup | None = None,
) -> dict[str, Any]:
    """Insert-then-select of `body` from `clients` tasks; statements per storage CPU-s.

    For PostgreSQL the storage CPU is every ``postgres`` process (as in the CRUD phase) and
    `backend_pids` names the backends of this run for information; for SQLite it is this
    process, which also runs the client loop, so the SQLite figure is a lower bound.
    """
    recorder = Recorder()
    if database == "postgresql":
        store_context = _postgres_store(database_url, pool_size)
        meter = CpuMeter({}, programs=["postgres"])
    else:
        assert sqlite_path is not None
        store_context = _sqlite_store(sqlite_path)
        meter = CpuMeter({})
    async with store_context as store:
        workers = [_storage_worker(store, body, recorder) for _ in range(clients)]
        window = await run_phase(
            workers, recorder, meter, warmup=warmup, seconds=seconds, extra_pids=backend_pids
        )
    cpu = window.usage
    pairs = len(recorder.ops["pair"].latencies)
    statements = 2 * pairs
    database_cpu = cpu.seconds.get("postgres", 0.0)
    if database == "postgresql":
        storage_cpu, note = database_cpu, "storage CPU = all postgres processes"
    else:
        storage_cpu = cpu.load_generator
        note = "storage CPU = this process (SQLite runs in-process, with the client loop)"
    pair = sorted(recorder.ops["pair"].latencies)
    return {
        "description": "bare insert then select-by-primary-key of the Patient JSON bytes,"
        f" {clients} concurrent tasks"
        + (f", asyncpg pool of {pool_size}" if database == "postgresql" else ""),
        "database": database,
        "window_s": round(window.seconds, 3),
        "row_bytes": len(body),
        "pairs": pairs,
        "statements": statements,
        "errors": recorder.errors,
        "statements_per_second": round(statements / window.seconds, 1),
        "storage_cpu_s": round(storage_cpu, 3),
        "statements_per_storage_cpu_second": per_cpu_second(statements, storage_cpu),
        "cpu_note": note,
        "database_cpu_s": round(database_cpu, 3),
        "database_backends_of_this_run_cpu_s": (
            round(sum(cpu.extra.values()), 3) if cpu.extra else None
        ),
        "client_cpu_s": round(cpu.load_generator, 3),
        "machine_busy_cpu_s": round(cpu.machine_busy, 3),
        "unattributed_cpu_s": round(cpu.unattributed, 3),
        "p50_ms_pair": round(percentile(pair, 0.5) * 1000, 2),
        "p95_ms_pair": round(percentile(pair, 0.95) * 1000, 2),
        "p99_ms_pair": round(percentile(pair, 0.99) * 1000, 2),
        "insert": recorder.ops["insert"].summary(window.seconds),
        "select": recorder.ops["select"].summary(window.seconds),
        "error_samples": [s.as_dict() for s in recorder.samples],
    }
