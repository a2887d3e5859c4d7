"""FHIR `transaction` Bundles inside one service: all entries or none.

Entries run in the FHIR order (DELETE, POST, PUT, GET) in a single database transaction;
`urn:uuid:` references between entries are rewritten to the ids the server assigns. Any
failing entry rolls back the whole Bundle and the error names the entry. (The gateway
sends here only Bundles whose entries all belong to this service.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import orjson

from shared.fhir.errors import FhirError, Issue, error
from shared.fhir.resources import parse_json
from shared.store.resource_store import new_id
from shared.transport.service_host import FHIR_JSON
from shared.transport.wire import FhirRequest, FhirResponse

if TYPE_CHECKING:
    from shared.fhir.interactions import FhirService

METHOD_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "GET": 3}


def split_entry_url(url: str) -> tuple[str, str | None, list[tuple[str, str]]]:
    """`Patient/1` → ("Patient", "1", []); `Patient?x=y` → ("Patient", None, [("x","y")])."""
    path, _, query = url.partition("?")
    parts = [p for p in path.strip("/").split("/") if p]
    if not parts:
        raise error(400, "invalid", f"Bundle entry url {url!r} names no resource type")
    return parts[0], parts[1] if len(parts) > 1 else None, parse_qsl(query)


def entries_of(bundle: dict[str, Any], expected_type: str) -> list[dict[str, Any]]:
    if bundle.get("resourceType") != "Bundle" or bundle.get("type") != expected_type:
        raise error(400, "invalid", f"Expected a Bundle of type {expected_type}")
    entries = bundle.get("entry", [])
    if not isinstance(entries, list):
        raise error(400, "invalid", "Bundle.entry must be a list", "Bundle.entry")
    for index, entry in enumerate(entries):
        request = entry.get("request") if isinstance(entry, dict) else None
        if not isinstance(request, dict) or request.get("method") not in METHOD_ORDER:
            raise error(
                400,
                "invalid",
                "Each entry needs request.method GET, POST, PUT or DELETE and request.url",
                f"Bundle.entry[{index}].request",
            )
        if not isinstance(request.get("url"), str):
            raise error(400, "invalid", "request.url is missing", f"Bundle.entry[{index}].request")
    return entries


def _rewrite(node: Any, ids: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {
            k: ids.get(v, v) if k == "reference" and isinstance(v, str) else _rewrite(v, ids)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_rewrite(item, ids) for item in node]
    return node


async def run_transaction(service: FhirService, request: FhirRequest, body: bytes) -> FhirResponse:
    entries = entries_of(parse_json(body), "transaction")
    assigned: dict[str, str] = {}
    for index, entry in enumerate(entries):
        full_url = entry.get("fullUrl")
        if full_url is not None and full_url in assigned:
            raise error(
                400, "invalid", f"fullUrl {full_url} appears twice", f"Bundle.entry[{index}]"
            )
        if entry["request"]["method"] == "POST" and isinstance(full_url, str):
            res_type = split_entry_url(entry["request"]["url"])[0]
            assigned[full_url] = f"{res_type}/{new_id()}"
    order = sorted(range(len(entries)), key=lambda i: METHOD_ORDER[entries[i]["request"]["method"]])
    results: dict[int, dict[str, Any]] = {}
    async with service.db.transaction() as conn:
        for index in order:
            entry = entries[index]
            try:
                results[index] = await _run_entry(service, conn, request, entry, assigned)
            except FhirError as exc:
                where = f"Bundle.entry[{index}]"
                raise FhirError(
                    exc.status,
                    [
                        Issue(i.code, f"{where}: {i.diagnostics}", i.severity, i.expression)
                        for i in exc.issues
                    ],
                ) from exc
    service.notify_commit()
    response = {
        "resourceType": "Bundle",
        "type": "transaction-response",
        "entry": [results[i] for i in range(len(entries))],
    }
    return FhirResponse(
        status=200, headers={"Content-Type": FHIR_JSON}, body=orjson.dumps(response)
    )


async def _run_entry(
    service: FhirService,
    conn: Any,
    request: FhirRequest,
    entry: dict[str, Any],
    assigned: dict[str, str],
) -> dict[str, Any]:
    method = entry["request"]["method"]
    res_type, res_id, params = split_entry_url(entry["request"]["url"])
    definition = service.definitions.get(res_type)
    if definition is None:
        raise error(404, "not-supported", f"{res_type} is not served by {service.name}")
    if params and method != "GET":
        raise error(400, "not-supported", "Conditional update and delete are not supported")
    sub = FhirRequest(
        interaction="read",
        resource_type=res_type,
        id=res_id,
        params=params,
        if_match=entry["request"].get("ifMatch"),
        if_none_exist=entry["request"].get("ifNoneExist"),
        base_url=request.base_url,
        caller=request.caller,
        prefer_return="representation",
    )
    if method == "GET":
        if res_id is None:
            raise error(400, "not-supported", "Searches inside a transaction are not supported")
        stored = await service.store.read(conn, res_type, res_id)
        if stored is None or stored.deleted:
            raise error(404, "not-found", f"{res_type}/{res_id} is not known")
        return {
            "resource": orjson.Fragment(stored.body or b"{}"),
            "response": {"status": "200", "etag": stored.etag},
        }
    resource = _rewrite(entry.get("resource"), assigned) if method != "DELETE" else None
    if method != "DELETE" and not isinstance(resource, dict):
        raise error(400, "invalid", "The entry has no resource")
    if method == "POST":
        sub.interaction = "create"
        new_ref = assigned.get(entry.get("fullUrl") or "")
        created = await service.create(
            conn, definition, sub, resource or {}, res_id=new_ref.split("/")[1] if new_ref else None
        )
        if new_ref and created.status == 200:
            assigned[entry["fullUrl"]] = f"{res_type}/{orjson.loads(created.body)['id']}"
        answer = created
    elif method == "PUT":
        sub.interaction = "update"
        sub.id = res_id
        answer = await service.update(conn, definition, sub, resource or {})
    else:
        sub.interaction = "delete"
        sub.id = res_id
        answer = await service.delete(conn, definition, sub)
    result: dict[str, Any] = {
        "response": {
            "status": str(answer.status),
            **({"location": answer.headers["Location"]} if "Location" in answer.headers else {}),
            **({"etag": answer.headers["ETag"]} if "ETag" in answer.headers else {}),
        }
    }
    if answer.body:
        result["resource"] = orjson.Fragment(answer.body)
    return result
