"""A consent record, and how it is stored as a FHIR `Consent`.

`ConsentRecord` is what the consent administration API reads and writes: the patient,
the purpose, the recipients and data covered, every grantor's signature (who collected it
and how), the child's view, and the status the rules gave it with their reasons. It is
stored as a FHIR R4 `Consent` (`to_fhir`), read back with `from_fhir`, so FHIR clients see
the same record the API does. Elements FHIR has no place for are project extensions under
https://fhir.barnebro.no/StructureDefinition/.
"""

from __future__ import annotations

import datetime as dt
from datetime import date
from typing import Any

from pydantic import BaseModel, Field

from services.consent.domain.model import (
    LEGAL_BASIS_SYSTEM,
    ChildView,
    ConsentFacts,
    ConsentFlags,
    Decision,
    Purpose,
    Signature,
    Status,
)
from shared.codes import (
    ACT_REASON_SYSTEM,
    CONSENT_PURPOSE_SYSTEM,
    DATA_CATEGORY_SYSTEM,
    ORGANISATION_KIND_SYSTEM,
    ROLE_SYSTEM,
)
from shared.fhir import extensions as ext
from shared.fhir.errors import error
from shared.identifiers import ORGNR_SYSTEM

SIGNATURE_EXT = ext.CONSENT_SIGNATURE.url
CHILD_VIEW_EXT = ext.CHILD_VIEW.url
CIRCUMSTANCE_EXT = ext.CONSENT_CIRCUMSTANCE.url
OTHER_PARENT_HEARD_EXT = ext.OTHER_PARENT_HEARD.url
STATUS_REASON_EXT = ext.STATUS_REASON.url
MISSING_EXT = ext.STATUS_MISSING.url
OBLIGATION_EXT = ext.OBLIGATION.url
VALID_UNTIL_EXT = ext.AUTHORITY_VALID_UNTIL.url
ENDED_BECAUSE_EXT = ext.ENDED_BECAUSE.url
WITHDRAWAL_EXT = ext.WITHDRAWAL.url
RECIPIENT_KIND_EXT = ext.RECIPIENT_KIND.url
RECIPIENT_ROLE_EXT = ext.RECIPIENT_ROLE.url
GRANTOR_ORGANIZATION_EXT = ext.GRANTOR_ORGANIZATION.url
COLLECTION_EXT = ext.CONSENT_COLLECTION.url
TO_BARNEVERN = "to-barnevern"
"""The circumstance the consent service records when a recipient is a barnevernstjeneste."""
CONSENT_SCOPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/consentscope"
PARTICIPATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"


class SignatureRecord(BaseModel):
    grantor: str
    decision: Decision
    method: str
    collected_by: str
    date: dt.date

    def facts(self) -> Signature:
        return Signature(self.grantor, self.decision, self.collected_by, self.method, self.date)


class ChildViewRecord(BaseModel):
    heard: bool
    statement: str = ""
    heard_by: str = ""
    date: dt.date | None = None
    not_heard_reason: str = ""
    objects: bool = False

    def facts(self) -> ChildView:
        return ChildView(
            self.heard,
            self.statement,
            self.heard_by,
            self.date,
            self.not_heard_reason,
            self.objects,
        )


class WithdrawalRecord(BaseModel):
    by: str
    date: dt.date
    reason: str = ""


class Recipients(BaseModel):
    organizations: list[str] = Field(default_factory=list)
    kinds: list[str] = Field(default_factory=list)
    roles: list[str] = Field(default_factory=list)


class ConsentRecord(BaseModel):
    """One consent (or refusal) as the administration API shows it."""

    id: str | None = None
    patient: str
    purpose: Purpose
    recipients: Recipients
    categories: list[str]
    purposes_of_use: list[str] = Field(default_factory=list)
    start: dt.date | None = None
    end: dt.date | None = None
    flags: list[str] = Field(default_factory=list)
    signatures: list[SignatureRecord]
    child_view: ChildViewRecord | None = None
    other_parent_heard: list[str] = Field(default_factory=list)
    collected_by_organization: str | None = None
    grantor_organizations: dict[str, str] = Field(default_factory=dict)
    """organisasjonsnummer of each Organization grantor (`Organization/<id>` → orgnr): the
    care-order holder sees, signs and withdraws the consent as itself."""
    recorded: str = ""
    status: Status = Status.PROPOSED
    rule: str = ""
    legal_reference: str = ""
    reasons: list[str] = Field(default_factory=list)
    missing: list[str] = Field(default_factory=list)
    obligations: list[str] = Field(default_factory=list)
    valid_until: dt.date | None = None
    ended_because: str | None = None
    withdrawal: WithdrawalRecord | None = None

    def consent_flags(self) -> ConsentFlags:
        return ConsentFlags(
            daily_care="daily-care" in self.flags,
            necessary_to_avoid_harm="necessary-to-avoid-harm" in self.flags,
            confidential_from_parents="confidential-from-parents" in self.flags,
            to_barnevern=TO_BARNEVERN in self.flags,
        )

    def facts(self) -> ConsentFacts:
        return ConsentFacts(
            purpose=self.purpose,
            flags=self.consent_flags(),
            signatures=tuple(s.facts() for s in self.signatures),
            child_view=self.child_view.facts() if self.child_view else None,
            other_parent_heard=tuple(self.other_parent_heard),
            withdrawn=self.withdrawal is not None,
            withdrawn_by=self.withdrawal.by if self.withdrawal else "",
            period_end=self.end,
        )

    @property
    def grant_end(self) -> date | None:
        """The last day the consent covers: its period's end or where the grantors'
        authority ends, whichever is earlier."""
        ends = [d for d in (self.end, self.valid_until) if d is not None]
        return min(ends) if ends else None


def _coding(system: str, code: str) -> dict[str, str]:
    return {"system": system, "code": code}


def _complex(url: str, parts: list[tuple[str, str, Any]]) -> dict[str, Any]:
    return {
        "url": url,
        "extension": [
            {"url": name, key: value} for name, key, value in parts if value not in (None, "")
        ],
    }


def to_fhir(record: ConsentRecord) -> dict[str, Any]:
    """The FHIR Consent that stores `record`."""
    extensions: list[dict[str, Any]] = []
    for signature in record.signatures:
        extensions.append(
            _complex(
                SIGNATURE_EXT,
                [
                    ("grantor", "valueReference", {"reference": signature.grantor}),
                    ("decision", "valueCode", signature.decision.value),
                    ("method", "valueCode", signature.method),
                    ("collectedBy", "valueString", signature.collected_by),
                    ("date", "valueDate", signature.date.isoformat()),
                ],
            )
        )
    view = record.child_view
    if view is not None:
        extensions.append(
            _complex(
                CHILD_VIEW_EXT,
                [
                    ("heard", "valueBoolean", view.heard),
                    ("statement", "valueString", view.statement),
                    ("heardBy", "valueString", view.heard_by),
                    ("date", "valueDate", view.date.isoformat() if view.date else None),
                    ("notHeardReason", "valueString", view.not_heard_reason),
                    ("objects", "valueBoolean", view.objects or None),
                ],
            )
        )
    extensions += [{"url": CIRCUMSTANCE_EXT, "valueCode": flag} for flag in record.flags]
    extensions += [
        {"url": OTHER_PARENT_HEARD_EXT, "valueReference": {"reference": parent}}
        for parent in record.other_parent_heard
    ]
    extensions += [{"url": STATUS_REASON_EXT, "valueString": reason} for reason in record.reasons]
    extensions += [{"url": MISSING_EXT, "valueString": missing} for missing in record.missing]
    extensions += [{"url": OBLIGATION_EXT, "valueCode": code} for code in record.obligations]
    if record.valid_until is not None:
        extensions.append({"url": VALID_UNTIL_EXT, "valueDate": record.valid_until.isoformat()})
    if record.ended_because:
        extensions.append({"url": ENDED_BECAUSE_EXT, "valueCode": record.ended_because})
    extensions += [
        _complex(
            GRANTOR_ORGANIZATION_EXT,
            [
                ("organization", "valueReference", {"reference": reference}),
                ("orgnr", "valueString", orgnr),
            ],
        )
        for reference, orgnr in sorted(record.grantor_organizations.items())
    ]
    if record.withdrawal is not None:
        extensions.append(
            _complex(
                WITHDRAWAL_EXT,
                [
                    ("by", "valueReference", {"reference": record.withdrawal.by}),
                    ("date", "valueDate", record.withdrawal.date.isoformat()),
                    ("reason", "valueString", record.withdrawal.reason),
                ],
            )
        )
    scope = "treatment" if record.purpose is Purpose.HELSEHJELP else "patient-privacy"
    refused = record.status is Status.REJECTED
    provision: dict[str, Any] = {"type": "deny" if refused else "permit"}
    period = {
        key: value.isoformat()
        for key, value in (("start", record.start), ("end", record.end))
        if value is not None
    }
    if period:
        provision["period"] = period
    recipients = record.recipients
    if recipients.organizations:
        provision["actor"] = [
            {
                "role": {"coding": [_coding(PARTICIPATION_SYSTEM, "IRCP")]},
                "reference": {"identifier": {"system": ORGNR_SYSTEM, "value": org}},
            }
            for org in recipients.organizations
        ]
    recipient_extensions = [
        {"url": RECIPIENT_KIND_EXT, "valueCoding": _coding(ORGANISATION_KIND_SYSTEM, kind)}
        for kind in recipients.kinds
    ] + [
        {"url": RECIPIENT_ROLE_EXT, "valueCoding": _coding(ROLE_SYSTEM, role)}
        for role in recipients.roles
    ]
    if recipient_extensions:
        provision["extension"] = recipient_extensions
    if record.purposes_of_use:
        provision["purpose"] = [_coding(ACT_REASON_SYSTEM, code) for code in record.purposes_of_use]
    provision["class"] = [_coding(DATA_CATEGORY_SYSTEM, code) for code in record.categories]
    resource: dict[str, Any] = {"resourceType": "Consent"}
    if record.id:
        resource["id"] = record.id
    if extensions:
        resource["extension"] = extensions
    resource |= {
        "status": record.status.value,
        "scope": {"coding": [_coding(CONSENT_SCOPE_SYSTEM, scope)]},
        "category": [{"coding": [_coding(CONSENT_PURPOSE_SYSTEM, record.purpose.value)]}],
        "patient": {"reference": record.patient},
    }
    if record.recorded:
        resource["dateTime"] = record.recorded
    answer = Decision.REFUSE if refused else Decision.CONSENT
    performers = list(dict.fromkeys(s.grantor for s in record.signatures if s.decision is answer))
    if performers:
        resource["performer"] = [{"reference": grantor} for grantor in performers]
    if record.collected_by_organization:
        resource["organization"] = [
            {"identifier": {"system": ORGNR_SYSTEM, "value": record.collected_by_organization}}
        ]
    if record.rule:
        resource["policyRule"] = {
            "coding": [_coding(LEGAL_BASIS_SYSTEM, record.rule)],
            "text": record.legal_reference,
        }
    verification = [_verification(signature) for signature in record.signatures]
    if verification:
        resource["verification"] = verification
    resource["provision"] = provision
    return resource


def _verification(signature: SignatureRecord) -> dict[str, Any]:
    """A grantor's answer as `Consent.verification`: with whom, when, and (extension) who
    collected it and how; the signature extension remains the record the rules read."""
    entry: dict[str, Any] = {
        "extension": [
            _complex(
                COLLECTION_EXT,
                [
                    ("decision", "valueCode", signature.decision.value),
                    ("method", "valueCode", signature.method),
                    ("collectedBy", "valueString", signature.collected_by),
                ],
            )
        ],
        "verified": True,
    }
    if signature.grantor.startswith(("Patient/", "RelatedPerson/")):
        entry["verifiedWith"] = {"reference": signature.grantor}
    entry["verificationDate"] = signature.date.isoformat()
    return entry


def _extensions(node: dict[str, Any], url: str) -> list[dict[str, Any]]:
    return [e for e in node.get("extension") or [] if e.get("url") == url]


def _part(extension: dict[str, Any], name: str) -> Any:
    for part in extension.get("extension") or []:
        if part.get("url") == name:
            for key, value in part.items():
                if key.startswith("value"):
                    return value
    return None


def _reference(value: Any) -> str:
    return str((value or {}).get("reference") or "")


def _day(value: Any) -> date | None:
    return date.fromisoformat(value) if isinstance(value, str) else None


def from_fhir(resource: dict[str, Any]) -> ConsentRecord:
    """The record a stored Consent holds (the inverse of `to_fhir`)."""
    signatures = [
        SignatureRecord(
            grantor=_reference(_part(e, "grantor")),
            decision=Decision(_part(e, "decision")),
            method=str(_part(e, "method") or ""),
            collected_by=str(_part(e, "collectedBy") or ""),
            date=_day(_part(e, "date")) or date.min,
        )
        for e in _extensions(resource, SIGNATURE_EXT)
    ]
    views = _extensions(resource, CHILD_VIEW_EXT)
    child_view = None
    if views:
        view = views[0]
        child_view = ChildViewRecord(
            heard=bool(_part(view, "heard")),
            statement=str(_part(view, "statement") or ""),
            heard_by=str(_part(view, "heardBy") or ""),
            date=_day(_part(view, "date")),
            not_heard_reason=str(_part(view, "notHeardReason") or ""),
            objects=bool(_part(view, "objects")),
        )
    withdrawals = _extensions(resource, WITHDRAWAL_EXT)
    withdrawal = None
    if withdrawals:
        withdrawal = WithdrawalRecord(
            by=_reference(_part(withdrawals[0], "by")),
            date=_day(_part(withdrawals[0], "date")) or date.min,
            reason=str(_part(withdrawals[0], "reason") or ""),
        )
    provision = resource.get("provision") or {}
    period = provision.get("period") or {}
    organizations = [
        str(actor["reference"]["identifier"]["value"])
        for actor in provision.get("actor") or []
        if (actor.get("reference") or {}).get("identifier", {}).get("system") == ORGNR_SYSTEM
    ]
    valid_until = [e["valueDate"] for e in _extensions(resource, VALID_UNTIL_EXT)]
    ended = [e["valueCode"] for e in _extensions(resource, ENDED_BECAUSE_EXT)]
    collector = [
        str(org["identifier"]["value"])
        for org in resource.get("organization") or []
        if (org.get("identifier") or {}).get("system") == ORGNR_SYSTEM
    ]
    policy = resource.get("policyRule") or {}
    rule_codes = [c.get("code", "") for c in policy.get("coding") or []]
    return ConsentRecord(
        id=resource.get("id"),
        patient=_reference(resource.get("patient")),
        purpose=Purpose(resource["category"][0]["coding"][0]["code"]),
        recipients=Recipients(
            organizations=organizations,
            kinds=[e["valueCoding"]["code"] for e in _extensions(provision, RECIPIENT_KIND_EXT)],
            roles=[e["valueCoding"]["code"] for e in _extensions(provision, RECIPIENT_ROLE_EXT)],
        ),
        categories=[c["code"] for c in provision.get("class") or []],
        purposes_of_use=[c["code"] for c in provision.get("purpose") or []],
        start=_day(period.get("start")),
        end=_day(period.get("end")),
        flags=[e["valueCode"] for e in _extensions(resource, CIRCUMSTANCE_EXT)],
        signatures=signatures,
        child_view=child_view,
        other_parent_heard=[
            _reference(e["valueReference"]) for e in _extensions(resource, OTHER_PARENT_HEARD_EXT)
        ],
        collected_by_organization=collector[0] if collector else None,
        grantor_organizations={
            _reference(_part(e, "organization")): str(_part(e, "orgnr"))
            for e in _extensions(resource, GRANTOR_ORGANIZATION_EXT)
        },
        recorded=str(resource.get("dateTime") or ""),
        status=Status(resource["status"]),
        rule=rule_codes[0] if rule_codes else "",
        legal_reference=str(policy.get("text") or ""),
        reasons=[e["valueString"] for e in _extensions(resource, STATUS_REASON_EXT)],
        missing=[e["valueString"] for e in _extensions(resource, MISSING_EXT)],
        obligations=[e["valueCode"] for e in _extensions(resource, OBLIGATION_EXT)],
        valid_until=_day(valid_until[0]) if valid_until else None,
        ended_because=ended[0] if ended else None,
        withdrawal=withdrawal,
    )


def patient_id_of(reference: str) -> str:
    kind, _, patient_id = reference.partition("/")
    if kind != "Patient" or not patient_id:
        raise error(400, "invalid", f"{reference!r} is not a Patient reference", "patient")
    return patient_id
