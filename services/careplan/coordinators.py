"""`POST /fhir/CareTeam/{id}/$assign-coordinator`: appoint a coordinator, handing over.

The operation is a convenience over a plain update of the CareTeam, and obeys the same
rules because it is one: the current holder of the role gets an end to its period (the
day before the new one starts; never removed), the new coordinator is added with who
handed over to whom, by whom and why (extension coordinator-handover), and the update
goes through the CareTeam's checks and events like any client's. A substitute
(stedfortreder) is added beside the coordinator it stands in for, ending no one.

Input, a Parameters resource: `coordinator` (valueReference: an Organization by
organisasjonsnummer, or a Practitioner/PractitionerRole reference), `onBehalfOf`
(valueReference, the organisation a person acts for), `role` (valueCode, default
koordinator), `start` (valueDate, default today), `reason` (valueString, required) and
`substituteFor` (valueString, the member a substitute stands in for).
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from services.careplan.domain.vocabulary import COORDINATOR_ROLES, HANDOVER_EXT, SUBSTITUTE_EXT
from services.careplan.records import a_date, participants
from services.careplan.resources import ASSIGN_OPERATION, ASSIGN_PARAMETERS
from shared.clock import now_instant, today
from shared.codes import ROLE_SYSTEM
from shared.fhir import writes
from shared.fhir.answers import not_found
from shared.fhir.errors import error
from shared.fhir.parameters import operation_parameters
from shared.fhir.service import FhirService
from shared.identifiers import ORGNR_SYSTEM
from shared.transport.wire import FhirRequest, FhirResponse

OPERATION = ASSIGN_OPERATION


def _required(found: dict[str, Any], name: str, kind: type) -> Any:
    value = found.get(name)
    if not isinstance(value, kind) or not value:
        raise error(422, "required", f"{OPERATION} needs the parameter {name}", name)
    return value


class CoordinatorAssignment:
    def __init__(self, fhir: FhirService) -> None:
        self.fhir = fhir

    def operations(self) -> dict[str, Any]:
        return {OPERATION: self.assign}

    async def assign(self, request: FhirRequest, body: bytes) -> FhirResponse:
        if request.resource_type != "CareTeam" or not request.id:
            raise error(404, "not-supported", f"{OPERATION} is an operation on a CareTeam")
        found = operation_parameters(body, OPERATION, declared=ASSIGN_PARAMETERS)
        member = _required(found, "coordinator", dict)
        reason = _required(found, "reason", str)
        role = found.get("role", "koordinator")
        if not isinstance(role, str) or role not in COORDINATOR_ROLES:
            raise error(422, "code-invalid", f"role must be one of {sorted(COORDINATOR_ROLES)}")
        start = a_date(found.get("start")) if "start" in found else today()
        if start is None:
            raise error(422, "value", "start must be a date", "start")
        substitute_for = found.get("substituteFor")
        definition = self.fhir.definitions["CareTeam"]
        repository = self.fhir.repository(request)
        async with self.fhir.unit_of_work(request) as uow:
            stored = await uow.read_for_update("CareTeam", request.id, stored_patient=True)
            if stored is None or stored.deleted:
                await repository.disclose(None, ("CareTeam", request.id))
                raise not_found("CareTeam", request.id)
            await repository.disclose(stored)
            team = stored.json()
            handed_from = [] if substitute_for else _end_holders(team, role, start)
            team.setdefault("participant", []).append(
                _entry(member, found.get("onBehalfOf"), role, start, substitute_for,
                       _handover(handed_from, request, reason))
            )  # fmt: skip
            update = request.model_copy(update={"interaction": "update", "if_match": stored.etag})
            return await writes.update(uow.bound(update), definition, team)


def _end_holders(team: dict[str, Any], role: str, start: date) -> list[str]:
    """End the period of whoever holds `role` on `start` (the day before); their names."""
    ended = []
    for entry, participant in zip(team.get("participant") or [], participants(team), strict=True):
        if participant.role != role or participant.substitute_for is not None:
            continue
        if participant.end is None or participant.end >= start:
            entry.setdefault("period", {})["end"] = (start - timedelta(days=1)).isoformat()
            ended.append(participant.member)
    return ended


def _handover(handed_from: list[str], request: FhirRequest, reason: str) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [
        {"url": "reason", "valueString": reason},
        {"url": "at", "valueDateTime": now_instant()},
    ]
    parts += [{"url": "from", "valueString": member} for member in handed_from]
    if request.caller.orgnr:
        by = {"system": ORGNR_SYSTEM, "value": request.caller.orgnr}
        parts.append({"url": "by", "valueIdentifier": by})
    return {"url": HANDOVER_EXT, "extension": parts}


def _entry(
    member: dict[str, Any],
    on_behalf_of: Any,
    role: str,
    start: date,
    substitute_for: Any,
    handover: dict[str, Any],
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "role": [{"coding": [{"system": ROLE_SYSTEM, "code": role}]}],
        "member": member,
        "period": {"start": start.isoformat()},
        "extension": [handover],
    }
    if isinstance(on_behalf_of, dict):
        entry["onBehalfOf"] = on_behalf_of
    if isinstance(substitute_for, str) and substitute_for:
        entry["extension"].append({"url": SUBSTITUTE_EXT, "valueString": substitute_for})
    return entry
