"""The event source of the subscriptions benchmark: referral Task changes at a fixed rate.

Why it exists: a notification's way starts at a write that commits a domain event to the
referral service's outbox, and the benchmark needs such writes at 100 and 500 per second on
a 2-core machine, timed from just before each write's transaction begins. A PUT through
the gateway costs several ms of CPU in the gateway and the referral service; even the
service's own write path, run in this process, costs about 4-5 ms of CPU per Task update
(FHIR model validation, a dozen statements), so 500 of them per second would need more
than the machine has and would measure the write, not the notification. Hence two sources,
both running in this process as a second instance of the referral service would (its own
database pool on the service's schema and its own ``OutboxRelay`` to the stack's NATS; the
relays of the two instances take turns by the relay's advisory lock):

* ``outbox`` (the default): each write is a transaction that puts into the outbox exactly
  the event the Task update would raise — the service's own event rule
  (``TaskDefinition.events``) applied to the Task before and after the change, with the
  Task's access facts as stored (category, author, parties) — without storing the Task
  version itself. A fraction of a millisecond of CPU: the notification path is what is
  measured.
* ``task``: each write is ``FhirRouter.handle`` of a Task update with If-Match as the
  BUP, the code a PUT runs inside the referral service (state machine, history, search
  index, then the same event through the same outbox). Faithful, but only rates of about
  100 per second fit on 2 cores.

Either way a write toggles a Task between in-progress and on-hold, which raises ``on-hold``
and ``resumed`` (topic ``referral-status``), under the version ``Task/<id>/_history/<v>``
the notification will name. `open_loop` starts the writes at ``t0 + k / rate`` whether or
not earlier ones are done (an open loop: a slow pipeline cannot slow the load down and hide
its own latency).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from nats.aio.client import Client as NATS

from bench.actors import organisation_caller
from bench.load import Recorder, Worker
from bench.partner import Ledger
from bench.referral import moved
from bench.report import OpStats
from services.referral.domain.vocabulary import TaskStatus
from services.referral.resources import referral_definitions
from shared.auth.scopes import ALL_SYSTEM_SCOPES
from shared.codes import OrganisationKind
from shared.config import Settings
from shared.events import DomainEvent, EventAccess
from shared.fhir.definitions import Change
from shared.fhir.errors import FhirError
from shared.fhir.router import FhirRouter
from shared.fhir.service import FhirService
from shared.outside_reads import OutsideReads
from shared.runtime import outbox_relay
from shared.store.database import Database, open_database
from shared.store.outbox import OutboxRelay, add_event
from shared.transport.nats_connection import close, connect
from shared.transport.wire import Caller, FhirRequest

Source = Literal["outbox", "task"]
SOURCES: tuple[Source, ...] = ("outbox", "task")
SERVICE = "referral"
POOL_SIZE = 10
"""Database connections of the source (the services' default pool size)."""
TOGGLE = {TaskStatus.IN_PROGRESS: TaskStatus.ON_HOLD, TaskStatus.ON_HOLD: TaskStatus.IN_PROGRESS}


@dataclass
class TrackedTask:
    """A referral's Task as the source last wrote it (the source is its only writer)."""

    id: str
    resource: dict[str, Any]
    """The Task now (in-progress or on-hold)."""
    other: dict[str, Any]
    """The same Task in the other status, as the service stored it (for ``outbox``)."""
    version: int
    owner: str
    access: EventAccess | None = None
    """The access facts stored with the Task (read by `TaskSource.track`)."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def status(self) -> TaskStatus:
        return TaskStatus(self.resource["status"])


class TaskSource:
    """A second instance of the referral service in this process, without a request host:
    its ``FhirService`` over the service's schema (no consent guard: a Task update by its
    owner skips the check there too) and its own outbox relay to the stack's NATS."""

    def __init__(
        self, settings: Settings, database_url: str, base_url: str, source: Source
    ) -> None:
        self.settings = settings
        self.database_url = database_url
        self.base_url = base_url
        self.source = source
        self.relay: OutboxRelay | None = None
        self._db: Database | None = None
        self._nc: NATS | None = None
        self._fhir: FhirService | None = None

    async def start(self) -> None:
        settings = self.settings
        self._db = await open_database(
            self.database_url, settings.db_schema_for(SERVICE), POOL_SIZE
        )
        self._nc = await connect(settings, "bench-source")
        self.relay = outbox_relay(self._db, self._nc, settings)
        self._fhir = FhirService(
            SERVICE,
            referral_definitions(OutsideReads()),
            self._db,
            prefix=settings.nats_prefix,
            on_commit=self.relay.notify,
        )
        self.relay.start()

    async def stop(self) -> None:
        if self.relay is not None:
            await self.relay.stop()
        if self._nc is not None:
            await close(self._nc)
        if self._db is not None:
            await self._db.close()

    @property
    def fhir(self) -> FhirService:
        assert self._fhir is not None, "the source is not started"
        return self._fhir

    async def track(
        self, current: Mapping[str, Any], other: Mapping[str, Any], owner: str
    ) -> TrackedTask:
        """A Task to write to, with the access facts the service stored with it."""
        task = TrackedTask(
            str(current["id"]),
            dict(current),
            dict(other),
            int(current["meta"]["versionId"]),
            owner,
        )
        async with self.fhir.db.reader() as conn:
            stored = await self.fhir.store.read(conn, "Task", task.id)
        if stored is None:
            raise RuntimeError(f"Task/{task.id} is not in the referral service's schema")
        access = stored.access
        task.access = EventAccess(
            category=access.category, author=access.author, parties=list(access.parties)
        )
        return task

    def _caller(self, orgnr: str) -> Caller:
        """The owner BUP as the gateway hands it to the service: the organisation, the
        kind the operator registered it as (``make_channels``), the token's scopes."""
        return organisation_caller(orgnr, OrganisationKind.BUP.value, [ALL_SYSTEM_SCOPES])

    async def write(self, task: TrackedTask) -> int:
        """Move `task` to its other status as its owner; the version written. Raises
        FhirError when the service refuses."""
        if self.source == "task":
            return await self._update(task)
        return await self._event_only(task)

    async def _update(self, task: TrackedTask) -> int:
        request = FhirRequest(
            interaction="update",
            resource_type="Task",
            id=task.id,
            if_match=f'W/"{task.version}"',
            base_url=self.base_url,
            caller=self._caller(task.owner),
        )
        body = moved(task.resource, TOGGLE[task.status], "")
        response = await FhirRouter(self.fhir).handle(request, orjson.dumps(body))
        stored: dict[str, Any] = orjson.loads(response.body)
        task.other, task.resource = task.resource, stored
        task.version = int(stored["meta"]["versionId"])
        return task.version

    async def _event_only(self, task: TrackedTask) -> int:
        """The events the service would write for the change, in a transaction of their
        own, as the service writes them (``FhirService`` records them the same way)."""
        definition = self.fhir.definitions["Task"]
        version = task.version + 1
        change = Change("Task", task.id, version, task.resource, task.other)
        actor = self._caller(task.owner).model_dump(exclude_defaults=True)
        events = [
            DomainEvent(
                type=f"{SERVICE}.Task.{spec.name}",
                source=SERVICE,
                resource_type="Task",
                resource_id=task.id,
                version_id=str(version),
                patient=definition.patient_of(task.other, task.id),
                data={"actor": actor, **spec.data},
                access=task.access,
            )
            for spec in definition.events(change)
        ]
        async with self.fhir.db.transaction() as conn:
            for event in events:
                await add_event(conn, event, self.fhir.prefix)
        self.fhir.notify_commit()
        task.resource, task.other, task.version = task.other, task.resource, version
        return version


@dataclass
class Writes:
    """The source's account of one phase's measured writes."""

    commit: OpStats = field(default_factory=OpStats)
    """Start of the transaction → committed; failures in ``errors``."""
    lags: list[float] = field(default_factory=list)
    """How late each write began after its scheduled time."""
    scheduled: int = 0


async def write_event(
    source: TaskSource,
    ledger: Ledger,
    task: TrackedTask,
    phase: str,
    measured: bool,
    due: float,
    writes: Writes,
    recorder: Recorder,
) -> None:
    """One write of the open loop, entered in the ledger under the version it creates
    before it begins (a notification can then never arrive before its entry)."""
    async with task.lock:
        started = time.perf_counter()
        focus = f"Task/{task.id}/_history/{task.version + 1}"
        ledger.expect(focus, phase, started, measured)
        try:
            version = await source.write(task)
        except Exception as exc:
            ledger.forget(focus)
            status = exc.status if isinstance(exc, FhirError) else 0
            recorder.failure("write", "PUT", f"/Task/{task.id}", status, repr(exc))
            if measured:
                writes.commit.errors += 1
            return
        committed = time.perf_counter()
        written = f"Task/{task.id}/_history/{version}"
        if written != focus:
            ledger.rename(focus, written)
        if measured:
            writes.commit.latencies.append(committed - started)
            writes.lags.append(started - due)


def open_loop(
    rate: float, fire: Callable[[float, bool], Coroutine[Any, Any, None]], recorder: Recorder
) -> Worker:
    """A client that starts ``fire(due, measured)`` at ``due = t0 + k / rate`` for k = 0, 1,
    … without waiting for earlier ones (behind schedule, it starts the late ones at once);
    `measured` is whether the recorder's window is open then. On stop it waits for the
    fires under way."""

    async def run(stop: asyncio.Event) -> None:
        under_way: set[asyncio.Task[None]] = set()
        began, count = time.perf_counter(), 0
        while not stop.is_set():
            due = began + count / rate
            wait = due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
                if stop.is_set():
                    break
            fired = asyncio.create_task(fire(due, recorder.measuring))
            under_way.add(fired)
            fired.add_done_callback(under_way.discard)
            count += 1
        await asyncio.gather(*under_way)

    return run
