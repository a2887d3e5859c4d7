"""What a service declares about each resource type it owns.

A `ResourceDefinition` names the type, its search parameters, its business keys, its
domain checks and the events a change raises. The engine (`shared.fhir.router`,
`shared.fhir.writes`) calls these hooks with a narrow `UnitOfWork`, so a service writes
only its rules and reaches its stored data only through that.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol

from shared.fhir.errors import Issue, error
from shared.fhir.parameters import OperationParameter
from shared.fhir.profiles import ProfileRules
from shared.fhir.search_params import SearchParam
from shared.fhir.search_query import DEFAULT_COUNT, SearchQuery
from shared.store.database import Connection
from shared.store.resource_store import StoredResource
from shared.transport.wire import Caller, FhirRequest


@dataclass(frozen=True)
class Change:
    """One stored change: the resource before and after (None when absent or deleted)."""

    resource_type: str
    resource_id: str
    version: int
    before: dict[str, Any] | None
    after: dict[str, Any] | None

    @property
    def kind(self) -> str:
        if self.before is None:
            return "created"
        return "deleted" if self.after is None else "updated"


Lookup = Callable[[str, str], Awaitable[dict[str, Any] | None]]
"""Reads the current version of a resource of the same service (None if absent or deleted),
inside the transaction of the write being checked."""


class UnitOfWork(Protocol):
    """What a resource definition's hooks may do with the service's stored data, inside
    the transaction of the write being checked: read, find, save and share, nothing more.
    Reads here are the service's own (for its rules), never an answer to a client;
    `visible` reads as the caller, for references the caller's write makes."""

    request: FhirRequest
    """The request the write is made for (an entry's own request in a transaction)."""
    conn: Connection
    """The transaction itself, only for a service's own tables beside its resources (e.g.
    the subscriptions' delivery queue); resources are reached through the methods."""

    async def read(self, resource_type: str, res_id: str) -> StoredResource | None:
        """The current version (or deletion marker) of a resource, None if never stored."""
        ...

    async def read_for_update(
        self,
        resource_type: str,
        res_id: str,
        *,
        patient: str | None = None,
        stored_patient: bool = False,
    ) -> StoredResource | None:
        """`read`, locking the row until the transaction ends (to save a new version);
        first the lock of `patient`, or with `stored_patient` of the patient the stored
        version names (`shared.store.write_locks`)."""
        ...

    async def find(
        self, resource_type: str, criteria: list[tuple[str, str]], count: int = DEFAULT_COUNT
    ) -> list[StoredResource]:
        """The resources a search finds (at most `count`), whoever may see them."""
        ...

    def lookup(self) -> Lookup:
        """Current resources of the service by type and id, whoever may see them."""
        ...

    def visible(self, bases: frozenset[str] | None = None) -> Lookup:
        """Current resources as the caller sees them (on one of `bases`, when given):
        what the caller may not see is absent, and the refusal is audited."""
        ...

    async def save(
        self,
        resource: dict[str, Any],
        *,
        previous: StoredResource | None = None,
        validated: bool = False,
    ) -> StoredResource:
        """A follow-on write of the service itself: validated, versioned, indexed and
        evented like a client's. `previous` (from `read_for_update`) is the version it
        replaces; None creates a new resource. `validated`: the resource is built by code
        whose every output the tests validate, so it is not parsed against the model."""
        ...

    async def share_history(self, resource_type: str, res_id: str, parties: list[str]) -> None:
        """Give every version of a resource the parties of its current one."""
        ...

    async def lock_patient(self, patient: str) -> None:
        """Serialise the writes about one patient until the transaction ends (a rule that
        counts the patient's resources before a create takes it first)."""
        ...

    def shared_at_creation(self, reference: str) -> frozenset[str]:
        """The organisations a resource this transaction created was created shared with
        (`ResourceDefinition.shares_created`); empty for any other."""
        ...


@dataclass(frozen=True)
class WriteContext:
    """A write under way: its unit of work, the version it replaces (None on create) and
    that version's first author."""

    uow: UnitOfWork
    before: dict[str, Any] | None
    author: str | None = None
    """The organisation that wrote the first version of the resource being replaced."""

    @property
    def request(self) -> FhirRequest:
        return self.uow.request

    @property
    def conn(self) -> Connection:
        return self.uow.conn


@dataclass(frozen=True)
class EventSpec:
    """An event a change raises: its name (e.g. `care-order-started`) and details."""

    name: str
    data: dict[str, Any]


class ResourceDefinition:
    """Defaults for a resource type; services subclass and override what they need."""

    resource_type: str = ""
    search_params: tuple[SearchParam, ...] = ()
    update_create: bool = False
    documentation: str = ""
    written_by: str | None = None
    """Set for types the service writes itself (e.g. Consent, through the consent
    administration API, which computes its status): FHIR writes are refused, naming it."""
    data_category: str | None = None
    """The category of patient information this type holds (`shared.codes.DataCategory`);
    None for what is not information about a patient (organisations, practitioners, the
    person index). Resources with a category are released only as consent allows."""

    operations: tuple[tuple[str, str], ...] = ()
    """Operations on this type beyond `$validate`, for the CapabilityStatement: (name
    without `$`, canonical URL of the OperationDefinition)."""

    operation_parameters: Mapping[str, tuple[OperationParameter, ...]] = MappingProxyType({})
    """What each of `operations` takes and answers, by name: its handler reads the names
    it accepts from here, and its OperationDefinition lists them."""

    profile: ProfileRules = ProfileRules()
    """What the type's profile declares beyond the FHIR model (`shared.fhir.profiles`)."""

    deletable: bool = True
    """False for types whose history is a record that must stay (a referral): DELETE
    answers 405."""

    other_categories: tuple[str, ...] = ()
    """Further categories single resources of this type may hold (`category_of`)."""

    def category_of(self, resource: dict[str, Any]) -> str | None:
        """The data category of one resource: `data_category`, unless the type holds
        several (e.g. an individual plan among care plans)."""
        return self.data_category

    def categories(self) -> tuple[str, ...]:
        """Every category resources of this type may hold."""
        return (self.data_category, *self.other_categories) if self.data_category else ()

    def refuse_client_writes(self) -> None:
        """Types the service writes itself are never written by a client, whatever the
        path (a single interaction, a batch or a transaction entry)."""
        if self.written_by is not None:
            raise error(
                405,
                "not-supported",
                f"{self.resource_type} cannot be written over the FHIR API: it is written"
                f" by {self.written_by}",
            )

    added_keys: tuple[str, ...] = ()
    """Kinds of business key (`unique_keys` names) added after resources of the type were
    stored: a migration gives the stored ones theirs (`shared.fhir.migrations`)."""

    def unique_keys(self, resource: dict[str, Any]) -> list[tuple[str, str]]:
        """Business keys that no other resource may hold (e.g. a fødselsnummer)."""
        return []

    def prepare(self, resource: dict[str, Any], caller: Caller) -> list[Issue]:
        """Apply the domain rules beyond the FHIR model before a write or `$validate`.

        Raise FhirError to refuse; return warnings; may fill in elements the server
        derives (such as a birth date from a fødselsnummer).
        """
        return []

    async def verify_references(self, resource: dict[str, Any], lookup: Lookup) -> None:
        """Rules that depend on other resources of the service; raise FhirError to refuse."""

    async def check_write(self, resource: dict[str, Any], context: WriteContext) -> list[Issue]:
        """Rules that need the version being replaced or other services (e.g. a state
        machine, or the directory): called inside the write's transaction, after
        `prepare`, `verify_references` and the preconditions. Raise FhirError to refuse;
        return warnings; may fill in elements the server derives."""
        return []

    async def check_delete(self, resource: dict[str, Any], context: WriteContext) -> None:
        """Rules a client's delete must pass (the version being deleted is `resource`);
        raise FhirError to refuse."""

    async def after_write(self, change: Change, context: WriteContext) -> None:
        """Writes that follow from a client's write or delete (`change.after` is None), in
        the same transaction (e.g. the workflow Task of a new referral)."""

    shares_on_create: bool = False
    """True for types whose `shares_created` may name anything."""

    def shares_created(self, resource: dict[str, Any]) -> dict[str, tuple[str, ...]]:
        """For a resource a transaction creates: the resources it names (`Type/id`) that its
        `after_write` will share, and with which organisations, as far as the resource as
        sent makes that certain. Those the same transaction creates are created already
        shared (`share_created`): the transaction stores all of it or nothing, so they are
        never stored unshared, and a second version only to share them is not written.
        `after_write` still shares whatever they lack and must check they got no more."""
        return {}

    def share_created(self, resource: dict[str, Any], orgnrs: tuple[str, ...]) -> None:
        """Share a resource about to be created (after `check_write`) with `orgnrs`, which
        another entry of the same transaction will share it with (`shares_created`)."""
        raise NotImplementedError(f"{self.resource_type} is not shared by a transaction")

    def patient_of(self, resource: dict[str, Any], resource_id: str) -> str | None:
        """The id of the Patient this resource is about, the events' partition key."""
        return None

    def parties(self, resource: dict[str, Any]) -> list[str]:
        """Organisations (organisasjonsnummer) named on the resource that always see it,
        besides the one that wrote it (e.g. a referral's requester and performer)."""
        return []

    def events(self, change: Change) -> list[EventSpec]:
        """Events for a change; by default created/updated/deleted."""
        return [EventSpec(change.kind, {})]

    owner_element: str = ""
    """The element that names the organisation a resource belongs to (for `owners`)."""

    async def owners(self, resource: dict[str, Any], lookup: Lookup) -> list[str] | None:
        """The organisations (organisasjonsnummer) a resource belongs to, for the
        permission table's `own` on writes; None where only who wrote it counts."""
        return None

    async def check_search(self, query: SearchQuery, request: FhirRequest, lookup: Lookup) -> None:
        """Refuse (FhirError) a search this caller may not make at all, whatever it would
        find (e.g. by a parameter that would reveal what the caller may not know)."""

    def shaped(self, body: bytes, obligations: tuple[str, ...]) -> bytes:
        """The stored JSON as released under a decision's obligations (e.g. a child's
        record without its care orders); the same bytes when nothing applies."""
        return body

    def params_by_name(self) -> dict[str, SearchParam]:
        return {p.name: p for p in self.search_params}
