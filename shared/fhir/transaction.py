"""FHIR `transaction` Bundles inside one service: all entries or none.

Entries run in the FHIR order (DELETE, POST, PUT, GET) in a single database transaction,
a created resource before the entries that refer to it; `urn:uuid:` references between
entries are rewritten to the ids the server assigns, and a resource that another created
entry will share (a referral's attachment) is created already shared. Any
failing entry rolls back the whole Bundle and the error names the entry. (The gateway
sends here only Bundles whose entries all belong to this service.)
"""

from __future__ import annotations

from typing import Any

import orjson

from shared.access.permissions import request_rule
from shared.fhir import bundles, writes
from shared.fhir.answers import not_found
from shared.fhir.bundle_entries import (
    METHOD_ORDER,
    EntryRequest,
    at_entry,
    bundle_entries,
    entry_result,
)
from shared.fhir.errors import FhirError, error
from shared.fhir.references import names_bundle_entry
from shared.fhir.repository import Repository
from shared.fhir.resources import FHIR_JSON, parse_json, version_number
from shared.fhir.service import FhirService
from shared.fhir.unit_of_work import StoreUnitOfWork
from shared.store.resource_store import DEFAULT_PAGE_BYTES, new_id
from shared.transport.wire import FhirRequest, FhirResponse


def _rewrite(node: Any, ids: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {
            k: ids.get(v, v) if k == "reference" and isinstance(v, str) else _rewrite(v, ids)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_rewrite(item, ids) for item in node]
    return node


def _assign_ids(entries: list[tuple[dict[str, Any], EntryRequest]]) -> dict[str, str]:
    """`fullUrl` → `Type/new-id` for every entry that creates a resource."""
    assigned: dict[str, str] = {}
    seen: set[str] = set()
    for index, (entry, request) in enumerate(entries):
        full_url = entry.get("fullUrl")
        if not isinstance(full_url, str):
            continue
        if full_url in seen:
            raise error(
                400, "invalid", f"fullUrl {full_url} appears twice", f"Bundle.entry[{index}]"
            )
        seen.add(full_url)
        if request.method == "POST":
            assigned[full_url] = f"{request.resource_type}/{new_id()}"
    return assigned


def _refuse_unresolved(
    entries: list[tuple[dict[str, Any], EntryRequest]], assigned: dict[str, str]
) -> None:
    """A `urn:uuid:` reference names an entry of the Bundle (FHIR R4 §3.1.0.11.2): one
    that names none, or an entry that creates nothing, would be stored as a reference to
    nothing."""
    for index, (entry, _) in enumerate(entries):
        for reference in sorted(_references(entry.get("resource"))):
            if names_bundle_entry(reference) and reference not in assigned:
                raise error(
                    400,
                    "invalid",
                    f"Bundle.entry[{index}]: the reference {reference} names no entry of"
                    " this Bundle that creates a resource (POST with that fullUrl)",
                    f"Bundle.entry[{index}].resource",
                )


def _references(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {v for k, v in node.items() if k == "reference" and isinstance(v, str)}
        return found.union(*(_references(v) for v in node.values() if isinstance(v, dict | list)))
    if isinstance(node, list):
        return set().union(*(_references(item) for item in node))
    return set()


def _referenced_first(
    entries: list[tuple[dict[str, Any], EntryRequest]], order: list[int]
) -> list[int]:
    """Within the FHIR order, a created resource that another entry refers to (by its
    `fullUrl`) is created before the entry that refers to it, so its checks can read it;
    otherwise (and in a cycle) the Bundle's order is kept."""
    creates = {
        entry.get("fullUrl"): index
        for index, (entry, request) in enumerate(entries)
        if request.method == "POST" and entry.get("fullUrl")
    }
    waits_for = {
        index: {creates[ref] for ref in _references(entry.get("resource")) if ref in creates}
        - {index}
        for index, (entry, _) in enumerate(entries)
    }
    placed: list[int] = []
    done: set[int] = set()
    pending = list(order)
    while pending:
        method = entries[pending[0]][1].method
        ready = next(
            (i for i in pending if entries[i][1].method == method and waits_for[i] <= done),
            pending[0],
        )
        placed.append(ready)
        done.add(ready)
        pending.remove(ready)
    return placed


def _planned_shares(
    uow: StoreUnitOfWork,
    entries: list[tuple[dict[str, Any], EntryRequest]],
    assigned: dict[str, str],
) -> dict[str, tuple[str, ...]]:
    """Resources the Bundle creates that another entry it certainly creates will share
    (`ResourceDefinition.shares_created`): they are created already shared. A conditional
    create may create nothing, and a resource two entries share is left to them."""
    creates = [
        (entry, request)
        for entry, request in entries
        if request.method == "POST" and not request.if_none_exist
    ]
    created = {assigned[e["fullUrl"]] for e, _ in creates if e.get("fullUrl") in assigned}
    planned: dict[str, tuple[str, ...]] = {}
    named: dict[str, int] = {}
    for entry, request in creates:
        definition = uow.data.definitions.get(request.resource_type)
        if definition is None or not definition.shares_on_create:
            continue  # shares nothing (or the entry itself answers for its type)
        resource = _rewrite(entry.get("resource"), assigned)
        if not isinstance(resource, dict):
            continue
        for reference, orgnrs in definition.shares_created(resource).items():
            named[reference] = named.get(reference, 0) + 1
            if reference in created and orgnrs:
                planned[reference] = orgnrs
    return {ref: orgnrs for ref, orgnrs in planned.items() if named[ref] == 1}


async def run_transaction(service: FhirService, request: FhirRequest, body: bytes) -> FhirResponse:
    entries = bundle_entries(parse_json(body), "transaction")
    assigned = _assign_ids(entries)
    _refuse_unresolved(entries, assigned)
    order = _referenced_first(
        entries, sorted(range(len(entries)), key=lambda i: METHOD_ORDER[entries[i][1].method])
    )
    results: dict[int, dict[str, Any]] = {}
    read_sizes: list[int] = []
    written = _refuse_named_twice(entries)
    async with service.unit_of_work(request) as uow:
        uow.plan_shares(_planned_shares(uow, entries, assigned))
        await uow.lock_patients(*_patients_written(uow, entries))
        for index in order:
            entry, entry_request = entries[index]
            try:
                results[index] = await _run_entry(uow, entry, entry_request, assigned, read_sizes)
                _refuse_resolved_twice(written, index, entry_request, results[index])
                if sum(read_sizes) > DEFAULT_PAGE_BYTES:
                    raise error(
                        413,
                        "too-costly",
                        f"The resources this transaction reads exceed {DEFAULT_PAGE_BYTES}"
                        " bytes; nothing was written: read them with separate requests",
                    )
            except FhirError as exc:
                raise at_entry(index, exc) from exc
    answer = bundles.transaction_response([results[i] for i in range(len(entries))])
    return FhirResponse(status=200, headers={"Content-Type": FHIR_JSON}, body=answer)


def _patients_written(
    uow: StoreUnitOfWork, entries: list[tuple[dict[str, Any], EntryRequest]]
) -> tuple[list[tuple[str, str]], list[str]]:
    """What the Bundle's writes of patient data foresee: the resources they replace (whose
    stored patients are locked) and the registered patients the resources they send name
    as `Patient/<id>` (a Patient the Bundle itself creates, named by `urn:uuid:`, is new
    to everyone else). Locked up front in one order, so two Bundles about the same
    children never wait crosswise; a patient found only later (a subject named by
    identifier) is locked when written."""
    replaced: list[tuple[str, str]] = []
    patients: list[str] = []
    for entry, request in entries:
        definition = uow.data.definitions.get(request.resource_type)
        if definition is None or definition.data_category is None or request.method == "GET":
            continue
        if request.id is not None:
            replaced.append((definition.resource_type, request.id))
        resource = entry.get("resource")
        if isinstance(resource, dict):
            named = definition.patient_of(resource, request.id or "")
            if named:
                patients.append(named)
    return replaced, patients


def _named_by(location: str) -> str:
    """`Type/id` of a `Location` (`<base>/Type/id`, with or without `/_history/v`)."""
    return "/".join(location.split("/_history/")[0].rsplit("/", 2)[-2:])


def _written_twice(identity: str, index: int, written: dict[str, int]) -> None:
    """Record that entry `index` writes `identity`; a resource written twice fails the Bundle."""
    earlier = written.setdefault(identity, index)
    if earlier != index:
        raise error(
            400,
            "invalid",
            f"{identity} is written by Bundle.entry[{earlier}] and Bundle.entry[{index}];"
            " a transaction may write a resource once. Nothing was written",
            f"Bundle.entry[{index}].request",
        )


def _refuse_named_twice(entries: list[tuple[dict[str, Any], EntryRequest]]) -> dict[str, int]:
    """The resources the write entries name by id, each once; before anything runs, so the
    answer does not depend on which of two writes ran first."""
    written: dict[str, int] = {}
    for index, (_, request) in enumerate(entries):
        if request.method != "GET" and request.id is not None:
            _written_twice(f"{request.resource_type}/{request.id}", index, written)
    return written


def _refuse_resolved_twice(
    written: dict[str, int], index: int, entry_request: EntryRequest, result: dict[str, Any]
) -> None:
    """A conditional write's resource, once resolved, is not one another entry writes."""
    location = result["response"].get("location")
    if entry_request.method == "GET" or entry_request.id is not None:
        return
    if isinstance(location, str):
        _written_twice(_named_by(location), index, written)


async def _run_entry(
    uow: StoreUnitOfWork,
    entry: dict[str, Any],
    entry_request: EntryRequest,
    assigned: dict[str, str],
    read_sizes: list[int],
) -> dict[str, Any]:
    """One entry's result; a GET adds the size of what it read to `read_sizes`."""
    res_type, res_id = entry_request.resource_type, entry_request.id
    definition = uow.data.definition(res_type)
    # `Prefer: return=minimal` on the Bundle applies to every entry (FHIR R4 §3.1.0.11);
    # the other forms of it describe an answer of one interaction, not a Bundle's entry.
    minimal = "minimal" if uow.request.prefer_return == "minimal" else None
    sub = entry_request.to_request(uow.request).model_copy(update={"prefer_return": minimal})
    rule = request_rule(sub)
    entry_uow = uow.bound(sub)
    if entry_request.method == "GET":
        if res_id is None:
            raise error(400, "not-supported", "Searches inside a transaction are not supported")
        if entry_request.version is not None:
            version = version_number(entry_request.version)
            stored = await entry_uow.read_version(res_type, res_id, version)
        else:
            stored = await entry_uow.read(res_type, res_id)
        stored = await Repository(uow.data, sub).disclose(stored, (res_type, res_id))
        if stored is None or stored.deleted:
            raise not_found(res_type, res_id)
        read_sizes.append(len(stored.body or b""))
        return {
            "resource": orjson.Fragment(stored.body or b"{}"),
            "response": {"status": "200", "etag": stored.etag},
        }
    definition.refuse_client_writes()
    if entry_request.method == "POST":
        full_url = entry.get("fullUrl") or ""
        new_ref = assigned.get(full_url)
        answer = await writes.create(
            entry_uow,
            definition,
            _rewrite(entry["resource"], assigned),
            res_id=new_ref.split("/")[1] if new_ref else None,
            rule=rule,
        )
        if new_ref and answer.status == 200:
            # A conditional create matched: later entries refer to the resource it found
            # (named by Location, which is there whether or not the answer has a body).
            assigned[full_url] = _named_by(answer.headers["Location"])
    elif entry_request.method == "PUT":
        resource = _rewrite(entry["resource"], assigned)
        if res_id is None:  # PUT Type?criteria
            answer = await writes.conditional_update(entry_uow, definition, resource, rule=rule)
        else:
            answer = await writes.update(entry_uow, definition, resource, rule=rule)
    else:
        answer = await writes.delete(entry_uow, definition, rule=rule)
    return entry_result(answer)
