"""What the consent administration API answers, as pydantic models.

The handlers (`admin_api.py`) build every answer through these models, and the OpenAPI
document (`openapi.py`) takes its response schemas from them, so what is documented is
what is sent. A model forbids fields it does not declare: an answer that grew a field
without its model fails to build, rather than going out undocumented.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.consent.domain.model import Authority, Status
from services.consent.records import ConsentRecord
from shared.access.decision import AccessDecision


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def json_body(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _resource(resource_type: str, what: str) -> Any:
    """A FHIR resource carried whole in an answer: the document names its type only (its
    content is FHIR R4's, read over `/fhir` as well)."""
    return Field(
        description=what,
        json_schema_extra={
            "type": "object",
            "required": ["resourceType"],
            "properties": {"resourceType": {"const": resource_type}, "id": {"type": "string"}},
        },
    )


def _instant(what: str) -> Any:
    return Field(description=what, json_schema_extra={"format": "date-time"})


class GrantorGroupAnswer(Answer):
    """Grantors of whom `need` ("all" or "one") must consent; any refusal rejects."""

    role: Literal["person", "child", "parents", "care-order-holder"]
    members: list[str] = Field(description="Patient, RelatedPerson or Organization references")
    need: Literal["all", "one"]


class AuthorityAnswer(Answer):
    """Who may consent for the child for this purpose on this date, under which rule, and
    what is missing before anyone can."""

    patient: str
    decidable: bool = Field(description="False until the rules can be applied (see missing)")
    rule: str
    legal_reference: str
    explanation: str
    age: int | None
    grantors: list[GrantorGroupAnswer]
    missing: list[str]
    child_view: Literal["mandatory", "required", "recommended", "not-applicable"]
    one_parent_must_hear_other: bool
    obligations: list[str]
    valid_until: dt.date | None = Field(
        description="The last day the grantors' authority covers (None: no end known)"
    )

    @classmethod
    def of(cls, authority: Authority) -> AuthorityAnswer:
        return cls.model_validate(
            {
                "patient": authority.patient,
                "decidable": authority.decidable,
                "rule": authority.rule,
                "legal_reference": authority.legal_reference,
                "explanation": authority.explanation,
                "age": authority.age,
                "grantors": [
                    {"role": g.role, "members": list(g.members), "need": g.need}
                    for g in authority.groups
                ],
                "missing": list(authority.missing),
                "child_view": authority.child_view,
                "one_parent_must_hear_other": authority.one_parent_must_hear_other,
                "obligations": list(authority.obligations),
                "valid_until": authority.valid_until,
            }
        )


class AuthorityAsOfAnswer(AuthorityAnswer):
    """Who could consent for the child at an earlier instant (`as_of`), as the directory
    stood then; the day is that instant's unless `date` was asked."""

    as_of: str = _instant("The instant asked, as it was asked")


class ConsentOutcome(Answer):
    """The stored consent, the status the rules gave it with the reasons and what is
    missing, the authority it was judged by, and the FHIR Consent that stores it."""

    id: str
    status: Status
    reasons: list[str]
    missing: list[str]
    consent: ConsentRecord
    authority: AuthorityAnswer
    fhir: dict[str, Any] = _resource("Consent", "The FHIR Consent as stored")


class ListedConsent(ConsentRecord):
    """A consent as the list shows it: the record, and the status the rules give it
    today next to the stored one."""

    model_config = ConfigDict(extra="forbid")

    effective_status: Status
    effective_reasons: list[str]


class ConsentList(Answer):
    """A child's consents the caller may see."""

    patient: str = Field(description="Patient/<id>")
    consents: list[ListedConsent]


class AccessDecisionAnswer(Answer):
    """Permit or deny, on which basis, why, and the obligations that come with it."""

    permit: bool
    decision: Literal["permit", "deny"]
    basis: str
    reasons: list[str]
    consents: list[str] = Field(description="The consents a permit rests on")
    obligations: list[str]
    legal_reference: str

    @classmethod
    def of(cls, decision: AccessDecision) -> AccessDecisionAnswer:
        return cls(
            permit=decision.permit,
            decision="permit" if decision.permit else "deny",
            basis=decision.basis,
            reasons=list(decision.reasons),
            consents=list(decision.consents),
            obligations=list(decision.obligations),
            legal_reference=decision.legal_reference,
        )


class AccessDecisionAsOfAnswer(AccessDecisionAnswer):
    """The decision as the directory and the consent records stood at an earlier instant
    (`as_of`), with the versions of the consents it rested on."""

    as_of: str = _instant("The instant asked, as it was asked")
    consent_versions: list[str] = Field(
        description="The versions (Consent/<id>/_history/<n>) of the consents the decision"
        " rested on, as they stood then"
    )


class DisclosureReporter(Answer):
    """Who reported: the organisation and the health person (HPR number)."""

    orgnr: str | None
    hpr: str | None


class DisclosureClosure(Answer):
    """When, why and by whom a §33 disclosure was closed: the reporting organisation and
    its health person, or the operator."""

    date: str = _instant("When it was closed")
    reason: str
    organization: str | None = Field(None, description="orgnr of the organisation closing it")
    practitioner: str | None = Field(None, description="HPR number of the person closing it")
    operator: str | None = Field(None, description="The operator's client, when it closed it")


class ListedDisclosure(Answer):
    """An hpl §33 disclosure: what was released (the versions reported), to whom, by whom
    and why, and whether it is still open."""

    id: str = Field(description="The id of the AuditEvent that records it")
    audit_event: str = Field(description="AuditEvent/<id>")
    basis: Literal["hpl-33"]
    patient: str = Field(description="Patient/<id>")
    recorded: str = _instant("When it was reported")
    reporter: DisclosureReporter
    recipients: list[str] = Field(description="orgnr of the barnevernstjeneste")
    resources: list[str] = Field(description="The versions released: Type/id/_history/<n>")
    reason: str
    status: Literal["open", "closed"] = Field(
        description="A closed disclosure releases nothing more to its recipient"
    )
    closed: DisclosureClosure | None


class DisclosureAnswer(Answer):
    """The recorded hpl §33 disclosure, and the AuditEvent that records it."""

    basis: Literal["hpl-33"]
    disclosure: ListedDisclosure
    audit_event: dict[str, Any] = _resource("AuditEvent", "The AuditEvent recording it")


class DisclosureList(Answer):
    """A child's hpl §33 disclosures the caller reported or received (the operator: all),
    open and closed, oldest first."""

    patient: str = Field(description="Patient/<id>")
    disclosures: list[ListedDisclosure]


class OperationOutcomeIssue(BaseModel):
    severity: Literal["fatal", "error", "warning", "information"]
    code: str = Field(description="FHIR issue-type code (invalid, forbidden, not-found …)")
    diagnostics: str
    expression: list[str] = Field(default_factory=list, description="Where (FHIRPath)")


class OperationOutcome(BaseModel):
    """Every error: a FHIR OperationOutcome whose issues say what went wrong."""

    resourceType: Literal["OperationOutcome"]
    issue: list[OperationOutcomeIssue] = Field(min_length=1)
