"""FHIR `AuditEvent`s: from the audit records services write before releasing patient
information, and for disclosures under hpl §33.

One AuditEvent per request: the organisation (and person) acting, the purpose of use, the
outcome, and one entity per patient and per resource concerned, each with the basis of
the decision (consent and its id, own data, emergency with its reason, …).
"""

from __future__ import annotations

import base64
from typing import Any

from services.consent.domain.model import LEGAL_BASIS_SYSTEM
from services.consent.resources import (
    AUDIT_DETAIL_BASIS,
    DISCLOSURE_CLOSED_EXT,
    HPL33_SUBTYPE,
    WITHHELD_PATIENT,
)
from shared.access.audit import AuditRecord
from shared.codes import ACT_REASON_SYSTEM, EMERGENCY_PURPOSE_OF_USE
from shared.identifiers import HPR_SYSTEM, ORGNR_SYSTEM

AUDIT_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/audit-event-type"
INTERACTION_SYSTEM = "http://hl7.org/fhir/restful-interaction"
OBJECT_ROLE_SYSTEM = "http://terminology.hl7.org/CodeSystem/object-role"
SUCCESS, MINOR_FAILURE = "0", "4"
HPL33_TEXT = "Opplysningsplikt (helsepersonelloven §33): "


def _agents(
    orgnr: str | None, hpr: str | None, fhir_user: str | None, client_id: str | None
) -> list[dict[str, Any]]:
    agent: dict[str, Any] = {"requestor": True}
    if orgnr:
        agent["who"] = {"identifier": {"system": ORGNR_SYSTEM, "value": orgnr}}
    if client_id and client_id.strip():
        agent["altId"] = client_id
    agents = [agent]
    if fhir_user:
        # The person acting for themselves is the requestor; the organisation of the
        # client they logged in through is named, but did not ask.
        agents.insert(0, {"requestor": True, "who": {"reference": fhir_user}})
        agent["requestor"] = False
        if not orgnr:
            agents.remove(agent)
    if hpr:
        person = {"identifier": {"system": HPR_SYSTEM, "value": hpr}}
        agents.append({"requestor": True, "who": person})
    return agents


def _patient_entity(patient: str) -> dict[str, Any]:
    return {
        "what": {"reference": f"Patient/{patient}"},
        "role": {"system": OBJECT_ROLE_SYSTEM, "code": "1"},
    }


def _detail(kind: str, value: str) -> dict[str, str]:
    return {"type": kind, "valueString": value}


def audit_event(record: AuditRecord) -> dict[str, Any]:
    """The AuditEvent of one audit record (its id is the record's). The patients of what
    was released are its `patient` entities; the patient of what was withheld is only a
    detail of that entity (`withheld-patient`), for the operator: a caller reading the
    records of its own accesses must not learn whom a resource it was refused is about."""
    entities: list[dict[str, Any]] = []
    for patient in sorted({e.patient for e in record.entities if e.patient and e.permit}):
        entities.append(_patient_entity(patient))
    for entity in record.entities:
        details = [_detail(AUDIT_DETAIL_BASIS, entity.basis)]
        if entity.patient and not entity.permit:
            details.append(_detail(WITHHELD_PATIENT, f"Patient/{entity.patient}"))
        if entity.category:
            details.append(_detail("category", entity.category))
        details += [_detail("consent", consent) for consent in entity.consents]
        details.append(_detail("decision", "permit" if entity.permit else "deny"))
        described: dict[str, Any] = {
            "what": {"reference": entity.reference},
            "role": {"system": OBJECT_ROLE_SYSTEM, "code": "4"},
            "detail": details,
        }
        reasons = "; ".join(reason for reason in entity.reasons if reason.strip())[:1000]
        if reasons.strip():
            described["description"] = reasons
        entities.append(described)
    if record.query:
        query_role = {"system": OBJECT_ROLE_SYSTEM, "code": "24"}
        entities.append({"query": _base64(record.query), "role": query_role})
    purpose = record.purpose_of_use
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": record.id,
        "type": {"system": AUDIT_TYPE_SYSTEM, "code": "rest"},
        "subtype": [{"system": INTERACTION_SYSTEM, "code": record.interaction}],
        "action": "R" if record.interaction != "operation" else "E",
        "recorded": record.recorded,
        "outcome": SUCCESS if record.outcome == "permit" else MINOR_FAILURE,
        "purposeOfEvent": [{"coding": [{"system": ACT_REASON_SYSTEM, "code": purpose}]}],
        "agent": _agents(record.orgnr, record.hpr, record.fhir_user, record.client_id),
        "source": {"observer": {"display": f"barnebro-{record.service}"}},
        "entity": entities,
    }
    if record.emergency_reason:
        event["outcomeDesc"] = f"Emergency access: {record.emergency_reason}"  # bounded at the edge
        event["purposeOfEvent"] = [
            {"coding": [{"system": ACT_REASON_SYSTEM, "code": EMERGENCY_PURPOSE_OF_USE}]}
        ]
    return event


def disclosure_event(
    event_id: str,
    recorded: str,
    *,
    patient: str,
    reporter_orgnr: str | None,
    reporter_hpr: str | None,
    recipient_orgnr: str,
    resources: list[str],
    reason: str,
) -> dict[str, Any]:
    """The AuditEvent that records an hpl §33 disclosure to barnevern (never a consent).

    `resources` are the versions released (`Type/id/_history/<version>`), each an entity;
    the reporting organisation and the health person (HPR number) are its requestors, the
    barnevernstjeneste the agent that is not."""
    entities: list[dict[str, Any]] = [_patient_entity(patient)]
    entities += [
        {
            "what": {"reference": reference},
            "role": {"system": OBJECT_ROLE_SYSTEM, "code": "4"},
            "detail": [_detail(AUDIT_DETAIL_BASIS, HPL33_SUBTYPE)],
        }
        for reference in resources
    ]
    return {
        "resourceType": "AuditEvent",
        "id": event_id,
        "type": {"system": AUDIT_TYPE_SYSTEM, "code": "export"},
        "subtype": [{"system": LEGAL_BASIS_SYSTEM, "code": HPL33_SUBTYPE}],
        "action": "C",
        "recorded": recorded,
        "outcome": SUCCESS,
        "outcomeDesc": f"{HPL33_TEXT}{reason}",  # bounded by the API (2000 characters)
        "agent": [
            *_agents(reporter_orgnr, reporter_hpr, None, None),
            {
                "requestor": False,
                "who": {"identifier": {"system": ORGNR_SYSTEM, "value": recipient_orgnr}},
            },
        ],
        "source": {"observer": {"display": "barnebro-consent"}},
        "entity": entities,
    }


def is_disclosure(event: dict[str, Any]) -> bool:
    return any(
        isinstance(coding, dict) and coding.get("code") == HPL33_SUBTYPE
        for coding in event.get("subtype") or []
    )


def identified(event: dict[str, Any], system: str, requestor: bool) -> list[str]:
    return [
        str(agent["who"]["identifier"]["value"])
        for agent in event.get("agent") or []
        if agent.get("requestor") is requestor
        and ((agent.get("who") or {}).get("identifier") or {}).get("system") == system
    ]


def disclosure_of(event: dict[str, Any]) -> tuple[str, list[str], list[str]]:
    """(AuditEvent id, recipients, versions released) of a §33 disclosure AuditEvent. A
    resource recorded without its version (before versions were recorded) is left out:
    what was reported of it is not known, so nothing of it is released."""
    resources = [
        entity["what"]["reference"]
        for entity in event.get("entity") or []
        if (entity.get("role") or {}).get("code") == "4"
        and "/_history/" in entity["what"]["reference"]
    ]
    return str(event["id"]), identified(event, ORGNR_SYSTEM, False), resources


def closure_of(event: dict[str, Any]) -> dict[str, Any] | None:
    """The closing of a §33 disclosure, once recorded: when, why and by whom."""
    closing = next(
        (e for e in event.get("extension") or [] if e.get("url") == DISCLOSURE_CLOSED_EXT), None
    )
    if closing is None:
        return None
    return {
        str(part.get("url")): part.get("valueString")
        or part.get("valueDateTime")
        or (part.get("valueIdentifier") or {}).get("value")
        for part in closing.get("extension") or []
    }


def closed_disclosure(
    event: dict[str, Any],
    closed: str,
    reason: str,
    orgnr: str | None,
    hpr: str | None,
    operator: str | None,
) -> dict[str, Any]:
    """`event` with its closing recorded (`disclosure-closed`: date, reason, who)."""
    parts: list[dict[str, Any]] = [
        {"url": "date", "valueDateTime": closed},
        {"url": "reason", "valueString": reason},
    ]
    if orgnr:
        identifier = {"system": ORGNR_SYSTEM, "value": orgnr}
        parts.append({"url": "organization", "valueIdentifier": identifier})
    if hpr:
        parts.append({"url": "practitioner", "valueIdentifier": {"system": HPR_SYSTEM,
                                                                  "value": hpr}})  # fmt: skip
    if operator:
        parts.append({"url": "operator", "valueString": operator})
    return {
        **event,
        "extension": [
            *(event.get("extension") or []),
            {"url": DISCLOSURE_CLOSED_EXT, "extension": parts},
        ],
    }


def disclosure_json(event: dict[str, Any], patient: str) -> dict[str, Any]:
    """A §33 disclosure as the administration API lists it."""
    record, recipients, resources = disclosure_of(event)
    description = str(event.get("outcomeDesc") or "")
    closed = closure_of(event)
    return {
        "id": record,
        "audit_event": f"AuditEvent/{record}",
        "basis": HPL33_SUBTYPE,
        "patient": f"Patient/{patient}",
        "recorded": event.get("recorded"),
        "reporter": {
            "orgnr": next(iter(identified(event, ORGNR_SYSTEM, True)), None),
            "hpr": next(iter(identified(event, HPR_SYSTEM, True)), None),
        },
        "recipients": recipients,
        "resources": resources,
        "reason": description.removeprefix(HPL33_TEXT),
        "status": "closed" if closed else "open",
        "closed": closed,
    }


def _base64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()
