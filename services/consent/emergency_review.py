"""`POST /fhir/AuditEvent/{id}/$review`: the operator records the after-the-fact review
of an emergency access ("break the glass").

An emergency access is released at once and reviewed afterwards (helsepersonelloven §7,
pbrl §4-9): its AuditEvent names the health person (HPR number) who used it, the child and
the reason, and is listed for the operator by `GET /fhir/AuditEvent?review=pending`. The
review is kept on the AuditEvent itself (extension `emergency-review`: who reviewed it,
when, the conclusion `justified` or `unjustified`, and a note), as a new version, and an
`AuditEvent.emergency-reviewed` event tells the organisation's partners. Input, a
Parameters resource: `conclusion` (valueCode), `reviewer` (valueString, who reviewed),
`note` (valueString, optional).
"""

from __future__ import annotations

from typing import Any

from services.consent.handlers import service_update
from services.consent.resources import (
    EMERGENCY_BASIS,
    REVIEW_CONCLUSIONS,
    REVIEW_EXT,
    REVIEW_OPERATION,
    REVIEW_PARAMETERS,
    review_of,
)
from shared.clock import now_instant
from shared.fhir import writes
from shared.fhir.answers import not_found
from shared.fhir.errors import error
from shared.fhir.parameters import operation_parameters
from shared.fhir.resources import ID_PATTERN
from shared.fhir.search_params import walk
from shared.fhir.service import FhirService
from shared.transport.wire import FhirRequest, FhirResponse


def _parameters(body: bytes) -> dict[str, Any]:
    found = operation_parameters(body, REVIEW_OPERATION, declared=REVIEW_PARAMETERS)
    if found.get("conclusion") not in REVIEW_CONCLUSIONS:
        raise error(
            400, "invalid", f"conclusion must be one of {', '.join(REVIEW_CONCLUSIONS)}",
            "conclusion",
        )  # fmt: skip
    for name, limit in (("reviewer", 200), ("note", 2000)):
        value = found.get(name, "")
        if not isinstance(value, str) or len(value) > limit or (name == "reviewer" and not value):
            raise error(400, "invalid", f"{name} is a text of at most {limit} characters", name)
    return found


class EmergencyReview:
    def __init__(self, fhir: FhirService) -> None:
        self.fhir = fhir

    def operations(self) -> dict[str, Any]:
        return {REVIEW_OPERATION: self.review}

    async def review(self, request: FhirRequest, body: bytes) -> FhirResponse:
        event_id = request.id or ""
        if request.resource_type != "AuditEvent" or not ID_PATTERN.fullmatch(event_id):
            raise error(400, "invalid", f"{REVIEW_OPERATION} is an operation on AuditEvent/<id>")
        found = _parameters(body)
        update = service_update("AuditEvent", event_id)
        async with self.fhir.unit_of_work(update) as uow:
            stored = await uow.read_for_update("AuditEvent", event_id)
            if stored is None or stored.deleted:
                raise not_found("AuditEvent", event_id)
            event = stored.json()
            bases = {
                d.get("valueString") for d in walk(event, ["entity", "detail"])
                if isinstance(d, dict) and d.get("type") == "basis"
            }  # fmt: skip
            if EMERGENCY_BASIS not in bases:
                raise error(422, "business-rule", "Only an emergency access is reviewed")
            if review_of(event) is not None:
                raise error(409, "duplicate", f"AuditEvent/{event_id} has been reviewed")
            parts = [
                {"url": "reviewer", "valueString": found["reviewer"]},
                {"url": "date", "valueDateTime": now_instant()},
                {"url": "conclusion", "valueCode": found["conclusion"]},
            ]
            if found.get("note"):
                parts.append({"url": "note", "valueString": found["note"]})
            if request.caller.client_id:
                parts.append({"url": "operator", "valueString": request.caller.client_id})
            event["extension"] = [
                *(event.get("extension") or []),
                {"url": REVIEW_EXT, "extension": parts},
            ]
            return await writes.update(
                uow, self.fhir.definitions["AuditEvent"], event, check_access=False
            )
