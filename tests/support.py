"""Test helpers: the real NATS and PostgreSQL the tests use (the machine's, or those the
session started, `tests/servers.py`), an in-process stack, and an HTTP client that talks to
it over a real socket.

Each stack gets its own NATS subject prefix (and so its own stream and registry bucket)
and its own PostgreSQL schema or SQLite file, and removes them when it stops. In CI
(`CI=true`) an unreachable NATS or PostgreSQL fails the run instead of skipping.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import nats
import orjson
import pytest
from multidict import CIMultiDict
from nats.js.api import ConsumerConfig, DeliverPolicy

from services.catalogue import PROJECT_CODE_SYSTEMS, all_definitions
from services.consent import consent_spec
from services.directory import directory_spec
from services.gateway.server import GatewayServer
from services.stack import free_port
from shared.auth.local_keys import (
    ensure_local_keys,
    ensure_operator_keys,
    issue_credential,
    issue_token,
)
from shared.codes import (
    MUNICIPALITY_EXTENSION,
    ORGANISATION_KIND_SYSTEM,
    PARENTAL_RESPONSIBILITY_SYSTEM,
)
from shared.config import Settings
from shared.events import DomainEvent
from shared.fhir.conformance_check import ConformanceChecker
from shared.identifiers import FNR_SYSTEM, KOMMUNENUMMER_SYSTEM, ORGNR_SYSTEM
from shared.runtime import ServiceRuntime
from shared.store.database import Database, PostgresDatabase, SqliteDatabase
from shared.store.schema import create_schema
from tests import servers
from tests.servers import reachable

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
FHIR_JSON = "application/fhir+json"


def unreachable(variable: str, message: str) -> None:
    """Fail (in CI) or skip the test, saying why the session could not start its own."""
    problem = servers.STARTED.problems.get(variable)
    if problem is not None:
        message = f"{message} ({problem})"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def nats_url() -> str:
    url = os.environ.get("NATS_URL", servers.DEFAULT_NATS)
    if not reachable(url, 4222):
        unreachable("NATS_URL", f"NATS is not reachable at {url}")
    return url


def postgres_url() -> str:
    url = os.environ.get("TEST_DATABASE_URL", servers.DEFAULT_PG)
    if not reachable(url, 5432):
        unreachable("TEST_DATABASE_URL", f"PostgreSQL is not reachable at {url}")
    return url


@contextlib.asynccontextmanager
async def schema_database(prefix: str) -> AsyncIterator[PostgresDatabase]:
    """A database of the test's own PostgreSQL schema, dropped afterwards."""
    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    db = await PostgresDatabase.connect(postgres_url(), schema, pool_size=2)
    try:
        yield db
    finally:
        await db.close()
        admin = await asyncpg.connect(postgres_url())
        try:
            await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        finally:
            await admin.close()


def sent_statements(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every statement sent on any PostgreSQL connection from here on: (the method and the
    statement's start, rows in it)."""
    sent: list[tuple[str, int]] = []
    for method in ("execute", "fetch", "fetchrow"):
        original = getattr(asyncpg.Connection, method)

        async def one(self: Any, sql: str, *args: Any, _o: Any = original, _m: str = method) -> Any:
            sent.append((f"{_m} {sql.split('(')[0]}", 1))
            return await _o(self, sql, *args)

        monkeypatch.setattr(asyncpg.Connection, method, one)
    original_many = asyncpg.Connection.executemany

    async def many(self: Any, sql: str, rows: Any, **kwargs: Any) -> Any:
        rows = list(rows)
        sent.append((f"executemany {sql.split('(')[0]}", len(rows)))
        return await original_many(self, sql, rows, **kwargs)

    monkeypatch.setattr(asyncpg.Connection, "executemany", many)
    return sent


BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.services)]
"""`params` of a fixture that gives each test a database of each backend."""


@contextlib.asynccontextmanager
async def backend_database(backend: str, tmp_path: Path, name: str) -> AsyncIterator[Database]:
    """A database of `backend`: a SQLite file in `tmp_path`, or a PostgreSQL schema of
    its own (`schema_database`), closed (and the schema dropped) afterwards."""
    if backend != "sqlite":
        async with schema_database(name) as postgres:
            yield postgres
        return
    db = await SqliteDatabase.connect(tmp_path / f"{name}.sqlite")
    try:
        yield db
    finally:
        await db.close()


@contextlib.asynccontextmanager
async def store_database(backend: str, tmp_path: Path, name: str) -> AsyncIterator[Database]:
    """`backend_database` with the resource store's tables made."""
    async with backend_database(backend, tmp_path, name) as db:
        await create_schema(db)
        yield db


def test_settings(tmp_path: Path, backend: str, nats: str, **overrides: Any) -> Settings:
    tag = uuid.uuid4().hex[:10]
    values: dict[str, Any] = {
        "data_dir": tmp_path,
        "nats_url": nats,
        "nats_prefix": f"t{tag}",
        "db_schema_prefix": f"t{tag}",
        "http_port": free_port(),
        "jwks_file": str(ensure_local_keys(tmp_path)),
        "operator_jwks_file": str(ensure_operator_keys(tmp_path)),
        "outbox_poll_interval": 0.2,
        "outbox_max_backoff": 0.5,
        "request_timeout": 5.0,
        "database_url": postgres_url() if backend == "postgresql" else "",
        # Partners in tests listen on loopback or are never reached (reserved names):
        # the operator's allowlist names them, so nothing is looked up in DNS.
        "subscription_allowed_hosts": "127.0.0.1,partner.example,p.example",
    }
    values.update(overrides)
    return Settings(**values)


async def drop_test_resources(settings: Settings) -> None:
    """Remove the stream, the registry bucket and the schemas a test stack created."""
    try:
        nc = await nats.connect(settings.nats_url, max_reconnect_attempts=1)
    except Exception:
        nc = None
    if nc is not None:
        js = nc.jetstream()
        with contextlib.suppress(Exception):
            await js.delete_stream(settings.stream_name)
        with contextlib.suppress(Exception):
            await js.delete_stream(settings.audit_stream_name)
        with contextlib.suppress(Exception):
            await js.delete_stream(settings.partner_stream_name)
        with contextlib.suppress(Exception):
            await js.delete_stream(settings.dead_letter_stream_name)
        buckets = (settings.registry_bucket, settings.consent_view_bucket,
                   settings.dpop_replay_bucket)  # fmt: skip
        for bucket in buckets:
            with contextlib.suppress(Exception):
                await js.delete_key_value(bucket)
        await nc.close()
    if settings.database_url.startswith("postgresql"):
        conn = await asyncpg.connect(settings.database_url)
        try:
            schemas = await conn.fetch(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE $1",
                settings.db_schema_prefix + "\\_%",
            )
            for row in schemas:
                await conn.execute(f'DROP SCHEMA "{row[0]}" CASCADE')
        finally:
            await conn.close()


@dataclass
class Reply:
    status: int
    headers: CIMultiDict[str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)

    def issues(self) -> list[dict[str, Any]]:
        data = self.json()
        assert data["resourceType"] == "OperationOutcome", data
        issues: list[dict[str, Any]] = data["issue"]
        return issues


_CHECKERS: dict[int, ConformanceChecker] = {}


def conforms(reply: Reply, settings: Settings) -> None:
    """Fail the test when a FHIR resource in a successful answer breaks its profile (see
    `shared.fhir.conformance_check`): every scenario test checks what it is answered."""
    if not 200 <= reply.status < 300 or not reply.body.startswith(b"{"):
        return
    if "json" not in reply.headers.get("Content-Type", ""):
        return
    checker = _CHECKERS.get(0)
    if checker is None:
        checker = _CHECKERS[0] = ConformanceChecker.of(
            all_definitions(settings), PROJECT_CODE_SYSTEMS
        )
    data = reply.json()
    if isinstance(data, dict) and "resourceType" in data:
        violations = checker.violations(data)
        assert violations == [], violations


@dataclass
class Stack:
    """The gateway and the directory service, in this process, on real NATS and a database."""

    settings: Settings
    directory: ServiceRuntime
    consent: ServiceRuntime
    gateway: GatewayServer
    session: aiohttp.ClientSession
    tokens: dict[tuple[str, str, str, str, str], str] = field(default_factory=dict)
    admitted: dict[str, str] = field(default_factory=dict)
    """Token → (organisation, kind) the operator must have registered before it is used."""
    registered: set[str] = field(default_factory=set)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.settings.http_port}/fhir"

    def token(
        self,
        *,
        orgnr: str = "974760673",
        kind: str | None = "bup",
        scope: str = "system/*.cruds",
        fhir_user: str | None = None,
        hpr: str | None = None,
    ) -> str:
        """A token for `orgnr`. The kind is the register's: before the token's first
        request the test stack registers the organisation as `kind`, as an operator
        would, unless it is registered already (as whatever kind) or `kind` is None."""
        key = (orgnr, kind or "", scope, fhir_user or "", hpr or "")
        if key not in self.tokens:
            self.tokens[key] = issue_token(
                self.settings.data_dir, orgnr=orgnr, scope=scope, fhir_user=fhir_user, hpr=hpr
            )
            if kind and orgnr:
                self.admitted[self.tokens[key]] = f"{orgnr} {kind}"
        return self.tokens[key]

    def operator_token(self) -> str:
        return self.credential("operator")

    def register_token(self) -> str:
        return self.credential("register")

    def credential(self, credential: str) -> str:
        key = ("", credential, "", "", "")
        if key not in self.tokens:
            self.tokens[key] = issue_credential(self.settings.data_dir, credential)
        return self.tokens[key]

    async def admit(self, orgnr: str, kind: str) -> str:
        """Register an organisation of `kind` as the operator, unless it is registered
        already; its resource id."""
        kommune = "0301" if kind == "barneverninstitusjon" else None
        return await self.admit_resource(organisation(kind, f"{kind} {orgnr}", orgnr, kommune))

    async def admit_resource(self, resource: dict[str, Any]) -> str:
        """Register an Organization as the operator, unless one with its organisation
        number is registered already; its resource id."""
        orgnr = next(i["value"] for i in resource["identifier"] if i["system"] == ORGNR_SYSTEM)
        found = await self.call(
            "GET",
            f"Organization?identifier={ORGNR_SYSTEM}|{orgnr}",
            token=self.operator_token(),
        )
        entries = found.json().get("entry", [])
        if entries:
            self.registered.add(orgnr)
            return str(entries[0]["resource"]["id"])
        reply = await self.call("POST", "Organization", resource, token=self.operator_token())
        if reply.status == 409:  # registered meanwhile, by a concurrent first request
            return await self.admit_resource(resource)
        assert reply.status == 201, reply.body
        self.registered.add(orgnr)
        return str(reply.json()["id"])

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        token: str | None = None,
        raw: bytes | None = None,
        authenticated: bool = True,
    ) -> Reply:
        all_headers = {"Accept": FHIR_JSON}
        if authenticated:
            bearer = token or self.token()
            admitted = self.admitted.get(bearer)
            if admitted is not None:
                orgnr, kind = admitted.split()
                if orgnr not in self.registered:
                    await self.admit(orgnr, kind)
            all_headers["Authorization"] = f"Bearer {bearer}"
        data = raw
        if body is not None:
            data = orjson.dumps(body)
        if data is not None:
            all_headers["Content-Type"] = FHIR_JSON
        all_headers.update(headers or {})
        url = path if path.startswith("http") else f"{self.base}/{path.lstrip('/')}"
        async with self.session.request(method, url, data=data, headers=all_headers) as resp:
            reply = Reply(resp.status, CIMultiDict(resp.headers), await resp.read())
        conforms(reply, self.settings)
        return reply


async def start_stack(settings: Settings) -> Stack:
    """The stack, or, when a part fails to start, nothing left behind: the parts started
    are stopped and what they created (streams, buckets, schemas) removed."""
    directory = ServiceRuntime(directory_spec(settings), settings)
    consent = ServiceRuntime(consent_spec(settings), settings)
    started: list[ServiceRuntime | GatewayServer] = []
    try:
        for service in (directory, consent):
            started.append(service)
            await service.start()
        gateway = await _gateway_listening(settings, started)
    except BaseException:
        for part in reversed(started):
            with contextlib.suppress(Exception):
                await part.stop()
        await drop_test_resources(settings)
        raise
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    return Stack(settings, directory, consent, gateway, session)


async def _gateway_listening(
    settings: Settings, started: list[ServiceRuntime | GatewayServer]
) -> GatewayServer:
    """The gateway, started on `settings.http_port` or, when something took that port
    between `free_port` choosing it and the gateway binding it (an outgoing connection's
    local port, another worker's server), on another free one."""
    for attempt in range(5):
        gateway = GatewayServer(settings)
        started.append(gateway)
        try:
            await gateway.start()
            return gateway
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or attempt == 4:
                raise
            started.remove(gateway)
            await gateway.stop()
            settings.http_port = free_port()
    raise AssertionError("unreachable")


async def stop_stack(stack: Stack) -> None:
    await stack.session.close()
    await stack.gateway.stop()
    await stack.consent.stop()
    await stack.directory.stop()


async def wait_for(predicate: Any, limit: float = 10.0, interval: float = 0.05) -> None:
    """Poll an async predicate until it is true, failing after `limit` seconds."""
    deadline = time.monotonic() + limit
    while True:
        if await predicate():
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(interval)


async def unsent(stack: Stack) -> int:
    assert stack.directory.relay is not None
    return await stack.directory.relay.backlog()


async def outbox_ids(stack: Stack) -> set[str]:
    assert stack.directory.db is not None
    async with stack.directory.db.reader() as conn:
        rows = await conn.fetch("SELECT event_id FROM outbox")
    return {str(r[0]) for r in rows}


async def stream_events(stack: Stack) -> list[tuple[str, DomainEvent]]:
    """Every message in the stream: (Nats-Msg-Id header, decoded event)."""
    nc = await nats.connect(stack.settings.nats_url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stack.settings.stream_name)
        total = info.state.messages
        sub = await js.pull_subscribe(
            f"{stack.settings.nats_prefix}.events.>",
            stream=stack.settings.stream_name,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
        )
        found: list[tuple[str, DomainEvent]] = []
        while len(found) < total:
            for msg in await sub.fetch(min(256, total - len(found)), timeout=5):
                headers = msg.headers or {}
                found.append((headers["Nats-Msg-Id"], DomainEvent.model_validate_json(msg.data)))
                await msg.ack()
        return found
    finally:
        await nc.close()


K1 = (3, 7, 6, 1, 8, 9, 4, 5, 2)
K2 = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)


def fodselsnummer(born: date, individual: int) -> str:
    """A fødselsnummer with classic check digits (individual 500-749 for the 2000s)."""
    for candidate in range(individual, individual + 50):
        digits = [int(c) for c in f"{born:%d%m%y}{candidate:03d}"]
        k1 = (11 - sum(w * d for w, d in zip(K1, digits, strict=True)) % 11) % 11
        if k1 == 10:
            continue
        k2 = (11 - sum(w * d for w, d in zip(K2, [*digits, k1], strict=True)) % 11) % 11
        if k2 != 10:
            return "".join(map(str, [*digits, k1, k2]))
    raise AssertionError("no valid number in range")


def organisation(kind: str, name: str, orgnr: str, kommune: str | None = None) -> dict[str, Any]:
    """An Organization of a kind, with its kommunenummer when given."""
    resource: dict[str, Any] = {
        "resourceType": "Organization",
        "name": name,
        "identifier": [{"system": ORGNR_SYSTEM, "value": orgnr}],
        "type": [{"coding": [{"system": ORGANISATION_KIND_SYSTEM, "code": kind}]}],
    }
    if kommune is not None:
        resource["address"] = [{"extension": [{"url": MUNICIPALITY_EXTENSION, "valueCoding": {
            "system": KOMMUNENUMMER_SYSTEM, "code": kommune}}]}]  # fmt: skip
    return resource


def holder_number(child_id: str, given: str) -> str:
    """A fødselsnummer of the parent `given` of the child, the same each time it is asked."""
    digest = int.from_bytes(hashlib.blake2b(f"{child_id}/{given}".encode()).digest()[:8], "big")
    # The day and the individual number from different digits: as `digest % 400` is
    # `digest % 10_000 % 400`, taking both from the same ones left 10,000 numbers, and one
    # child in 10,000 had two parents of the same number.
    days, individual = digest % 10_000, digest // 10_000 % 400
    return fodselsnummer(date(1970, 1, 1) + timedelta(days=days), individual)


def parent(child_id: str, given: str, code: str = "felles") -> dict[str, Any]:
    """A RelatedPerson holding parental responsibility (`code`) for the child, named by
    a fødselsnummer of its own."""
    return {
        "resourceType": "RelatedPerson",
        "identifier": [{"system": FNR_SYSTEM, "value": holder_number(child_id, given)}],
        "patient": {"reference": f"Patient/{child_id}"},
        "name": [{"family": "Nordmann", "given": [given]}],
        "relationship": [{"coding": [{"system": PARENTAL_RESPONSIBILITY_SYSTEM, "code": code}]}],
    }


def diagnostics(reply: Reply) -> str:
    """Every issue's diagnostics of an OperationOutcome answer, in one line to search."""
    return " | ".join(str(issue.get("diagnostics", "")) for issue in reply.issues())


PER_REQUEST_HEADERS = frozenset(
    {"date", "content-length", "traceparent", "x-request-id", "x-trace-id"}
)
"""Headers that differ between any two answers (the length follows the masked id)."""


def comparable(reply: Reply, secret: str) -> tuple[int, bytes, list[tuple[str, str]]]:
    """An answer as a hidden-versus-missing comparison sees it: status, body with `secret`
    (the id asked for) masked, and every header but those that differ per request."""
    headers = sorted(
        (k.lower(), v) for k, v in reply.headers.items() if k.lower() not in PER_REQUEST_HEADERS
    )
    return reply.status, reply.body.replace(secret.encode(), b"<id>"), headers


class SwallowsItsCancellation:
    """A job (`await job()` returns 0) that loses a cancellation arriving while it waits and
    returns as if it had ended, as nats-py's waits can; counts its `runs`."""

    def __init__(self) -> None:
        self.runs = 0
        self.running = asyncio.Event()

    async def __call__(self) -> int:
        self.runs += 1
        self.running.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(30)
        return 0
