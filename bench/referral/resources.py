"""The referrals, attachments and Task moves the benchmark sends."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from typing import Any

from bench.referral.world import ATTACHMENTS, FRIST_DAYS, MUNICIPALITY
from services.referral.domain.vocabulary import (
    ATTACHMENT_SYSTEM,
    FRIST_EXT,
    OUTPUT_SYSTEM,
    Attachment,
    Output,
    TaskStatus,
)
from shared.codes import MUNICIPALITY_EXTENSION, ORGANISATION_KIND_SYSTEM, OrganisationKind
from shared.identifiers import FNR_SYSTEM, KOMMUNENUMMER_SYSTEM, ORGNR_SYSTEM


def org_reference(orgnr: str) -> dict[str, Any]:
    return {"type": "Organization", "identifier": {"system": ORGNR_SYSTEM, "value": orgnr}}


def organisation(orgnr: str, kind: OrganisationKind) -> dict[str, Any]:
    """A directory Organization of `kind` in Oslo (the municipality extension is required)."""
    municipality = {
        "url": MUNICIPALITY_EXTENSION,
        "valueCoding": {"system": KOMMUNENUMMER_SYSTEM, "code": MUNICIPALITY},
    }
    return {
        "resourceType": "Organization",
        "identifier": [{"system": ORGNR_SYSTEM, "value": orgnr}],
        "active": True,
        "type": [{"coding": [{"system": ORGANISATION_KIND_SYSTEM, "code": kind.value}]}],
        "name": f"{kind.value} benk {orgnr}",
        "address": [{"extension": [municipality], "city": "Oslo"}],
    }


def patient(fnr: str, gp_id: str) -> dict[str, Any]:
    """A child with a synthetic fødselsnummer whose GP is the Organization `gp_id`."""
    return {
        "resourceType": "Patient",
        "identifier": [{"system": FNR_SYSTEM, "value": fnr}],
        "active": True,
        "name": [{"family": "Nordmann", "given": ["Ola"]}],
        "generalPractitioner": [{"reference": f"Organization/{gp_id}"}],
    }


_NOTES = {
    Attachment.KOMMUNAL_KARTLEGGING: "Kartlegging i kommunen: samtaler med helsesykepleier og"
    " kommunepsykolog over tre måneder, tiltak i skolen prøvd uten bedring.",
    Attachment.BARNETS_STEMME: "Barnet forteller selv at det er redd for å gå på skolen og"
    " sover dårlig; ønsker hjelp til å få det bedre hjemme og på skolen.",
    Attachment.SOMATISK_VURDERING: "Somatisk undersøkt hos fastlege: normal vekst, ingen"
    " funn ved blodprøver; søvnvansker uten kjent somatisk årsak.",
}


def attachment(fnr: str, kind: Attachment) -> dict[str, Any]:
    """A referral attachment of `kind` about the child `fnr`, its text inline."""
    text = _NOTES[kind]
    return {
        "resourceType": "DocumentReference",
        "status": "current",
        "type": {"coding": [{"system": ATTACHMENT_SYSTEM, "code": kind.value}]},
        "subject": {"identifier": {"system": FNR_SYSTEM, "value": fnr}},
        "description": text,
        "content": [
            {
                "attachment": {
                    "contentType": "text/plain",
                    "data": base64.b64encode(text.encode()).decode(),
                    "title": kind.value,
                }
            }
        ],
    }


def referral(fnr: str, gp: str, bup: str, attachments: Sequence[str] = ()) -> dict[str, Any]:
    """The ServiceRequest a GP office `gp` sends to the BUP `bup` about the child `fnr`,
    pointing to its `attachments` (references); without them it is incomplete, which the
    server accepts with warnings."""
    service_request: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "priority": "routine",
        "subject": {"identifier": {"system": FNR_SYSTEM, "value": fnr}},
        "requester": org_reference(gp),
        "performer": [org_reference(bup)],
        "reasonCode": [{"text": "Angst og skolevegring over tid"}],
    }
    if attachments:
        service_request["supportingInfo"] = [{"reference": ref} for ref in attachments]
    return service_request


def referral_bundle(fnr: str, gp: str, bup: str) -> dict[str, Any]:
    """A transaction: the three attachments and the ServiceRequest that points to them."""
    entries: list[dict[str, Any]] = [
        {
            "fullUrl": f"urn:uuid:{uuid.uuid4()}",
            "resource": attachment(fnr, kind),
            "request": {"method": "POST", "url": "DocumentReference"},
        }
        for kind in ATTACHMENTS
    ]
    service_request = referral(fnr, gp, bup, [entry["fullUrl"] for entry in entries])
    entries.append(
        {
            "fullUrl": f"urn:uuid:{uuid.uuid4()}",
            "resource": service_request,
            "request": {"method": "POST", "url": "ServiceRequest"},
        }
    )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _output(kind: Output, value: Mapping[str, Any]) -> dict[str, Any]:
    return {"type": {"coding": [{"system": OUTPUT_SYSTEM, "code": kind.value}]}, **value}


def moved(task: Mapping[str, Any], status: TaskStatus, follow_up: str) -> dict[str, Any]:
    """`task` moved to `status` with what that change must carry; the server derives the
    businessStatus (step) and its dates."""
    changed = {k: v for k, v in task.items() if k != "businessStatus"}
    changed["status"] = status.value
    if status is TaskStatus.ACCEPTED:
        frist = (date.today() + timedelta(days=FRIST_DAYS)).isoformat()
        kept = [e for e in task.get("extension") or [] if e.get("url") != FRIST_EXT]
        changed["extension"] = [*kept, {"url": FRIST_EXT, "valueDate": frist}]
    if status is TaskStatus.COMPLETED:
        changed["output"] = [
            _output(Output.OPPFOLGINGSPLAN, {"valueString": "Kommunepsykolog hver 14. dag"}),
            _output(Output.ANSVARLIG_OPPFOLGING, {"valueReference": org_reference(follow_up)}),
        ]
    return changed
