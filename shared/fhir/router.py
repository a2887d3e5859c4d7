"""The service-side FHIR router: one short handler per interaction, nothing else.

A request arrives from the transport (`shared.transport.service_host`) after the
gateway checked its scopes; the router finds the handler for its interaction, and the
handler asks the repository (reads), a unit of work (writes), the transaction runner or
a registered operation, and builds the answer (`shared.fhir.answers`,
`shared.fhir.bundles`). Whether the caller may do the interaction at all is decided
here, once per request, in one place: its SMART scope (`authorize_request`) and its cell
of the permission table (`request_rule`, passed on to the handler); the consent step
then decides per resource.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from shared.access.permissions import READING_OPERATIONS, Rule, request_rule
from shared.auth.scopes import authorize_request
from shared.config import DEFAULT_MAX_BODY_BYTES
from shared.fhir import bundles, writes
from shared.fhir.answers import checked_id, json_response, resource_response
from shared.fhir.errors import error
from shared.fhir.patch import FHIRPATH_PATCH, patcher
from shared.fhir.profiles import refuse_other_profile
from shared.fhir.resources import parse_json, version_number
from shared.fhir.search_query import (
    MAX_COUNT,
    parse_date_value,
    refuse_parameters,
    small_integer,
)
from shared.fhir.service import FhirService
from shared.fhir.subsets import Subset, cut, parse_subset
from shared.fhir.transaction import run_transaction
from shared.fhir.validate import validate
from shared.transport.wire import FhirRequest, FhirResponse

Handler = Callable[[FhirRequest, bytes, Rule], Awaitable[FhirResponse]]
Fence = Awaitable[None] | None
"""The consent view being brought up to date for a request, when it was begun early."""
FencedHandler = Callable[[FhirRequest, bytes, Rule, Fence], Awaitable[FhirResponse]]
HISTORY_PARAMS = frozenset({"_since", "_count", "_cursor", "_format", "_summary", "_elements"})


class FhirRouter:
    """Answers the FHIR requests of one service."""

    def __init__(self, service: FhirService, *, body_limit: int = DEFAULT_MAX_BODY_BYTES) -> None:
        """`body_limit`: the most bytes a request body may have (`BARNEBRO_MAX_BODY_BYTES`),
        which bounds what a patch may make."""
        self.service = service
        self.body_limit = body_limit
        self._handlers: dict[str, Handler] = {
            "read": self.read,
            "vread": self.vread,
            "search": self.search,
            "history-instance": self.history,
            "history-type": self.history,
            "validate": self.validate,
            "create": self.create,
            "update": self.update,
            "patch": self.patch,
            "delete": self.delete,
            "operation": self.operation,
            "read-operation": self.operation,
        }

    async def handle(self, request: FhirRequest, body: bytes) -> FhirResponse:
        """One interaction or operation, once the permission table lets the caller through
        (a transaction checks each of its entries). Whatever it decides is decided on the
        consent state as it stood when the request arrived, or later (`Guard.current`)."""
        if request.interaction == "transaction":
            await self.service.guard.current(request)
            return await run_transaction(self.service, request, body)
        handler = self._handlers.get(request.interaction)
        if handler is None:
            raise error(400, "not-supported", f"Unsupported interaction {request.interaction}")
        authorize_request(request)
        rule = request_rule(request)
        if request.interaction == "read":
            return await self._fenced(self.read, request, body, rule)
        if request.interaction == "vread":
            return await self._fenced(self.vread, request, body, rule)
        await self.service.guard.current(request)
        return await handler(request, body, rule)

    async def _fenced(
        self, handler: FencedHandler, request: FhirRequest, body: bytes, rule: Rule
    ) -> FhirResponse:
        """A read of one resource, whose store read needs no consent state: the question
        that brings the consent view up to date (`Guard.current`) is asked while the store
        is read, and the repository waits for its answer before it decides anything
        (`Repository.disclose`), so the two round trips overlap."""
        fence = asyncio.ensure_future(self.service.guard.current(request))
        try:
            return await handler(request, body, rule, fence)
        finally:
            if not fence.done():
                fence.cancel()  # the handler failed before it needed the answer
            elif not fence.cancelled():
                fence.exception()  # retrieved: a failure raised already, or not needed

    async def read(
        self, request: FhirRequest, body: bytes, rule: Rule, fence: Fence = None
    ) -> FhirResponse:
        resource_type = self.service.definition(request.resource_type).resource_type
        res_id = checked_id(request.id)
        subset = read_subset(resource_type, request)
        repository = self.service.repository(request, fence)
        stored = await repository.read(resource_type, res_id)
        stored = cut(stored, subset) if stored is not None else None
        return resource_response(stored, resource_type, res_id, request.base_url)

    async def vread(
        self, request: FhirRequest, body: bytes, rule: Rule, fence: Fence = None
    ) -> FhirResponse:
        resource_type = self.service.definition(request.resource_type).resource_type
        res_id = checked_id(request.id)
        version = version_number(request.version)
        if version is None:
            raise error(404, "not-found", f"Version {request.version!r} does not exist")
        subset = read_subset(resource_type, request)
        repository = self.service.repository(request, fence)
        stored = await repository.vread(resource_type, res_id, version)
        stored = cut(stored, subset) if stored is not None else None
        return resource_response(stored, resource_type, res_id, request.base_url)

    async def search(self, request: FhirRequest, body: bytes, rule: Rule) -> FhirResponse:
        definition = self.service.definition(request.resource_type)
        query, page = await self.service.repository(request).search(definition)
        page.resources[:] = [cut(r, query.subset) for r in page.resources]
        page.included[:] = [cut(r, query.subset.for_included) for r in page.included]
        bundle = bundles.searchset(definition.resource_type, query, page, request.base_url)
        return json_response(200, bundle)

    async def history(self, request: FhirRequest, body: bytes, rule: Rule) -> FhirResponse:
        resource_type = self.service.definition(request.resource_type).resource_type
        params = dict(request.params)
        unknown = set(params) - HISTORY_PARAMS
        if unknown and not request.lenient:
            raise error(400, "not-supported", f"Unsupported history parameters: {sorted(unknown)}")
        since = parse_date_value("_since", params["_since"]).lo if "_since" in params else None
        count = small_integer(params.get("_count", "50"), "_count", MAX_COUNT)
        cursor = params.get("_cursor")
        before_seq = small_integer(cursor, "_cursor", 2**62) if cursor is not None else None
        res_id = checked_id(request.id) if request.interaction == "history-instance" else None
        subset = parse_subset(resource_type, request.params)
        repository = self.service.repository(request)
        path = f"{request.base_url}/{resource_type}"
        path += f"/{res_id}/_history" if res_id else "/_history"
        if subset.count_only or count == 0:  # `_count=0` asks for the total, as on a search
            total = await repository.history_total(resource_type, res_id, since=since)
            return json_response(200, bundles.history_total(path, request.params, total))
        versions, next_seq = await repository.history(
            resource_type, res_id, since=since, count=count, before_seq=before_seq
        )
        versions = [cut(version, subset) for version in versions]
        bundle = bundles.history(path, request.params, versions, next_seq, request.base_url)
        return json_response(200, bundle)

    async def validate(self, request: FhirRequest, body: bytes, rule: Rule) -> FhirResponse:
        definition = self.service.definition(request.resource_type)
        validation_profile(request, definition.resource_type)
        return await validate(self.service, definition, request, body)

    async def create(self, request: FhirRequest, body: bytes, rule: Rule) -> FhirResponse:
        definition = self.service.definition(request.resource_type)
        definition.refuse_client_writes()
        refuse_create_criteria(request)
        async with self.service.unit_of_work(request, checks_at_commit=True) as uow:
            return await writes.create(uow, definition, parse_json(body), rule=rule)

    async def update(self, request: FhirRequest, body: bytes, rule: Rule) -> FhirResponse:
        definition = self.service.definition(request.resource_type)
        definition.refuse_client_writes()
        async with self.service.unit_of_work(request) as uow:
            if request.id is None:  # PUT Type?criteria
                return await writes.conditional_update(uow, definition, parse_json(body), rule=rule)
            refuse_parameters(request.params, "An update")
            return await writes.update(uow, definition, parse_json(body), rule=rule)

    async def patch(self, request: FhirRequest, body: bytes, rule: Rule) -> FhirResponse:
        definition = self.service.definition(request.resource_type)
        definition.refuse_client_writes()
        refuse_parameters(request.params, "A patch")
        fhirpath = request.patch_format == FHIRPATH_PATCH
        apply = patcher(definition.resource_type, body, fhirpath, self.body_limit)
        async with self.service.unit_of_work(request) as uow:
            return await writes.patch(uow, definition, apply, rule=rule)

    async def delete(self, request: FhirRequest, body: bytes, rule: Rule) -> FhirResponse:
        definition = self.service.definition(request.resource_type)
        definition.refuse_client_writes()
        refuse_parameters(request.params, "A delete")
        async with self.service.unit_of_work(request) as uow:
            return await writes.delete(uow, definition, rule=rule)

    async def operation(self, request: FhirRequest, body: bytes, rule: Rule) -> FhirResponse:
        operation = self.service.operations.get(request.operation or "")
        if operation is None:
            raise error(404, "not-supported", f"No operation {request.operation!r}")
        if request.interaction == "read-operation" and (
            (request.resource_type, request.operation) not in READING_OPERATIONS
        ):
            raise error(405, "not-supported", f"{request.operation} changes data: use POST")
        refuse_operation_parameters(request)
        return await operation(request, body)


def refuse_create_criteria(request: FhirRequest) -> None:
    """A client that sends its conditional-create criteria in the query (fhirpy's
    `get_or_create`) would create a duplicate each time: they are refused, as in a Bundle
    entry, with where they go instead."""
    refuse_parameters(
        request.params,
        "A create",
        hint=": a conditional create sends its criteria in If-None-Exist (e.g. If-None-Exist:"
        " identifier=<system>|<value>)",
    )


def refuse_operation_parameters(request: FhirRequest) -> None:
    """A FHIR operation that writes takes its parameters in its Parameters body; the
    reading operations (asked by GET too) check their own, from the URL and the body, and
    the consent API (operations on no resource type) takes its query as its own."""
    if not request.resource_type:
        return
    if (request.resource_type, request.operation) in READING_OPERATIONS:
        return
    operation = request.operation or "An operation"
    refuse_parameters(request.params, operation, hint=": send its parameters in a Parameters body")


def validation_profile(request: FhirRequest, resource_type: str) -> None:
    """`$validate` checks against barnebro's profile of the type, which `profile` may name;
    any other profile would be a validation it does not do."""
    refuse_parameters(request.params, "$validate", allowed=frozenset({"profile"}))
    for name, value in request.params:
        if name == "profile":
            refuse_other_profile(resource_type, value)


def read_subset(resource_type: str, request: FhirRequest) -> Subset:
    """What of the resource a read returns (`_summary`, `_elements`); a count is a
    search's answer."""
    subset = parse_subset(resource_type, request.params)
    if subset.count_only:
        raise error(400, "invalid", "_summary=count is for searches", "_summary")
    return subset
