"""The resource types the consent service owns: Consent and AuditEvent.

Both are written by the service itself, never over FHIR REST: a Consent's status is
computed by the rules (through the consent administration API), and an AuditEvent records
a disclosure made elsewhere, or a change to what access rests on (the register of
organisations, parental responsibility, care orders). Consents are patient information
(category `consent`), released like any other; AuditEvents need their own scope
(`system/AuditEvent.rs`, which a wildcard scope does not give) and show an organisation
only its own accesses (category `audit`: it is their agent); the operator sees every one,
lists the emergency accesses awaiting review (`review=pending`) and records the review
(`$review`).

Every stored version of a Consent says who made that change and what it was, in
`meta.extension` (`changed-by`): the organisation, the health person (HPR) or the person
logged in as themselves (`fhirUser`), or barnebro itself for a reassessment; so the
history (`GET Consent/{id}/_history`, vread) shows who changed what, and when
(`meta.lastUpdated`).
"""

from __future__ import annotations

from collections.abc import Iterator
from types import MappingProxyType
from typing import Any

import orjson

from services.consent.domain.model import LEGAL_BASIS_SYSTEM, LegalBasis
from services.consent.records import VALID_UNTIL_EXT, from_fhir
from shared.access.decision import OWN_AUDIT
from shared.codes import AUDIT_CATEGORY, CONSENT_PURPOSE_SYSTEM, DATA_CATEGORY_SYSTEM, DataCategory
from shared.directory_client import refuse_her_id_searches
from shared.fhir import extensions as ext
from shared.fhir.definitions import Change, EventSpec, Lookup, ResourceDefinition, WriteContext
from shared.fhir.errors import Issue, error
from shared.fhir.parameters import OperationParameter
from shared.fhir.profiles import ProfileRules
from shared.fhir.references import reference_target
from shared.fhir.search_params import ParamType, SearchParam, extension_values, walk
from shared.fhir.search_query import SearchQuery
from shared.identifiers import HPR_SYSTEM, ORGNR_SYSTEM
from shared.transport.wire import FhirRequest

CONSENT_ADMIN = "the consent administration API (/consent/v1)"
AUDIT_WRITER = "barnebro itself: one AuditEvent for every disclosure decision"
HPL33_SUBTYPE = LegalBasis.HPL_33.value
EMERGENCY_BASIS = "emergency"
REVIEW_EXT = ext.EMERGENCY_REVIEW.url
DISCLOSURE_CLOSED_EXT = ext.DISCLOSURE_CLOSED.url
REVIEW_OPERATION = "$review"
REVIEW_CONCLUSIONS = ("justified", "unjustified")
REVIEW_PARAMETERS = (
    OperationParameter("conclusion", "code", "justified or unjustified", min=1),
    OperationParameter("reviewer", "string", "Who reviewed the access (at most 200)", min=1),
    OperationParameter("note", "string", "What the review found (at most 2000)"),
    OperationParameter("return", "AuditEvent", "The AuditEvent with its review", min=1, use="out"),
)
AUDIT_DETAIL_BASIS = "basis"
WITHHELD_PATIENT = "withheld-patient"
WITHHELD = "withheld"
DENIED = {"type": "decision", "valueString": "deny"}
OPERATOR_SEARCHES = frozenset({"withheld-patient", "withheld-basis"})


def own_view(event: dict[str, Any]) -> dict[str, Any]:
    """An AuditEvent as the organisation whose access it records reads it: what it was
    refused shows only that it was refused (`withheld`), exactly alike for a resource it
    may not see and one that does not exist."""
    for entity in event.get("entity") or []:
        if DENIED not in (entity.get("detail") or []):
            continue
        entity.pop("description", None)
        entity["detail"] = [{"type": AUDIT_DETAIL_BASIS, "valueString": WITHHELD}, DENIED]
    return event


TOKEN, REFERENCE = ParamType.TOKEN, ParamType.REFERENCE
CHANGED_BY_EXT = ext.CHANGED_BY.url
CHANGES = {
    "consent-create": "recorded",
    "consent-sign": "answered",
    "consent-withdraw": "withdrawn",
}
"""The administration API's operations → what the change to the consent was."""


def changed_by(request: FhirRequest) -> dict[str, Any]:
    """Who makes this change to a consent, and what it is: `change` (recorded, answered,
    withdrawn, reassessed), `organization` (orgnr), `practitioner` (HPR number),
    `person` (the `fhirUser` acting as themselves) or `system` (barnebro itself)."""
    caller = request.caller
    parts: list[dict[str, Any]] = []
    change = (
        "reassessed" if caller.credential == "service" else CHANGES.get(request.operation or "")
    )
    if change:
        parts.append({"url": "change", "valueCode": change})
    if caller.credential == "service":
        parts.append({"url": "system", "valueString": "barnebro"})
    if caller.fhir_user:
        parts.append({"url": "person", "valueReference": {"reference": caller.fhir_user}})
    if caller.orgnr and caller.credential != "service":
        identifier = {"system": ORGNR_SYSTEM, "value": caller.orgnr}
        parts.append({"url": "organization", "valueIdentifier": identifier})
    if caller.hpr and not caller.fhir_user:
        identifier = {"system": HPR_SYSTEM, "value": caller.hpr}
        parts.append({"url": "practitioner", "valueIdentifier": identifier})
    return {"url": CHANGED_BY_EXT, "extension": parts}


def _patient_id(reference: Any) -> str | None:
    target = reference_target(reference)
    return target[1] if target and target[0] == "Patient" else None


class ConsentDefinition(ResourceDefinition):
    resource_type = "Consent"
    documentation = (
        "A consent (or refusal) under pbrl §4-4 / hpl §22, with grantors, recipients, data"
        " categories and the rule applied; written through the consent administration API"
    )
    written_by = CONSENT_ADMIN
    data_category = DataCategory.CONSENT.value
    profile = ProfileRules(  # as `records.to_fhir` writes every Consent
        required=("category", "provision"),
        bindings=(
            ("category", CONSENT_PURPOSE_SYSTEM),
            ("provision.class", DATA_CATEGORY_SYSTEM),
            ("policyRule", LEGAL_BASIS_SYSTEM),
        ),
    )
    search_params = (
        SearchParam("patient", REFERENCE, ("patient",), "The child", targets=("Patient",)),
        SearchParam("status", TOKEN, ("status",), "proposed | active | rejected | inactive"),
        SearchParam("purpose", ParamType.TOKEN, ("category",), "What the consent is for"),
        SearchParam("data", ParamType.TOKEN, ("provision.class",), "Data categories covered"),
        SearchParam("period", ParamType.DATE, ("provision.period",), "Period covered"),
        SearchParam("date", ParamType.DATE, ("dateTime",), "When it was recorded"),
        SearchParam(
            "actor",
            ParamType.REFERENCE,
            ("provision.actor.reference",),
            "A recipient organisation (actor:identifier=<orgnr system>|<orgnr>)",
            targets=("Organization",),
        ),
        SearchParam(
            "valid-until",
            ParamType.DATE,
            documentation="The last day the grantors' authority covers",
            extract=extension_values(VALID_UNTIL_EXT, "valueDate"),
        ),
    )

    def patient_of(self, resource: dict[str, Any], resource_id: str) -> str | None:
        return _patient_id(resource.get("patient"))

    async def check_write(self, resource: dict[str, Any], context: WriteContext) -> list[Issue]:
        """Each version says who made it (`changed-by` in `meta.extension`)."""
        meta = dict(resource.get("meta") or {})
        others = [e for e in meta.get("extension") or [] if e.get("url") != CHANGED_BY_EXT]
        meta["extension"] = [*others, changed_by(context.request)]
        resource["meta"] = meta
        return []

    def parties(self, resource: dict[str, Any]) -> list[str]:
        """Recipient organisations and organisations that are grantors (the holder of a
        care order) see the consent that names them."""
        record = from_fhir(resource)
        return sorted({*record.recipients.organizations, *record.grantor_organizations.values()})

    async def check_search(self, query: SearchQuery, request: FhirRequest, lookup: Lookup) -> None:
        """A recipient is searched by organisasjonsnummer, as consents store it."""
        refuse_her_id_searches(query)

    def events(self, change: Change) -> list[EventSpec]:
        after = from_fhir(change.after) if change.after else None
        before = from_fhir(change.before) if change.before else None
        if after is None:
            return [EventSpec("deleted", {})]
        data = {
            "status": after.status.value,
            "purpose": after.purpose.value,
            "categories": after.categories,
        }
        if before is not None and before.status == after.status:
            return [EventSpec("updated", data)]
        name = {
            "active": "granted",
            "rejected": "refused",
            "proposed": "proposed",
        }.get(after.status.value, after.ended_because or "inactive")
        if name == "authority-changed":
            data["reasons"] = after.reasons
        return [EventSpec(name, data)]


def _audit_patients(resource: dict[str, Any]) -> Iterator[Any]:
    for what in walk(resource, ["entity", "what"]):
        if _patient_id(what):
            yield what


def _withheld_patients(resource: dict[str, Any]) -> Iterator[Any]:
    for detail in walk(resource, ["entity", "detail"]):
        if isinstance(detail, dict) and detail.get("type") == WITHHELD_PATIENT:
            yield {"reference": detail.get("valueString")}


def _entity_bases(resource: dict[str, Any]) -> Iterator[tuple[Any, bool]]:
    """Each entity's basis, and whether the entity was withheld."""
    for entity in walk(resource, ["entity"]):
        details = entity.get("detail") if isinstance(entity, dict) else None
        if not isinstance(details, list):
            continue
        withheld = DENIED in details
        for detail in details:
            if isinstance(detail, dict) and detail.get("type") == AUDIT_DETAIL_BASIS:
                yield detail.get("valueString"), withheld


def _audit_bases(resource: dict[str, Any]) -> Iterator[Any]:
    """The basis of what was released; what was withheld is indexed as `withheld` alone,
    as its own records show it: why (not seen, or not there) is the operator's to search."""
    for basis, withheld in _entity_bases(resource):
        yield WITHHELD if withheld else basis


def _withheld_bases(resource: dict[str, Any]) -> Iterator[Any]:
    for basis, withheld in _entity_bases(resource):
        if withheld:
            yield basis


def review_of(resource: dict[str, Any]) -> dict[str, Any] | None:
    """The operator's review of an emergency access, once recorded."""
    return next((e for e in resource.get("extension") or [] if e.get("url") == REVIEW_EXT), None)


def _closed(resource: dict[str, Any]) -> bool:
    """Whether an hpl §33 disclosure has been closed (`disclosure-closed`)."""
    return any(e.get("url") == DISCLOSURE_CLOSED_EXT for e in resource.get("extension") or [])


def _review_state(resource: dict[str, Any]) -> Iterator[str]:
    """`pending` for an emergency access not yet reviewed, else the review's conclusion."""
    if EMERGENCY_BASIS not in set(_audit_bases(resource)):
        return
    review = review_of(resource)
    if review is None:
        yield "pending"
        return
    for part in review.get("extension") or []:
        if part.get("url") == "conclusion":
            yield str(part.get("valueCode"))


class AuditEventDefinition(ResourceDefinition):
    resource_type = "AuditEvent"
    documentation = (
        "A decision that released or withheld patient information, an emergency access or"
        " an hpl §33 disclosure; readable only with system/AuditEvent.rs"
    )
    written_by = AUDIT_WRITER
    data_category = AUDIT_CATEGORY
    update_create = True
    operations = (("review", "https://fhir.barnebro.no/OperationDefinition/review"),)
    operation_parameters = MappingProxyType({"review": REVIEW_PARAMETERS})
    search_params = (
        SearchParam(
            "patient",
            ParamType.REFERENCE,
            documentation="A patient whose information was released",
            targets=("Patient",),
            extract=_audit_patients,
        ),
        SearchParam(
            "withheld-patient",
            ParamType.REFERENCE,
            documentation="A patient whose information was withheld (the operator's only)",
            targets=("Patient",),
            extract=_withheld_patients,
            includable=False,
        ),
        SearchParam(
            "agent",
            ParamType.TOKEN,
            ("agent.who.identifier",),
            "The organisation (orgnr) or person acting",
        ),
        SearchParam(
            "agent-person",
            ParamType.REFERENCE,
            ("agent.who",),
            "A person acting for themselves (RelatedPerson or Patient)",
            targets=("RelatedPerson", "Patient"),
        ),
        SearchParam(
            "review",
            ParamType.TOKEN,
            documentation="Emergency accesses: pending, or the review's conclusion"
            " (justified | unjustified)",
            extract=_review_state,
        ),
        SearchParam("date", ParamType.DATE, ("recorded",), "When it happened"),
        SearchParam("outcome", ParamType.TOKEN, ("outcome",), "0 released, 4 withheld"),
        SearchParam("subtype", ParamType.TOKEN, ("subtype",), "Interaction, or hpl-33"),
        SearchParam(
            "basis",
            ParamType.TOKEN,
            documentation="Basis of the decision: consent, own-data, emergency, hpl-33, …;"
            " withheld for what was not released",
            extract=_audit_bases,
        ),
        SearchParam(
            "withheld-basis",
            ParamType.TOKEN,
            documentation="Why something was withheld: none, not-found, … (the operator's only)",
            extract=_withheld_bases,
        ),
    )

    def patient_of(self, resource: dict[str, Any], resource_id: str) -> str | None:
        for what in _audit_patients(resource):
            return _patient_id(what)
        return None

    async def check_search(self, query: SearchQuery, request: FhirRequest, lookup: Lookup) -> None:
        """Whom a refused access concerned is the operator's to search, not the refused
        organisation's."""
        named = sorted({c.param.name for c in query.criteria} & OPERATOR_SEARCHES)
        if named and request.caller.credential not in ("operator", "service"):
            raise error(403, "forbidden", f"{', '.join(named)}: searched only by the operator")

    def shaped(self, body: bytes, obligations: tuple[str, ...]) -> bytes:
        if OWN_AUDIT not in obligations:
            return body
        return orjson.dumps(own_view(orjson.loads(body)))

    def parties(self, resource: dict[str, Any]) -> list[str]:
        """The organisations that acted (requestors): each sees the records of its own
        accesses."""
        return sorted(
            {
                str(agent["who"]["identifier"]["value"])
                for agent in resource.get("agent") or []
                if agent.get("requestor") is True
                and ((agent.get("who") or {}).get("identifier") or {}).get("system") == ORGNR_SYSTEM
            }
        )

    def events(self, change: Change) -> list[EventSpec]:
        """Only what someone must act on: emergency access and §33 disclosures, the review
        of an emergency access and the closing of a disclosure."""
        if change.after is not None and change.before is not None:
            if review_of(change.after) is not None and review_of(change.before) is None:
                return [EventSpec("emergency-reviewed", {})]
            if _closed(change.after) and not _closed(change.before):
                return [EventSpec("opplysningsplikt-closed", {})]
            return []
        if change.after is None:
            return []
        bases = set(_audit_bases(change.after))
        subtypes = {c.get("code") for c in walk(change.after, ["subtype"]) if isinstance(c, dict)}
        if HPL33_SUBTYPE in subtypes:
            return [EventSpec("opplysningsplikt-disclosure", {})]
        if EMERGENCY_BASIS in bases:
            return [EventSpec("emergency-access", {"review": "required"})]
        return []


def consent_definitions() -> list[ResourceDefinition]:
    return [ConsentDefinition(), AuditEventDefinition()]
