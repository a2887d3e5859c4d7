"""One transaction of a service: the only place its resources are changed.

A `StoreUnitOfWork` writes a new version, its search index, unique keys and outbox
events in the transaction it was opened with, and runs the follow-on writes of the
type's `after_write` in that same transaction, so a write and everything that follows
from it commit together or not at all. Hooks see it through the narrow
`shared.fhir.definitions.UnitOfWork`; a client's create, update and delete
(`shared.fhir.writes`) and a service's own operations use the rest.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from shared.access.relations import note_relations, related_orgs
from shared.events import DomainEvent, EventAccess
from shared.fhir.definitions import Change, Lookup, ResourceDefinition, WriteContext
from shared.fhir.resources import ID_PATTERN, validate_resource
from shared.fhir.search_query import DEFAULT_COUNT, parse_search
from shared.fhir.service_data import ServiceData
from shared.rules import refuse
from shared.store.access_sql import ResourceAccess
from shared.store.database import Connection
from shared.store.outbox import Message, add_event, event_message, lock_patient
from shared.store.resource_store import StoredResource, new_id
from shared.store.stored import too_large
from shared.store.write_locks import lock_patients
from shared.telemetry import trace_context
from shared.transport.wire import FhirRequest


class StoreUnitOfWork:
    """Reads and writes of one service inside one open transaction (`conn`), made for
    `request`."""

    def __init__(
        self,
        data: ServiceData,
        conn: Connection,
        request: FhirRequest,
        planned: dict[str, tuple[str, ...]] | None = None,
        created_shared: dict[str, frozenset[str]] | None = None,
        written: dict[tuple[str, str], StoredResource] | None = None,
        *,
        checks_at_commit: bool = False,
    ) -> None:
        self.data = data
        self.conn = conn
        self.request = request
        self.planned: dict[str, tuple[str, ...]] = {} if planned is None else planned
        """`Type/id` of resources this transaction will create → the organisations another
        of its entries shares them with (`ResourceDefinition.shares_created`)."""
        self.created_shared: dict[str, frozenset[str]] = (
            {} if created_shared is None else created_shared
        )
        """`Type/id` of resources created shared by plan → with whom."""
        self.written: dict[tuple[str, str], StoredResource] = {} if written is None else written
        """The current version of each resource this transaction wrote, as stored: read
        back from here, not from the database (a referral's check reads the attachments
        its transaction has just created, perhaps not sent yet). A write that fails
        fails its transaction, so this is what the database answers within it."""
        self.checks_at_commit = checks_at_commit
        """Its versions wait for the next statement or the commit even if they conflict,
        raised there (`VersionConflict`, answered by `FhirService.unit_of_work`)."""

    def bound(self, request: FhirRequest) -> StoreUnitOfWork:
        """The same transaction, made for another request (an entry of a transaction)."""
        return StoreUnitOfWork(
            self.data, self.conn, request, self.planned, self.created_shared, self.written
        )

    def plan_shares(self, planned: dict[str, tuple[str, ...]]) -> None:
        """Create these resources (`Type/id`) already shared with these organisations."""
        self.planned.update(planned)

    def shared_at_creation(self, reference: str) -> frozenset[str]:
        return self.created_shared.get(reference, frozenset())

    # -- reads for the service's own rules ------------------------------------------------

    async def read(self, resource_type: str, res_id: str) -> StoredResource | None:
        """As the transaction sees it (`_reading`); before it has sent a statement, in one
        statement with the reads by id of the moment (`ServiceData.current`)."""
        written = self.written.get((resource_type, res_id))
        if written is not None:
            return written
        if not self.conn.opened:
            current = await self.data.current((resource_type, res_id))
            if current is None or not current.body_withheld:
                return current
        return await self.data.store.read(self.conn, resource_type, res_id)

    async def read_for_update(
        self,
        resource_type: str,
        res_id: str,
        *,
        patient: str | None = None,
        stored_patient: bool = False,
        also: str | None = None,
    ) -> StoredResource | None:
        """The current version, its row locked until the commit; first the lock of
        `patient`, or with `stored_patient` of the patient the stored version names, and
        of `also` (the patient a new version will name), in one order: the patients
        before the row, as every writer of patient data takes them."""
        return await self.data.store.read_for_update(
            self.conn,
            resource_type,
            res_id,
            patient=patient,
            stored_patient=stored_patient,
            also=also,
        )

    async def read_version(
        self, resource_type: str, res_id: str, version: int | None
    ) -> StoredResource | None:
        """One stored version (None for no such version, or no version number)."""
        if version is None:
            return None
        return await self.data.store.vread(self.conn, resource_type, res_id, version)

    @contextlib.asynccontextmanager
    async def _reading(self) -> AsyncIterator[Connection]:
        """Where the transaction reads: in it once it has sent a statement or has one
        waiting; until then on another connection, which sees the same, so that the
        transaction is not begun for a look-up (BEGIN, look-up, write, COMMIT)."""
        if self.conn.opened or self.conn.waiting:
            yield self.conn
            return
        async with self.data.db.reader() as conn:
            yield conn

    async def of_patient(self, resource_type: str, patient: str) -> list[StoredResource]:
        """Every current resource of a type about one patient."""
        async with self._reading() as conn:
            return await self.data.store.of_patient(conn, resource_type, patient)

    async def find(
        self, resource_type: str, criteria: list[tuple[str, str]], count: int = DEFAULT_COUNT
    ) -> list[StoredResource]:
        query = parse_search(resource_type, criteria, self.data.search_params)
        query.count = count
        async with self._reading() as conn:
            return (await self.data.store.search(conn, query)).resources

    async def existing(self, resource_type: str, ids: list[str]) -> set[str]:
        """Which of `ids` are stored (deleted or not), in one statement."""
        async with self._reading() as conn:
            return await self.data.store.existing(conn, resource_type, ids)

    async def carrying_all(
        self, resource_type: str, values: list[tuple[str, str]], count: int
    ) -> list[StoredResource]:
        """Resources whose index holds every (parameter, exact value): for a rare value
        beside a common one (`ResourceStore.carrying_all`)."""
        async with self._reading() as conn:
            return await self.data.store.carrying_all(conn, resource_type, values, count)

    def lookup(self) -> Lookup:
        async def lookup(resource_type: str, res_id: str) -> dict[str, Any] | None:
            if resource_type not in self.data.definitions or not ID_PATTERN.fullmatch(res_id):
                return None
            stored = await self.read(resource_type, res_id)
            return stored.json() if stored is not None and not stored.deleted else None

        return lookup

    def visible(self, bases: frozenset[str] | None = None) -> Lookup:
        async def lookup(resource_type: str, res_id: str) -> dict[str, Any] | None:
            if resource_type not in self.data.definitions or not ID_PATTERN.fullmatch(res_id):
                return None
            stored = await self.read(resource_type, res_id)
            if stored is None or stored.deleted:
                return None
            if not await self.data.guard.permits(self.request, stored, bases):
                return None
            return stored.json()

        return lookup

    async def add_event(self, event: DomainEvent) -> None:
        """An event that is not a resource change (e.g. care started), in the outbox."""
        await add_event(self.conn, event, self.data.prefix)

    async def lock_patients(self, replaced: list[tuple[str, str]], patients: list[str]) -> None:
        """The locks of the patients of several writes, taken up front in one order
        (`shared.store.write_locks.lock_patients`)."""
        await lock_patients(self.conn, replaced, patients)

    async def lock_patient(self, patient: str) -> None:
        """Serialise the writes about one patient (see `shared.store.outbox`)."""
        await lock_patient(self.conn, patient)

    # -- writes ---------------------------------------------------------------------------

    def context(self, before: dict[str, Any] | None, author: str | None) -> WriteContext:
        return WriteContext(self, before, author)

    async def save(
        self,
        resource: dict[str, Any],
        *,
        previous: StoredResource | None = None,
        validated: bool = False,
    ) -> StoredResource:
        """`validated`: the resource is one the code generates and the tests validate (the
        conformance resources), so it is not parsed against the FHIR model again."""
        definition = self.data.definition(resource.get("resourceType"))
        if not validated:
            validate_resource(resource, definition.resource_type)
        before = previous.json() if previous is not None and not previous.deleted else None
        res_id = previous.res_id if previous is not None else str(resource.get("id") or new_id())
        author = previous.access.author if previous is not None else None
        return await self.commit_version(
            definition,
            resource,
            res_id=res_id,
            previous=previous,
            context=self.context(before, author),
        )

    async def save_new(
        self, resources: list[dict[str, Any]], *, validated: bool = False
    ) -> list[StoredResource]:
        """Store new resources as `save` does one by one, with the same versions, index
        rows, events and hooks, but those without unique keys in one batch (one round
        trip on PostgreSQL): what the audit trail stores, many records at a time."""
        batch: list[tuple[ResourceDefinition, StoredResource, dict[str, Any], Change]] = []
        saved: list[StoredResource] = []
        for resource in resources:
            definition = self.data.definition(resource.get("resourceType"))
            res_id = str(resource.get("id") or new_id())
            key = f"{definition.resource_type}/{res_id}"
            if definition.unique_keys(resource) or key in self.planned:
                saved.append(await self.save(resource, validated=validated))
                continue
            if not validated:
                validate_resource(resource, definition.resource_type)
            stored, change = self._next_version(definition, resource, res_id, None, None)
            batch.append((definition, stored, resource, change))
            saved.append(stored)
        await self.data.store.write_new(
            self.conn,
            [
                (stored, resource, self.events(definition, stored, change))
                for definition, stored, resource, change in batch
            ],
        )
        for definition, stored, _, change in batch:
            await self._followed(definition, stored, change, self.context(None, None))
        return saved

    async def share_history(self, resource_type: str, res_id: str, parties: list[str]) -> None:
        await self.data.store.share_history(self.conn, resource_type, res_id, parties)

    async def commit_version(
        self,
        definition: ResourceDefinition,
        resource: dict[str, Any] | None,
        *,
        res_id: str,
        previous: StoredResource | None,
        context: WriteContext,
    ) -> StoredResource:
        """Store a new version (a deletion marker when `resource` is None), its events,
        and the writes that follow from it."""
        before = context.before
        planned = self.planned.pop(f"{definition.resource_type}/{res_id}", None)
        if planned and previous is None and resource is not None:
            definition.share_created(resource, planned)
            self.created_shared[f"{definition.resource_type}/{res_id}"] = frozenset(planned)
        stored, change = self._next_version(definition, resource, res_id, previous, before)
        refuse(too_large(stored, self.data.body_limit))
        await self.data.store.write(
            self.conn,
            stored,
            resource,
            previous=previous,
            unique_keys=definition.unique_keys(resource) if resource is not None else (),
            previous_keys=definition.unique_keys(before) if before else (),
            name_holder=definition.data_category is None,
            messages=self.events(definition, stored, change),
            at_commit=self.checks_at_commit,
        )
        self.written[(stored.res_type, stored.res_id)] = stored
        await self._followed(definition, stored, change, context)
        return stored

    def _next_version(
        self,
        definition: ResourceDefinition,
        resource: dict[str, Any] | None,
        res_id: str,
        previous: StoredResource | None,
        before: dict[str, Any] | None,
    ) -> tuple[StoredResource, Change]:
        """The version to store after `previous`, with its access columns, and the change."""
        if resource is not None:
            access = access_of(definition, resource, res_id, self.request, previous)
        else:
            assert previous is not None, "only a stored resource is deleted"
            access = previous.access
        stored = self.data.store.next_version(
            resource,
            res_type=definition.resource_type,
            res_id=res_id,
            previous=previous,
            access=access,
        )
        return stored, Change(stored.res_type, stored.res_id, stored.version, before, resource)

    async def _followed(
        self,
        definition: ResourceDefinition,
        stored: StoredResource,
        change: Change,
        context: WriteContext,
    ) -> None:
        """What follows a stored version: the relations it makes, and its type's writes."""
        self.note_relations(definition, stored, change)
        await definition.after_write(change, context)

    def note_relations(
        self, definition: ResourceDefinition, stored: StoredResource, change: Change
    ) -> None:
        """Note the relations to the child a stored change makes (announced with the
        answer, `shared.access.relations`)."""
        patient = self._patient(definition, stored, change)
        if patient is not None and change.after is not None:
            access = stored.access
            actor = self.request.caller.model_dump(exclude_defaults=True)
            note_relations(
                patient,
                related_orgs(
                    stored.res_type, access.category, access.author, access.parties, actor
                ),
            )

    @staticmethod
    def _patient(
        definition: ResourceDefinition, stored: StoredResource, change: Change
    ) -> str | None:
        subject = change.after if change.after is not None else change.before
        return definition.patient_of(subject, stored.res_id) if subject is not None else None

    def events(
        self, definition: ResourceDefinition, stored: StoredResource, change: Change
    ) -> list[Message]:
        """The change's events, for the outbox in the transaction that stores it."""
        patient = self._patient(definition, stored, change)
        actor = self.request.caller.model_dump(exclude_defaults=True)
        carrier = trace_context()
        return [
            event_message(
                DomainEvent(
                    type=f"{self.data.name}.{stored.res_type}.{spec.name}",
                    source=self.data.name,
                    resource_type=stored.res_type,
                    resource_id=stored.res_id,
                    version_id=str(stored.version),
                    patient=patient,
                    trace_context=carrier,
                    data={"actor": actor, **spec.data},
                    access=EventAccess(
                        category=stored.access.category,
                        author=stored.access.author,
                        parties=list(stored.access.parties),
                    ),
                ),
                self.data.prefix,
            )
            for spec in definition.events(change)
        ]


def access_of(
    definition: ResourceDefinition,
    resource: dict[str, Any],
    res_id: str,
    request: FhirRequest,
    previous: StoredResource | None,
) -> ResourceAccess:
    """The access columns of a new version; the author is whoever wrote the first one.
    Types that hold no patient information record the patient (for look-ups) and the
    author (for the permission table's `own`)."""
    caller = request.caller
    # A person logged in as themselves (fhirUser) writes for no organisation.
    own = None if caller.fhir_user else caller.orgnr
    author = previous.access.author if previous is not None else own
    if definition.data_category is None:
        return ResourceAccess(patient=definition.patient_of(resource, res_id), author=author)
    return ResourceAccess(
        patient=definition.patient_of(resource, res_id),
        category=definition.category_of(resource),
        author=author,
        parties=tuple(definition.parties(resource)),
    )
