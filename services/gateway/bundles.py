"""Batch and transaction Bundles at the gateway.

A batch is split into independent interactions, each routed to its own service; one
entry failing does not affect the others. A transaction must be atomic: when all its
entries belong to one service it is forwarded whole and that service runs it in a single
database transaction; a transaction spanning services is refused with 400, because
atomicity across services' databases would need a distributed commit that barnebro does
not offer (use a batch, or one transaction per service).
"""

from __future__ import annotations

from typing import Any

import orjson

from services.gateway.gateway import Gateway
from services.gateway.provenance import refused_in_transaction
from shared.auth.scopes import authorize_request
from shared.fhir import bundles
from shared.fhir.bundle_entries import at_entry, bundle_entries, entry_result
from shared.fhir.errors import FhirError, error, operation_outcome
from shared.fhir.resources import FHIR_JSON
from shared.transport.wire import FhirRequest, FhirResponse, bundle_subject


async def run_batch(gateway: Gateway, base: FhirRequest, bundle: dict[str, Any]) -> FhirResponse:
    """Each entry on its own. Once the answers reach `BARNEBRO_MAX_ANSWER_BYTES`, the
    entries left are not run: each answers 413, to be sent again in another batch."""
    results = []
    budget = gateway.settings.max_answer_bytes
    for entry, entry_request in bundle_entries(bundle, "batch"):
        if budget <= 0:
            exc = error(
                413,
                "too-costly",
                "Not run: the batch's answer reached BARNEBRO_MAX_ANSWER_BYTES; send this"
                " entry again in another batch",
            )
            response = FhirResponse(status=413, body=orjson.dumps(operation_outcome(exc.issues)))
            results.append(entry_result(response))
            continue
        try:
            body = orjson.dumps(entry["resource"]) if "resource" in entry else b""
            response = await gateway.dispatch(entry_request.to_request(base), body)
        except FhirError as exc:
            response = FhirResponse(
                status=exc.status, body=orjson.dumps(operation_outcome(exc.issues))
            )
        budget -= len(response.body) + len(response.outcome)
        results.append(entry_result(response))
    answer = bundles.batch_response(results)
    return FhirResponse(status=200, headers={"Content-Type": FHIR_JSON}, body=answer)


async def run_transaction(
    gateway: Gateway, base: FhirRequest, bundle: dict[str, Any]
) -> FhirResponse:
    services: set[str] = set()
    for index, (_, entry_request) in enumerate(bundle_entries(bundle, "transaction")):
        resource_type = entry_request.resource_type
        entry_as_request = entry_request.to_request(base)
        if resource_type == "Provenance":
            authorize_request(entry_as_request)
            try:
                refused_in_transaction(entry_as_request)
            except FhirError as exc:
                raise at_entry(index, exc) from exc
        await gateway.owner_subject(resource_type)
        authorize_request(entry_as_request)
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
