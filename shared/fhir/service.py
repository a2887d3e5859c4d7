"""One barnebro service's FHIR data: what it serves, where it is stored, how it leaves.

`FhirService` is the composition the rest of a service is given: its resource
definitions and search parameters, its store and database, its consent step (always
one: `shared.access.step`), its operations and the outbox it wakes. It answers nothing
itself: `shared.fhir.router` routes requests, `repository(request)` reads as a caller,
`unit_of_work(request)` is the one transaction in which data is changed, and `matches`
serves the service's own jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection

from shared.access.relations import RelationAnnouncer, take_relations
from shared.access.step import UNGUARDED, Guard
from shared.config import DEFAULT_MAX_BODY_BYTES
from shared.directory_answers import one_answer_per_question
from shared.fhir.definitions import ResourceDefinition
from shared.fhir.repository import Repository
from shared.fhir.search_query import parse_search
from shared.fhir.service_data import ServiceData
from shared.fhir.unit_of_work import StoreUnitOfWork
from shared.store.database import Database
from shared.store.failures import VersionConflict
from shared.store.resource_store import StoredResource, refusal
from shared.transport.wire import FhirRequest, FhirResponse

Operation = Callable[[FhirRequest, bytes], Awaitable[FhirResponse]]
log = logging.getLogger(__name__)
PUBLISH_PATIENCE = 5.0
_awaited: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "awaited_messages", default=None
)


class FhirService(ServiceData):
    """The FHIR resources of one service, their store, guard, operations and outbox."""

    def __init__(
        self,
        name: str,
        definitions: list[ResourceDefinition],
        db: Database,
        *,
        prefix: str,
        on_commit: Callable[[], None] = lambda: None,
        published: Callable[[Collection[int]], Awaitable[None]] | None = None,
        guard: Guard = UNGUARDED,
        body_limit: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        """`guard` is the consent step every outgoing resource passes: `UNGUARDED` only
        for services that hold no patient data, and for benchmarks of the store;
        `published` waits until the outbox relay has published the given outbox rows
        (`OutboxRelay.drained`)."""
        super().__init__(name, definitions, db, prefix=prefix, guard=guard, body_limit=body_limit)
        self.operations: dict[str, Operation] = {}
        """Service operations beyond FHIR REST, by name (`FhirRequest.operation`)."""
        self._on_commit = on_commit
        self._published = published
        self.announcer: RelationAnnouncer | None = None
        """Set by the runtime: tells the directory of new relations (`committed`)."""
        self.after_commit: list[Callable[[], Awaitable[None]]] = []
        """Further announcements after a commit, before the answer (they must not raise:
        the write is done)."""

    def repository(self, request: FhirRequest, fence: Awaitable[None] | None = None) -> Repository:
        """The service's data as `request`'s caller may read it (`fence`: see
        `Repository`)."""
        return Repository(self, request, fence)

    @contextlib.asynccontextmanager
    async def unit_of_work(
        self, request: FhirRequest, *, checks_at_commit: bool = False
    ) -> AsyncIterator[StoreUnitOfWork]:
        """One transaction for `request`: every write in it, its events and its follow-on
        writes commit together or not at all; after the commit the outbox relay wakes
        (if the transaction gave it anything to publish) and the directory hears of new
        relations. The directory is asked each question once in it
        (`one_answer_per_question`). A client's request whose transaction queued a
        message its answer promises (`add_message(before_answer=True)`: a child's new
        access state) is answered once that message is published; the service's own
        jobs, whose answers nobody waits for, do not wait.

        `checks_at_commit`: the versions it stores wait for its next statement or its
        commit even when they could conflict (`StoreUnitOfWork.checks_at_commit`), so a
        create that reads nothing in its transaction is one round trip; a conflict is
        then answered here, as the write would have been."""
        try:
            with one_answer_per_question():
                async with self.db.transaction() as conn:
                    yield StoreUnitOfWork(self, conn, request, checks_at_commit=checks_at_commit)
        except VersionConflict as conflict:
            definition = self.definitions.get(conflict.res_type)
            refused = refusal(
                conflict, name_holder=definition is not None and definition.data_category is None
            )
            if conflict.created and conflict.holder[0]:
                await self.guard.conflicted(request, *conflict.holder)
            raise refused from conflict
        await self.committed(outbox_written=conn.outbox_written)
        if not conn.awaited_messages:
            return
        if request.caller.credential != "service":
            await self.outbox_published(conn.awaited_messages)
        else:
            awaited = _awaited.get()
            if awaited is not None:
                awaited.extend(conn.awaited_messages)

    @contextlib.asynccontextmanager
    async def reading(self, request: FhirRequest) -> AsyncIterator[StoreUnitOfWork]:
        """A read-only snapshot for checks that write nothing (`$validate`)."""
        async with self.db.reader() as conn:
            yield StoreUnitOfWork(self, conn, request)

    async def matches(
        self, resource_type: str, criteria: list[tuple[str, str]], page_size: int = 500
    ) -> AsyncIterator[StoredResource]:
        """Every resource matching a search, page by page and without an access filter:
        for the service's own jobs (sweeps, deadline monitors), never for a client."""
        cursor: str | None = None
        while True:
            paging = [("_cursor", cursor)] if cursor else []
            params = [*criteria, ("_count", str(page_size)), *paging]
            query = parse_search(resource_type, params, self.search_params)
            async with self.db.reader() as conn:
                page = await self.store.search(conn, query)
            for stored in page.resources:
                yield stored
            cursor = page.next_cursor
            if cursor is None:
                return

    @contextlib.asynccontextmanager
    async def answering_after_publication(self) -> AsyncIterator[None]:
        """For a service job whose caller waits (the directory's request to judge changed
        authority): the messages its units of work queue to be published before an answer
        are waited for when the block ends, as a client's own write waits for them."""
        awaited: list[int] = []
        token = _awaited.set(awaited)
        try:
            yield
        finally:
            _awaited.reset(token)
        await self.outbox_published(awaited)

    async def outbox_published(self, rows: Collection[int]) -> None:
        """Wait (PUBLISH_PATIENCE at most) until these outbox rows are published. Past
        that the answer goes anyway: the write is done, and the relay publishes it as soon
        as JetStream takes it."""
        if self._published is None or not rows:
            return
        try:
            async with asyncio.timeout(PUBLISH_PATIENCE):
                await self._published(rows)
        except TimeoutError:
            log.warning("answering before the outbox published a message the answer awaited")

    def notify_commit(self) -> None:
        """Wake the outbox relay after a committed write."""
        self._on_commit()

    async def committed(self, *, outbox_written: bool = True) -> None:
        """After a unit of work commits, before its answer: wake the outbox relay and tell
        the directory of the relations to children the writes made. A transaction that
        put nothing in the outbox (the audit trail's AuditEvents) leaves the relay asleep:
        waking it costs a transaction that finds nothing, and a message missed here would
        still be found by the relay's next poll."""
        if outbox_written:
            self.notify_commit()
        made = take_relations()
        if made and self.announcer is not None:
            await self.announcer.announce(made)
        for announce in self.after_commit:
            await announce()
