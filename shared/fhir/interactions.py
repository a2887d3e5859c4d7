"""The FHIR interactions of a service, each mapped to one store operation.

`FhirService` is the service-side router: it receives a `FhirRequest` from the transport,
runs it in one unit of work (resource write, search index, unique keys and outbox event in
one database transaction) and answers with a `FhirResponse`. Services supply only their
`ResourceDefinition`s; reads are served from stored bytes without re-parsing.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson
from opentelemetry import propagate

from shared.access.guard import AccessGuard
from shared.access.permissions import Rule, request_rule
from shared.access.relations import (
    RelationAnnouncer,
    note_relations,
    related_orgs,
    take_relations,
)
from shared.auth.scopes import authorize, granted
from shared.events import DomainEvent, EventAccess
from shared.fhir.definitions import Change, Lookup, ResourceDefinition, WriteContext
from shared.fhir.errors import FhirError, Issue, error, information, operation_outcome
from shared.fhir.resources import (
    FHIR_JSON,
    ID_PATTERN,
    parse_json,
    validate_resource,
    version_number,
)
from shared.fhir.search_params import SearchParam
from shared.fhir.search_query import MAX_COUNT, parse_date_value, parse_search, small_integer
from shared.fhir.transaction import run_transaction
from shared.store.access_sql import ResourceAccess
from shared.store.database import Connection, Database
from shared.store.outbox import add_event, lock_patient
from shared.store.resource_store import (
    AccessFor,
    DuplicateKey,
    ResourceStore,
    StoredResource,
    new_id,
    no_filter,
)
from shared.transport.wire import FhirRequest, FhirResponse


def http_date(instant: str) -> str:
    return format_datetime(datetime.fromisoformat(instant.replace("Z", "+00:00")), usegmt=True)


def version_headers(stored: StoredResource, base_url: str) -> dict[str, str]:
    return {
        "ETag": stored.etag,
        "Last-Modified": http_date(stored.last_updated),
        "Location": f"{base_url}/{stored.res_type}/{stored.res_id}/_history/{stored.version}",
    }


def parse_etag(value: str) -> int:
    match = re.fullmatch(r'(?:W/)?"(\d+)"', value.strip())
    if match is None:
        raise error(400, "invalid", f'If-Match {value!r} is not an ETag such as W/"3"')
    return int(match.group(1))


Operation = Callable[[FhirRequest, bytes], Awaitable[FhirResponse]]


class FhirService:
    """Routes FHIR interactions of one service to its store, inside units of work."""

    def __init__(
        self,
        name: str,
        definitions: list[ResourceDefinition],
        db: Database,
        *,
        prefix: str,
        on_commit: Callable[[], None] = lambda: None,
        guard: AccessGuard | None = None,
    ) -> None:
        """`guard` is the consent step every outgoing resource passes; only benchmarks
        and internal tools run without one."""
        self.name = name
        self.guard = guard
        self.operations: dict[str, Operation] = {}
        """Service operations beyond FHIR REST, by name (`FhirRequest.operation`)."""
        self.read_operations: set[str] = set()
        """The operations that only read: the only ones a `read-operation` (GET) reaches."""
        self.definitions = {d.resource_type: d for d in definitions}
        self.search_params: dict[str, dict[str, SearchParam]] = {
            d.resource_type: d.params_by_name() for d in definitions
        }
        self.db = db
        self.store = ResourceStore(self.search_params)
        self.prefix = prefix
        self._on_commit = on_commit
        self.announcer: RelationAnnouncer | None = None
        """Set by the runtime: tells the directory of new relations (`committed`)."""

    # -- dispatch -------------------------------------------------------------------------

    async def handle(self, request: FhirRequest, body: bytes) -> FhirResponse:
        """One interaction or operation, after the permission table lets the caller
        through (a transaction checks each of its entries)."""
        if request.interaction == "transaction":
            return await run_transaction(self, request, body)
        rule = request_rule(request)
        if request.interaction in ("operation", "read-operation"):
            operation = self.operations.get(request.operation or "")
            if operation is None:
                raise error(404, "not-supported", f"No operation {request.operation!r}")
            if request.interaction == "read-operation" and (
                request.operation not in self.read_operations
            ):
                raise error(405, "not-supported", f"{request.operation} changes data: use POST")
            return await operation(request, body)
        definition = self._definition(request.resource_type)
        match request.interaction:
            case "read":
                return await self.read(definition, request)
            case "vread":
                return await self.vread(definition, request)
            case "search":
                return await self.search(definition, request)
            case "history-instance" | "history-type":
                return await self.history(definition, request)
            case "validate":
                return await self.validate(definition, request, body)
        async with self.db.transaction() as conn:
            response = await self.write(conn, definition, request, body, rule)
        await self.committed()
        return response

    async def backfill_access(self) -> int:
        """Give access columns to stored resources of patient-data types that have none
        (written before the type had a data category): until then they would count as
        not being about a patient. Returns how many rows were filled in."""
        filled = 0
        for definition in self.definitions.values():
            category = definition.data_category
            if category is None:
                continue
            async with self.db.transaction() as conn:
                for table in ("resources", "resource_history"):
                    rows = await conn.fetch(
                        f"SELECT res_id, version, body FROM {table}"
                        " WHERE res_type = ? AND category IS NULL",
                        definition.resource_type,
                    )
                    for res_id, version, body in rows:
                        access = ResourceAccess(category=category)
                        if body is not None:
                            resource = orjson.loads(body)
                            access = ResourceAccess(
                                patient=definition.patient_of(resource, res_id),
                                category=definition.category_of(resource),
                                parties=tuple(definition.parties(resource)),
                            )
                        # The author is whoever wrote the first version: an old version
                        # without one shares the current row's.
                        filled += await conn.execute(
                            f"UPDATE {table} SET patient = ?, category = ?, parties = ?,"
                            " author = COALESCE(author, (SELECT r.author FROM resources r"
                            f" WHERE r.res_type = {table}.res_type AND r.res_id = {table}.res_id))"
                            " WHERE res_type = ? AND res_id = ? AND version = ?",
                            access.patient, access.category, access.parties_text,
                            definition.resource_type, res_id, version,
                        )  # fmt: skip
        return filled

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

    def notify_commit(self) -> None:
        """Wake the outbox relay after a committed write."""
        self._on_commit()

    async def committed(self) -> None:
        """After a client's unit of work commits, before its answer: wake the outbox relay
        and tell the directory of the relations to children the writes made."""
        self.notify_commit()
        made = take_relations()
        if made and self.announcer is not None:
            await self.announcer.announce(made)

    async def write(
        self,
        conn: Connection,
        definition: ResourceDefinition,
        request: FhirRequest,
        body: bytes,
        rule: Rule,
    ) -> FhirResponse:
        """A client's create, update or delete inside the caller's transaction, under the
        caller's `rule` from the permission table."""
        definition.refuse_client_writes()
        match request.interaction:
            case "create":
                return await self.create(conn, definition, request, parse_json(body), rule=rule)
            case "update":
                return await self.update(conn, definition, request, parse_json(body), rule=rule)
            case "delete":
                return await self.delete(conn, definition, request, rule=rule)
        raise error(400, "not-supported", f"Unsupported interaction {request.interaction}")

    def lookup(self, conn: Connection) -> Lookup:
        async def lookup(resource_type: str, res_id: str) -> dict[str, Any] | None:
            if resource_type not in self.definitions or not ID_PATTERN.fullmatch(res_id):
                return None
            stored = await self.store.read(conn, resource_type, res_id)
            return stored.json() if stored is not None and not stored.deleted else None

        return lookup

    def lookup_as(
        self, conn: Connection, request: FhirRequest, bases: frozenset[str] | None = None
    ) -> Lookup:
        """`lookup` as the caller: what the caller may not see (on one of `bases`, when
        given) is absent, and a refusal is audited. For checks of references a client's
        write makes, so that a write can neither reveal nor take over what the caller
        cannot see."""

        async def lookup(resource_type: str, res_id: str) -> dict[str, Any] | None:
            if resource_type not in self.definitions or not ID_PATTERN.fullmatch(res_id):
                return None
            stored = await self.store.read(conn, resource_type, res_id)
            if stored is None or stored.deleted:
                return None
            if self.guard is not None and not await self.guard.permits(request, stored, bases):
                return None
            return stored.json()

        return lookup

    def _definition(self, resource_type: str | None) -> ResourceDefinition:
        definition = self.definitions.get(resource_type or "")
        if definition is None:
            raise error(404, "not-supported", f"{resource_type} is not served by {self.name}")
        return definition

    # -- reads ----------------------------------------------------------------------------

    def _access_for(self, request: FhirRequest) -> AccessFor:
        """The SQL access filter of each resource type for this request (none without a
        guard)."""
        return self.guard.filter_for(request) if self.guard is not None else no_filter

    async def disclose(
        self,
        request: FhirRequest,
        stored: StoredResource | None,
        missing: tuple[str, str] | None = None,
    ) -> StoredResource | None:
        """The consent step for one resource: a denied one answers as a missing one. A
        missing one (`missing`: its type and id) is audited like a denied one. Returns the
        resource as released (shaped by the decision)."""
        if self.guard is None:
            return stored
        if stored is not None:
            return await self.guard.require(request, stored)
        if missing is not None:
            await self.guard.missing(request, *missing)
        return None

    async def read(self, definition: ResourceDefinition, request: FhirRequest) -> FhirResponse:
        res_id = _checked_id(request.id)
        async with self.db.reader() as conn:
            stored = await self.store.read(conn, definition.resource_type, res_id)
        stored = await self.disclose(request, stored, (definition.resource_type, res_id))
        return _resource_response(stored, definition.resource_type, res_id, request.base_url)

    async def vread(self, definition: ResourceDefinition, request: FhirRequest) -> FhirResponse:
        res_id = _checked_id(request.id)
        version = version_number(request.version)
        if version is None:
            raise error(404, "not-found", f"Version {request.version!r} does not exist")
        async with self.db.reader() as conn:
            stored = await self.store.vread(conn, definition.resource_type, res_id, version)
        stored = await self.disclose(request, stored, (definition.resource_type, res_id))
        return _resource_response(stored, definition.resource_type, res_id, request.base_url)

    async def search(self, definition: ResourceDefinition, request: FhirRequest) -> FhirResponse:
        query = parse_search(
            definition.resource_type, request.params, self.search_params, lenient=request.lenient
        )
        for include in query.includes:
            for target in include.param.targets:
                if target in self.definitions:
                    authorize(request.caller, target, "read")
        for include in query.revincludes:
            authorize(request.caller, include.source_type, "search")
        async with self.db.reader() as conn:
            await definition.check_search(query, request, self.lookup(conn))
            page = await self.store.search(conn, query, access_for=self._access_for(request))
        if self.guard is not None:
            released = await self.guard.released(
                request,
                [*page.resources, *page.included],
                urlencode(query.link_params),
                searched=definition.resource_type,
            )
            kept = {r.reference: r for r in released}
            page.resources[:] = [kept[r.reference] for r in page.resources if r.reference in kept]
            page.included[:] = [kept[r.reference] for r in page.included if r.reference in kept]
        base = request.base_url
        self_params = list(query.link_params)
        if query.cursor_token is not None:
            self_params.append(("_cursor", query.cursor_token))
        self_link = f"{base}/{definition.resource_type}?{urlencode(self_params)}"
        links = [{"relation": "self", "url": self_link}]
        if page.next_cursor:
            next_params = [*query.link_params, ("_cursor", page.next_cursor)]
            links.append(
                {
                    "relation": "next",
                    "url": f"{base}/{definition.resource_type}?{urlencode(next_params)}",
                }
            )
        entries = [_entry(r, base, "match") for r in page.resources]
        entries += [_entry(r, base, "include") for r in page.included]
        warnings = list(query.warnings)
        if page.omitted_includes:
            warnings.append(
                Issue(
                    "too-costly",
                    f"{page.omitted_includes} included resources were left out to keep the"
                    " page within the message size limit; use a smaller _count",
                    severity="warning",
                )
            )
        if warnings:
            entries.append(
                {
                    "resource": operation_outcome(warnings),
                    "search": {"mode": "outcome"},
                }
            )
        bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
        if page.total is not None:
            bundle["total"] = page.total
        bundle["link"] = links
        bundle["entry"] = entries
        return json_response(200, bundle)

    async def history(self, definition: ResourceDefinition, request: FhirRequest) -> FhirResponse:
        params = dict(request.params)
        unknown = set(params) - {"_since", "_count", "_cursor", "_format"}
        if unknown and not request.lenient:
            raise error(400, "not-supported", f"Unsupported history parameters: {sorted(unknown)}")
        since = None
        if "_since" in params:
            since = parse_date_value("_since", params["_since"]).lo
        count = small_integer(params.get("_count", "50"), "_count", MAX_COUNT)
        cursor = params.get("_cursor")
        before_seq = small_integer(cursor, "_cursor", 2**62) if cursor is not None else None
        res_id = _checked_id(request.id) if request.interaction == "history-instance" else None
        access = self._access_for(request)(definition.resource_type)
        async with self.db.reader() as conn:
            if res_id is not None:
                current = await self.store.read(conn, definition.resource_type, res_id)
                current = await self.disclose(request, current, (definition.resource_type, res_id))
                if current is None:
                    raise _not_found(definition.resource_type, res_id)
            page, next_seq = await self.store.history(
                conn,
                definition.resource_type,
                res_id,
                since=since,
                count=count,
                before_seq=before_seq,
                access=access,
            )
        if self.guard is not None:
            page = await self.guard.released(
                request, page, urlencode(request.params), searched=definition.resource_type
            )
        path = f"{request.base_url}/{definition.resource_type}"
        path += f"/{res_id}/_history" if res_id else "/_history"
        kept = [(k, v) for k, v in request.params if k != "_cursor"]
        links = [{"relation": "self", "url": f"{path}?{urlencode(request.params)}"}]
        if next_seq is not None:
            links.append(
                {"relation": "next", "url": f"{path}?{urlencode([*kept, ('_cursor', next_seq)])}"}
            )
        entries = [_history_entry(r, request.base_url) for r in page]
        bundle = {"resourceType": "Bundle", "type": "history", "link": links, "entry": entries}
        return json_response(200, bundle)

    async def validate(
        self, definition: ResourceDefinition, request: FhirRequest, body: bytes
    ) -> FhirResponse:
        data = parse_json(body)
        if data.get("resourceType") == "Parameters":
            data = _resource_from_parameters(data)
        try:
            validate_resource(data, definition.resource_type)
            issues = definition.prepare(data, request.caller)
            async with self.db.reader() as conn:
                await definition.verify_references(data, self.lookup(conn))
                issues += await definition.check_write(
                    data, WriteContext(conn, request, None, self)
                )
        except FhirError as exc:
            if exc.status >= 500:
                raise
            return json_response(200, operation_outcome(exc.issues))
        issues = issues or [information("Validation successful: no problems found")]
        return json_response(200, operation_outcome(issues))

    # -- writes ---------------------------------------------------------------------------

    async def create(
        self,
        conn: Connection,
        definition: ResourceDefinition,
        request: FhirRequest,
        resource: dict[str, Any],
        *,
        res_id: str | None = None,
        rule: Rule = Rule.ALL,
    ) -> FhirResponse:
        """`rule`: the caller's cell of the permission table (the service's own writes
        pass none: `all`)."""
        resource_type = validate_resource(resource, definition.resource_type)
        warnings = definition.prepare(resource, request.caller)
        await definition.verify_references(resource, self.lookup(conn))
        if rule is Rule.OWN:
            await self._require_owner(definition, resource, request, conn)
        if request.if_none_exist:
            existing = await self._conditional_match(conn, definition, request)
            if existing is not None:
                existing = await self.guard.require(request, existing) if self.guard else existing
                headers = version_headers(existing, request.base_url)
                if not granted(request.caller.scopes, resource_type, "r"):
                    return FhirResponse(status=200, headers=headers)  # no read scope: no body
                return self._prefer(request, existing, 200, headers, [])
        context = WriteContext(conn, request, None, self)
        warnings += await definition.check_write(resource, context)
        try:
            stored = await self._commit(
                context, definition, resource, res_id=res_id or new_id(), previous=None
            )
        except DuplicateKey as conflict:
            if self.guard is not None and conflict.holder[0]:
                await self.guard.conflicted(request, *conflict.holder)
            raise
        return self._prefer(
            request, stored, 201, version_headers(stored, request.base_url), warnings
        )

    async def _conditional_match(
        self, conn: Connection, definition: ResourceDefinition, request: FhirRequest
    ) -> StoredResource | None:
        criteria = sorted(parse_qsl(request.if_none_exist or "", keep_blank_values=True))
        query = parse_search(definition.resource_type, criteria, self.search_params)
        if not query.criteria:
            raise error(400, "invalid", "If-None-Exist needs at least one search criterion")
        await self.store.claim_conditional(conn, definition.resource_type)
        query.count = 2
        # Only what the caller may see can match: a hidden resource must not answer (not
        # even by refusing), or If-None-Exist would be a way to search hidden data.
        page = await self.store.search(conn, query, access_for=self._access_for(request))
        if len(page.resources) > 1:
            raise error(
                412,
                "multiple-matches",
                f"If-None-Exist {request.if_none_exist!r} matches more than one resource",
            )
        return page.resources[0] if page.resources else None

    async def _hidden(
        self,
        request: FhirRequest,
        previous: StoredResource | None,
        check_access: bool,
        missing: tuple[str, str],
    ) -> bool:
        """Whether a resource about to be changed is one the caller may not see: it is then
        treated exactly as a missing one, so a write can neither reveal nor touch it. Both
        are audited alike (a missing one as a probe), so they take the same time. A barnebro
        service's own writes are no probes (the audit trail storing its records would
        otherwise audit itself for ever)."""
        if self.guard is None or not check_access or request.caller.credential == "service":
            return False
        if previous is None:
            await self.guard.missing(request, *missing)
            return False
        return not await self.guard.check(request, previous)

    async def _require_owner(
        self,
        definition: ResourceDefinition,
        resource: dict[str, Any] | None,
        request: FhirRequest,
        conn: Connection,
        previous: StoredResource | None = None,
    ) -> None:
        """The permission table's `own`: the caller's organisation wrote the version being
        replaced, and (where the type says whose a resource is) the resource names it."""
        orgnr = request.caller.orgnr
        if previous is not None and (orgnr is None or previous.access.author != orgnr):
            raise error(
                403,
                "forbidden",
                f"Only the organisation that wrote {previous.reference} changes it",
            )
        if resource is None:
            return
        owners = await definition.owners(resource, self.lookup(conn))
        if owners is not None and (orgnr is None or orgnr not in owners):
            raise error(
                403,
                "forbidden",
                f"An organisation writes only its own {definition.resource_type}:"
                f" {definition.owner_element} must be the caller's organisation ({orgnr})",
                f"{definition.resource_type}.{definition.owner_element}",
            )

    async def update(
        self,
        conn: Connection,
        definition: ResourceDefinition,
        request: FhirRequest,
        resource: dict[str, Any],
        *,
        check_access: bool = True,
        rule: Rule = Rule.ALL,
    ) -> FhirResponse:
        """`check_access=False` only for the service's own writes, which check first;
        `rule`: the caller's cell of the permission table."""
        res_id = _checked_id(request.id)
        if resource.get("id") not in (None, res_id):
            raise error(
                400, "invalid", f"Resource id {resource.get('id')!r} differs from URL", "id"
            )
        resource_type = validate_resource(resource, definition.resource_type)
        warnings = definition.prepare(resource, request.caller)
        await definition.verify_references(resource, self.lookup(conn))
        if definition.data_category is not None:
            # The patient before the row, as every writer of patient data does: a write
            # that goes on to change a related record must not wait for it crosswise. The
            # stored version names the patient (the body may leave it out).
            stored_now = await self.store.read(conn, resource_type, res_id)
            patient = stored_now.access.patient if stored_now is not None else None
            if patient is not None:
                await lock_patient(conn, patient)
        previous = await self.store.read_for_update(conn, resource_type, res_id)
        if await self._hidden(request, previous, check_access, (resource_type, res_id)):
            if definition.update_create:
                raise _not_found(resource_type, res_id)
            previous = None  # from here on, exactly as if it did not exist
        if rule is Rule.OWN:
            live = previous if previous is not None and not previous.deleted else None
            await self._require_owner(definition, resource, request, conn, live)
        if request.if_match is not None:
            expected = parse_etag(request.if_match)
            if previous is None or previous.version != expected:
                current = f'W/"{previous.version}"' if previous else "none"
                raise error(
                    412,
                    "conflict",
                    f"If-Match {request.if_match} does not match the current version ({current})",
                )
        if previous is None and not definition.update_create:
            raise error(
                405,
                "not-supported",
                f"{resource_type}/{res_id} does not exist and {resource_type} ids are assigned"
                " by the server: use POST to create",
            )
        before = previous.json() if previous and not previous.deleted else None
        author = previous.access.author if previous is not None else None
        context = WriteContext(conn, request, before, self, author)
        warnings += await definition.check_write(resource, context)
        stored = await self._commit(context, definition, resource, res_id=res_id, previous=previous)
        status = 201 if previous is None else 200
        return self._prefer(
            request, stored, status, version_headers(stored, request.base_url), warnings
        )

    async def delete(
        self,
        conn: Connection,
        definition: ResourceDefinition,
        request: FhirRequest,
        *,
        rule: Rule = Rule.ALL,
    ) -> FhirResponse:
        res_id = _checked_id(request.id)
        if not definition.deletable:
            raise error(
                405,
                "not-supported",
                f"{definition.resource_type} is a record that is kept: it is closed through"
                " its status, never deleted",
            )
        previous = await self.store.read_for_update(conn, definition.resource_type, res_id)
        missing = (definition.resource_type, res_id)
        if await self._hidden(request, previous, True, missing) or previous is None:
            raise _not_found(definition.resource_type, res_id)
        if rule is Rule.OWN and not previous.deleted:
            await self._require_owner(definition, None, request, conn, previous)
        if request.if_match is not None and parse_etag(request.if_match) != previous.version:
            raise error(412, "conflict", f"If-Match {request.if_match} is not the current version")
        if previous.deleted:
            return FhirResponse(status=204)
        before = previous.json()
        await definition.check_delete(
            before, WriteContext(conn, request, before, self, previous.access.author)
        )
        stored = await self.store.write(
            conn,
            None,
            res_type=definition.resource_type,
            res_id=res_id,
            previous=previous,
            previous_keys=definition.unique_keys(before),
            access=previous.access,
        )
        await self._record(conn, definition, stored, before, None, request)
        change = Change(stored.res_type, stored.res_id, stored.version, before, None)
        await definition.after_write(
            change, WriteContext(conn, request, before, self, previous.access.author)
        )
        return FhirResponse(status=204, headers={"ETag": stored.etag})

    async def _commit(
        self,
        context: WriteContext,
        definition: ResourceDefinition,
        resource: dict[str, Any],
        *,
        res_id: str,
        previous: StoredResource | None,
    ) -> StoredResource:
        """Store a new version, its events, and the writes that follow from it."""
        before = context.before
        stored = await self.store.write(
            context.conn,
            resource,
            res_type=definition.resource_type,
            res_id=res_id,
            previous=previous,
            unique_keys=definition.unique_keys(resource),
            previous_keys=definition.unique_keys(before) if before else (),
            access=_access(definition, resource, res_id, context.request, previous),
            name_holder=definition.data_category is None,
        )
        await self._record(context.conn, definition, stored, before, resource, context.request)
        change = Change(stored.res_type, stored.res_id, stored.version, before, resource)
        await definition.after_write(change, context)
        return stored

    async def save(
        self,
        conn: Connection,
        request: FhirRequest,
        resource: dict[str, Any],
        *,
        previous: StoredResource | None = None,
    ) -> StoredResource:
        """A write the service makes itself, inside the caller's transaction (a follow-on
        write, a scheduled one): validated, versioned, indexed and evented like a
        client's, without the client-facing checks. `previous` is the version it
        replaces, read with `store.read_for_update`; None creates a new resource."""
        definition = self._definition(resource.get("resourceType"))
        validate_resource(resource, definition.resource_type)
        before = previous.json() if previous is not None and not previous.deleted else None
        res_id = previous.res_id if previous is not None else str(resource.get("id") or new_id())
        return await self._commit(
            WriteContext(conn, request, before, self, previous.access.author if previous else None),
            definition,
            resource,
            res_id=res_id,
            previous=previous,
        )

    async def _record(
        self,
        conn: Connection,
        definition: ResourceDefinition,
        stored: StoredResource,
        before: dict[str, Any] | None,
        after: dict[str, Any] | None,
        request: FhirRequest,
    ) -> None:
        """Write the change's events to the outbox, in the same transaction."""
        change = Change(stored.res_type, stored.res_id, stored.version, before, after)
        subject = after if after is not None else before
        patient = definition.patient_of(subject, stored.res_id) if subject is not None else None
        actor = request.caller.model_dump(exclude_defaults=True)
        if patient is not None and after is not None:
            access = stored.access
            note_relations(
                patient,
                related_orgs(
                    stored.res_type, access.category, access.author, access.parties, actor
                ),
            )
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        for spec in definition.events(change):
            event = DomainEvent(
                type=f"{self.name}.{stored.res_type}.{spec.name}",
                source=self.name,
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
            )
            await add_event(conn, event, self.prefix)

    def _prefer(
        self,
        request: FhirRequest,
        stored: StoredResource,
        status: int,
        headers: dict[str, str],
        warnings: list[Issue],
    ) -> FhirResponse:
        headers = {**headers}
        outcome = orjson.dumps(operation_outcome(warnings)) if warnings else b""
        if request.prefer_return == "minimal":
            return FhirResponse(status=status, headers=headers, outcome=outcome)
        headers["Content-Type"] = FHIR_JSON
        if request.prefer_return == "OperationOutcome":
            issues = [*warnings, information(f"{stored.res_type}/{stored.res_id} stored")]
            return FhirResponse(
                status=status, headers=headers, body=orjson.dumps(operation_outcome(issues))
            )
        return FhirResponse(
            status=status, headers=headers, body=stored.body or b"", outcome=outcome
        )


def _access(
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


def _checked_id(res_id: str | None) -> str:
    if res_id is None or not ID_PATTERN.fullmatch(res_id):
        raise error(400, "invalid", f"{res_id!r} is not a valid FHIR id")
    return res_id


def _not_found(resource_type: str, res_id: str) -> FhirError:
    return error(404, "not-found", f"{resource_type}/{res_id} is not known")


def _resource_response(
    stored: StoredResource | None, resource_type: str, res_id: str, base_url: str
) -> FhirResponse:
    if stored is None:
        raise _not_found(resource_type, res_id)
    if stored.deleted:
        exc = error(410, "deleted", f"{resource_type}/{res_id} was deleted")
        exc.headers["ETag"] = stored.etag
        raise exc
    headers = version_headers(stored, base_url)
    headers.pop("Location")
    headers["Content-Type"] = FHIR_JSON
    return FhirResponse(status=200, headers=headers, body=stored.body or b"")


def json_response(status: int, data: dict[str, Any]) -> FhirResponse:
    """A FHIR JSON answer built by the service (a Bundle, an OperationOutcome)."""
    return FhirResponse(status=status, headers={"Content-Type": FHIR_JSON}, body=orjson.dumps(data))


def _entry(stored: StoredResource, base: str, mode: str) -> dict[str, Any]:
    return {
        "fullUrl": f"{base}/{stored.res_type}/{stored.res_id}",
        "resource": orjson.Fragment(stored.body or b"{}"),
        "search": {"mode": mode},
    }


def _history_entry(stored: StoredResource, base: str) -> dict[str, Any]:
    url = f"{stored.res_type}/{stored.res_id}"
    entry: dict[str, Any] = {"fullUrl": f"{base}/{url}"}
    if stored.deleted:
        method, status = "DELETE", "204"
    else:
        entry["resource"] = orjson.Fragment(stored.body or b"{}")
        method = "POST" if stored.version == 1 else "PUT"
        status = "201" if stored.version == 1 else "200"
    entry["request"] = {"method": method, "url": stored.res_type if method == "POST" else url}
    entry["response"] = {
        "status": status,
        "etag": stored.etag,
        "lastModified": stored.last_updated,
    }
    return entry


def _resource_from_parameters(parameters: dict[str, Any]) -> dict[str, Any]:
    given = parameters.get("parameter")
    for parameter in given if isinstance(given, list) else []:
        if not isinstance(parameter, dict):
            continue
        if parameter.get("name") == "resource" and isinstance(parameter.get("resource"), dict):
            resource: dict[str, Any] = parameter["resource"]
            return resource
    raise error(400, "invalid", "Parameters for $validate need a 'resource' parameter")
