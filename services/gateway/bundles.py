"""Batch and transaction Bundles at the gateway.

A batch is split into independent interactions, each routed to its own service; one
entry failing does not affect the others. A transaction must be atomic: when all its
entries belong to one service it is forwarded whole and that service runs it in a single
database transaction; a transaction spanning services is refused with 400, because
atomicity across services' databases would need a distributed commit that barnebro does
not offer (use a batch, or one transaction per service).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from shared.auth.scopes import authorize
from shared.fhir.errors import FhirError, error, operation_outcome
from shared.fhir.transaction import entries_of, split_entry_url
from shared.transport.service_host import FHIR_JSON
from shared.transport.wire import FhirRequest, FhirResponse, Interaction, bundle_subject

if TYPE_CHECKING:
    from services.gateway.app import Gateway

_METHOD_INTERACTIONS: dict[str, tuple[Interaction, Interaction]] = {
    "GET": ("search", "read"),
    "POST": ("create", "create"),
    "PUT": ("update", "update"),
    "DELETE": ("delete", "delete"),
}


def entry_request(base: FhirRequest, entry: dict[str, Any]) -> FhirRequest:
    method, url = entry["request"]["method"], entry["request"]["url"]
    res_type, res_id, params = split_entry_url(url)
    on_type, on_instance = _METHOD_INTERACTIONS[method]
    interaction = on_instance if res_id else on_type
    version = None
    if res_id and "/_history/" in url:
        interaction, version = "vread", url.rsplit("/", 1)[-1]
    if method in ("PUT", "DELETE") and not res_id:
        raise error(400, "not-supported", "Conditional update and delete are not supported")
    return base.model_copy(
        update={
            "interaction": interaction,
            "resource_type": res_type,
            "id": res_id,
            "version": version,
            "params": params,
            "if_match": entry["request"].get("ifMatch"),
            "if_none_exist": entry["request"].get("ifNoneExist"),
        }
    )


def _entry_result(response: FhirResponse) -> dict[str, Any]:
    result: dict[str, Any] = {"response": {"status": str(response.status)}}
    for header, field in (("Location", "location"), ("ETag", "etag")):
        if header in response.headers:
            result["response"][field] = response.headers[header]
    if response.body:
        body = orjson.Fragment(response.body)
        if response.status >= 400:
            result["response"]["outcome"] = body
        else:
            result["resource"] = body
    return result


async def run_batch(gateway: Gateway, base: FhirRequest, bundle: dict[str, Any]) -> FhirResponse:
    results = []
    for entry in entries_of(bundle, "batch"):
        try:
            request = entry_request(base, entry)
            body = orjson.dumps(entry["resource"]) if "resource" in entry else b""
            response = await gateway.dispatch(request, body)
        except FhirError as exc:
            response = FhirResponse(
                status=exc.status, body=orjson.dumps(operation_outcome(exc.issues))
            )
        results.append(_entry_result(response))
    answer = {"resourceType": "Bundle", "type": "batch-response", "entry": results}
    return FhirResponse(status=200, headers={"Content-Type": FHIR_JSON}, body=orjson.dumps(answer))


async def run_transaction(
    gateway: Gateway, base: FhirRequest, bundle: dict[str, Any]
) -> FhirResponse:
    services: set[str] = set()
    for entry in entries_of(bundle, "transaction"):
        request = entry_request(base, entry)
        resource_type = request.resource_type or ""
        await gateway.owner_subject(resource_type)
        authorize(base.caller, resource_type, request.interaction)
        services.add(await gateway.registry.owner(resource_type) or "")
    if len(services) > 1:
        raise error(
            400,
            "not-supported",
            "This transaction spans several services ("
            + ", ".join(sorted(services))
            + "); a transaction is atomic only within one service. Send one transaction per"
            " service, or a batch.",
        )
    if not services:
        empty = {"resourceType": "Bundle", "type": "transaction-response", "entry": []}
        return FhirResponse(
            status=200, headers={"Content-Type": FHIR_JSON}, body=orjson.dumps(empty)
        )
    subject = bundle_subject(gateway.settings.nats_prefix, services.pop())
    return await gateway.forwarder.send(subject, base, orjson.dumps(bundle))
