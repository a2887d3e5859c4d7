"""A client's create, update (also as a patch or a conditional update) and delete: every
check a write must pass, then the store.

In order: the FHIR model and the type's rules (`prepare`, `verify_references`), the
permission table's `own`, a resource the caller may not see treated exactly as a missing
one (so a write can neither reveal nor touch it), the preconditions (`If-Match`,
`If-None-Exist`), the notes the write adds naming only the writer as their author
(`note_authors`), the type's checks that need the replaced version (`check_write`), and
then one new version in the caller's unit of work. A patch and a conditional update find
the version to replace and then take the update's path whole. A service's own operations
use the same functions with `check_access=False` when they have checked first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from shared.access.permissions import Rule, request_rule
from shared.auth.scopes import authorize_request, granted
from shared.fhir.answers import (
    checked_id,
    not_found,
    parse_if_match,
    version_headers,
    written,
)
from shared.fhir.definitions import ResourceDefinition
from shared.fhir.errors import error
from shared.fhir.note_authors import foreign_authors
from shared.fhir.references import refuse_unresolved_entry_references
from shared.fhir.resources import FHIR_JSON, validate_resource
from shared.fhir.search_query import parse_search, query_criteria
from shared.fhir.unit_of_work import StoreUnitOfWork
from shared.rules import refuse
from shared.store.resource_store import DuplicateKey, StoredResource, new_id
from shared.transport.wire import FhirRequest, FhirResponse


async def create(
    uow: StoreUnitOfWork,
    definition: ResourceDefinition,
    resource: dict[str, Any],
    *,
    res_id: str | None = None,
    rule: Rule = Rule.ALL,
) -> FhirResponse:
    """`rule`: the caller's cell of the permission table (the service's own writes pass
    none: `all`); `res_id`: the id a transaction assigned."""
    request = uow.request
    validate_resource(resource, definition.resource_type)
    refuse_unresolved_entry_references(resource, definition.resource_type)
    warnings = definition.prepare(resource, request.caller)
    await definition.verify_references(resource, uow.lookup())
    if rule is Rule.OWN:
        await _require_owner(uow, definition, resource)
    if request.if_none_exist is not None:  # an empty one is refused, not ignored
        existing = await _conditional_match(uow, definition)
        if existing is not None:
            released = await uow.data.guard.require(request, existing)
            return found_instead(request, existing, released)
    refuse(foreign_authors(resource, None, request.caller))
    context = uow.context(None, None)
    warnings += await definition.check_write(resource, context)
    try:
        stored = await uow.commit_version(
            definition, resource, res_id=res_id or new_id(), previous=None, context=context
        )
    except DuplicateKey as conflict:
        if conflict.holder[0]:
            await uow.data.guard.conflicted(request, *conflict.holder)
        raise
    return written(request, stored, 201, warnings)


def found_instead(
    request: FhirRequest, stored: StoredResource, released: StoredResource
) -> FhirResponse:
    """The answer of a conditional create that found `stored` (as `released` to the
    caller): 200 and where it is, so a transaction refers to it; its body only with read
    scope; its version only when it is released whole (a look-up's subset tells nothing
    of how often the record changed)."""
    whole = released.body is stored.body
    if whole:
        headers = version_headers(stored, request.base_url)
    else:
        headers = {"Location": f"{request.base_url}/{stored.res_type}/{stored.res_id}"}
    readable = granted(request.caller.scopes, stored.res_type, "r")
    if not readable or (not whole and request.prefer_return == "minimal"):
        return FhirResponse(status=200, headers=headers)
    if whole:
        return written(request, released, 200, [])
    return FhirResponse(
        status=200, headers={**headers, "Content-Type": FHIR_JSON}, body=released.body or b""
    )


async def update(
    uow: StoreUnitOfWork,
    definition: ResourceDefinition,
    resource: dict[str, Any],
    *,
    check_access: bool = True,
    rule: Rule = Rule.ALL,
) -> FhirResponse:
    """`check_access=False` only for the service's own writes, which check first;
    `rule`: the caller's cell of the permission table."""
    request = uow.request
    res_id = checked_id(request.id)
    if resource.get("id") not in (None, res_id):
        raise error(400, "invalid", f"Resource id {resource.get('id')!r} differs from URL", "id")
    resource_type = validate_resource(resource, definition.resource_type)
    refuse_unresolved_entry_references(resource, resource_type)
    warnings = definition.prepare(resource, request.caller)
    await definition.verify_references(resource, uow.lookup())
    previous = await _locked(uow, definition, res_id, resource)
    if await _hidden(uow, previous, check_access, (resource_type, res_id)):
        if definition.update_create:
            raise not_found(resource_type, res_id)
        previous = None  # from here on, exactly as if it did not exist
    if previous is not None and previous.deleted:
        # FHIR allows an update to bring a deleted resource back; here it would come back
        # as a new record under the old id without the old one's identity (a person
        # number, an HPR number), passing none of the rules an update keeps.
        raise error(
            410,
            "deleted",
            f"{resource_type}/{res_id} was deleted and is not brought back by an update:"
            " register it anew with POST",
        )
    if rule is Rule.OWN:
        await _require_owner(uow, definition, resource, previous)
    _check_if_match(request, previous)
    if previous is None and not definition.update_create:
        raise error(
            405,
            "not-supported",
            f"{resource_type}/{res_id} does not exist and {resource_type} ids are assigned"
            " by the server: use POST to create",
        )
    before = previous.json() if previous is not None else None
    refuse(foreign_authors(resource, before, request.caller))
    context = uow.context(before, previous.access.author if previous is not None else None)
    warnings += await definition.check_write(resource, context)
    stored = await uow.commit_version(
        definition, resource, res_id=res_id, previous=previous, context=context
    )
    return written(request, stored, 201 if previous is None else 200, warnings)


async def patch(
    uow: StoreUnitOfWork,
    definition: ResourceDefinition,
    apply: Callable[[dict[str, Any]], dict[str, Any]],
    *,
    rule: Rule = Rule.ALL,
) -> FhirResponse:
    """A patch (`apply` gives the resource as patched, `shared.fhir.patch`): applied to
    the current version as the caller may read it (one it may not see answers exactly as
    a missing one, 404), then written by `update`, so that it passes every check a PUT of
    the patched resource would. The row stays locked from the read to the write, so
    concurrent patches apply one after the other."""
    request = uow.request
    resource_type, res_id = definition.resource_type, checked_id(request.id)
    previous = await _locked(uow, definition, res_id)
    if previous is None:
        await _hidden(uow, None, True, (resource_type, res_id))
        raise not_found(resource_type, res_id)
    current: StoredResource | None = previous
    if request.caller.credential != "service":
        current = await uow.data.guard.release(request, previous)
    if current is None:
        raise not_found(resource_type, res_id)
    if previous.deleted:
        raise error(410, "deleted", f"{resource_type}/{res_id} was deleted")
    _check_if_match(request, previous)  # before the patch: it is based on that version
    patched = apply(current.json())
    return await update(uow, definition, patched, check_access=False, rule=rule)


def _check_if_match(request: FhirRequest, previous: StoredResource | None) -> None:
    if request.if_match is not None and not parse_if_match(request.if_match).matches(previous):
        if previous is None:
            current = "none"
        else:
            current = f'W/"{previous.version}"' + (", deleted" if previous.deleted else "")
        raise error(
            412,
            "conflict",
            f"If-Match {request.if_match} does not match the current version ({current})",
        )


async def _locked(
    uow: StoreUnitOfWork,
    definition: ResourceDefinition,
    res_id: str,
    resource: dict[str, Any] | None = None,
) -> StoredResource | None:
    """The current version of a resource about to be changed, its row locked until the
    write commits. Patient data: the patient the stored version names (the body may
    leave it out) is locked first, as every writer of patient data does, so a write that
    goes on to change a related record never waits for it crosswise; with it, in one
    order, the patient the new version `resource` names, should it move the record."""
    patient_data = definition.data_category is not None
    also = definition.patient_of(resource, res_id) if patient_data and resource else None
    return await uow.read_for_update(
        definition.resource_type, res_id, stored_patient=patient_data, also=also
    )


async def delete(
    uow: StoreUnitOfWork, definition: ResourceDefinition, *, rule: Rule = Rule.ALL
) -> FhirResponse:
    request = uow.request
    res_id = checked_id(request.id)
    if not definition.deletable:
        raise error(
            405,
            "not-supported",
            f"{definition.resource_type} is a record that is kept: it is closed through"
            " its status, never deleted",
        )
    previous = await _locked(uow, definition, res_id)
    missing = (definition.resource_type, res_id)
    if await _hidden(uow, previous, True, missing) or previous is None:
        raise not_found(definition.resource_type, res_id)
    if rule is Rule.OWN and not previous.deleted:
        await _require_owner(uow, definition, None, previous)
    if request.if_match is not None and not parse_if_match(request.if_match).matches(previous):
        raise error(412, "conflict", f"If-Match {request.if_match} is not the current version")
    if previous.deleted:
        return FhirResponse(status=204)
    context = uow.context(previous.json(), previous.access.author)
    await definition.check_delete(previous.json(), context)
    stored = await uow.commit_version(
        definition, None, res_id=res_id, previous=previous, context=context
    )
    return FhirResponse(status=204, headers={"ETag": stored.etag})


async def conditional_update(
    uow: StoreUnitOfWork,
    definition: ResourceDefinition,
    resource: dict[str, Any],
    *,
    rule: Rule = Rule.ALL,
) -> FhirResponse:
    """`PUT Type?criteria`: one match is updated (as `PUT Type/id`, `If-Match` honoured),
    none is a create (if the caller may create the type; 201), several a 412. As for
    If-None-Exist, only what the caller may see matches, and the conditional writes of a
    type are serialised on its claim row, so two concurrent requests cannot both create."""
    request = uow.request
    if request.if_match is not None:
        parse_if_match(request.if_match)  # a malformed one is a 400 whether or not one matches
    criteria = [(k, v) for k, v in request.params if k != "_format"]
    asked = f"The conditional update {definition.resource_type}?{urlencode(criteria)}"
    found = await _matching(uow, definition, criteria, "A conditional update", asked)
    if found is not None:
        if resource.get("id") not in (None, found.res_id):
            raise error(
                400, "invalid", f"Resource id {resource.get('id')!r} is not the match's", "id"
            )
        matched = uow.bound(request.model_copy(update={"id": found.res_id, "params": []}))
        return await update(matched, definition, resource, rule=rule)
    if request.if_match is not None:
        raise error(412, "conflict", f"If-Match {request.if_match}: nothing matches")
    if resource.get("id") is not None:
        raise error(
            400,
            "invalid",
            "Nothing matches, so this creates: ids are assigned by the server, leave id out",
            "id",
        )
    creating = request.model_copy(update={"interaction": "create", "params": []})
    authorize_request(creating)
    create_rule = request_rule(creating)
    return await create(uow.bound(creating), definition, resource, rule=create_rule)


async def _conditional_match(
    uow: StoreUnitOfWork, definition: ResourceDefinition
) -> StoredResource | None:
    request = uow.request
    criteria = query_criteria(request.if_none_exist or "", "If-None-Exist")
    asked = f"If-None-Exist {request.if_none_exist!r}"
    return await _matching(uow, definition, criteria, "If-None-Exist", asked)


async def _matching(
    uow: StoreUnitOfWork,
    definition: ResourceDefinition,
    criteria: list[tuple[str, str]],
    name: str,
    asked: str,
) -> StoredResource | None:
    """The one resource the caller may see that `criteria` match (None for none; 412 for
    several), once the type's claim row is held."""
    request = uow.request
    query = parse_search(definition.resource_type, sorted(criteria), uow.data.search_params)
    if not query.criteria:
        raise error(400, "invalid", f"{name} needs at least one search criterion")
    await uow.data.store.claim_conditional(uow.conn, definition.resource_type)
    query.count = 2
    # Only what the caller may see can match: a hidden resource must not answer (not
    # even by refusing), or a conditional write would be a way to search hidden data.
    access = uow.data.guard.filter_for(request)
    page = await uow.data.store.search(uow.conn, query, access_for=access)
    if len(page.resources) > 1:
        raise error(412, "multiple-matches", f"{asked} matches more than one resource")
    return page.resources[0] if page.resources else None


async def _hidden(
    uow: StoreUnitOfWork,
    previous: StoredResource | None,
    check_access: bool,
    missing: tuple[str, str],
) -> bool:
    """Whether a resource about to be changed is one the caller may not see: it is then
    treated exactly as a missing one, so a write can neither reveal nor touch it. Both
    are audited alike (a missing one as a probe), so they take the same time. A barnebro
    service's own writes are no probes (the audit trail storing its records would
    otherwise audit itself for ever)."""
    request = uow.request
    if not check_access or request.caller.credential == "service":
        return False
    if previous is None:
        await uow.data.guard.missing(request, *missing)
        return False
    return not await uow.data.guard.check(request, previous)


async def _require_owner(
    uow: StoreUnitOfWork,
    definition: ResourceDefinition,
    resource: dict[str, Any] | None,
    previous: StoredResource | None = None,
) -> None:
    """The permission table's `own`: the caller's organisation wrote the version being
    replaced, and (where the type says whose a resource is) the resource names it."""
    orgnr = uow.request.caller.orgnr
    if previous is not None and (orgnr is None or previous.access.author != orgnr):
        raise error(
            403,
            "forbidden",
            f"Only the organisation that wrote {previous.reference} changes it",
        )
    if resource is None:
        return
    owners = await definition.owners(resource, uow.lookup())
    if owners is not None and (orgnr is None or orgnr not in owners):
        raise error(
            403,
            "forbidden",
            f"An organisation writes only its own {definition.resource_type}:"
            f" {definition.owner_element} must be the caller's organisation ({orgnr})",
            f"{definition.resource_type}.{definition.owner_element}",
        )
