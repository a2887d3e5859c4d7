"""The consent administration API: JSON in, JSON out, for the barnevern fagsystem and
administrative front ends.

The gateway serves it under `/consent/v1` and forwards each call as a service operation
(`FhirRequest.operation`). Input is validated strictly (unknown fields, malformed
references and codes are a 400 naming the field); rule violations are a 422 that says who
has the authority; nothing is stored half-way. `openapi.py` documents these models.

Who may call each route is the permission table's (`shared.access.permissions`, the
`consent API` rows). Every route about a child first asks the directory whether the
caller has a relation to it (`DirectoryClient.require_relation`): without one, the child
answers exactly as one that is not registered, so nothing about who may consent (a care
order, the parents, the child's age) or what was consented is learnt without a basis, not
even from a consent the rules refuse. An organisation that starts its part in a child's
care before it has any record of it declares so first (`POST Patient/{id}/$start-care`).

`/authority` (query parameter `as_of`) and `/decisions` (body field `as_of`) also answer
as the directory and the consent records stood at an earlier instant, to answer a
complaint (`services.consent.as_of`); the relation is still asked as of now.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Awaitable, Callable
from datetime import date
from typing import Annotated, Any, Literal, TypeVar

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from services.consent.access_state import as_seen_by
from services.consent.answers import (
    AccessDecisionAnswer,
    AccessDecisionAsOfAnswer,
    AuthorityAnswer,
    AuthorityAsOfAnswer,
    ConsentList,
    ConsentOutcome,
    DisclosureAnswer,
    DisclosureList,
    ListedConsent,
    ListedDisclosure,
)
from services.consent.as_of import (
    INSTANT,
    Situation,
    child_at,
    day_of,
    parse_as_of,
    situation_at,
)
from services.consent.audit_events import disclosure_json
from services.consent.directory import DirectoryReader
from services.consent.disclosures import Disclosures
from services.consent.domain.authority import ADULT_AGE, age_on, who_may_consent
from services.consent.domain.model import (
    Authority,
    ChildFacts,
    ConsentFlags,
    Decision,
    Purpose,
)
from services.consent.handlers import OPEN_STATUSES, ConsentHandlers, Outcome, reassessed
from services.consent.records import (
    ChildViewRecord,
    ConsentRecord,
    Recipients,
    SignatureRecord,
    from_fhir,
)
from shared.access.decision import (
    AccessContext,
    AccessDecision,
    ResourceFacts,
    decide,
)
from shared.access.view import ConsentView
from shared.auth.scopes import authorize
from shared.codes import (
    DEFAULT_PURPOSE_OF_USE,
    HEALTH_KINDS,
    PURPOSES_OF_USE,
    ROLES,
    DataCategory,
    OrganisationKind,
)
from shared.fhir.answers import not_found
from shared.fhir.errors import FhirError, Issue, error
from shared.fhir.resources import ID_PATTERN
from shared.transport.wire import Caller, Emergency, FhirRequest, FhirResponse

ID = r"[A-Za-z0-9\-\.]{1,64}"
PATIENT = rf"^Patient/{ID}$"
GRANTOR = rf"^(Patient|RelatedPerson|Organization)/{ID}$"
RELATED_PERSON = rf"^RelatedPerson/{ID}$"
RESOURCE = rf"^[A-Z][A-Za-z]{{1,63}}/{ID}$"
ORGNR = r"^\d{9}$"
ACT_REASON = "^(" + "|".join(sorted(PURPOSES_OF_USE)) + ")$"
PURPOSE_OF_USE_SCHEMA: dict[str, Any] = {"type": "string", "enum": sorted(PURPOSES_OF_USE)}
JSON = "application/json"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _items(schema: dict[str, Any]) -> dict[str, Any]:
    """What a list's validator checks of each item, for the OpenAPI document."""
    return {"items": {"type": "string", **schema}}


def _past_instant(text: str) -> str:
    parse_as_of(text)  # a ValueError says what is wrong
    return text


AsOf = Annotated[
    str,
    AfterValidator(_past_instant),
    Field(json_schema_extra={"format": "date-time", "pattern": f"^{INSTANT.pattern}$"}),
]
"""An earlier instant to answer as of (`services.consent.as_of.parse_as_of`): a date-time
with seconds and a time zone, not in the future; kept as given, as the answer repeats it."""


class SignatureInput(Strict):
    """One grantor's answer and how it was collected."""

    grantor: str = Field(pattern=GRANTOR, description="Patient, RelatedPerson or Organization")
    decision: Decision = Field(Decision.CONSENT, description="consent or refuse")
    method: Literal["in-person", "phone", "digital"]
    collected_by: str = Field(
        min_length=1, max_length=200, description="Who collected it (name, HPR or reference)"
    )
    date: dt.date | None = Field(
        None, description="Defaults to today; not after today nor before the child's birth"
    )

    def record(self, today: dt.date) -> SignatureRecord:
        return SignatureRecord(
            grantor=self.grantor,
            decision=self.decision,
            method=self.method,
            collected_by=self.collected_by,
            date=self.date or today,
        )


class ChildViewInput(Strict):
    """The child's view (medvirkning): heard, what was said and by whom; or why not."""

    heard: bool
    statement: str = Field("", max_length=4000)
    heard_by: str = Field("", max_length=200)
    date: dt.date | None = None
    not_heard_reason: str = Field("", max_length=1000)

    def record(self) -> ChildViewRecord:
        return ChildViewRecord(**self.model_dump())


class RecipientsInput(Strict):
    organizations: list[str] = Field(
        default_factory=list,
        max_length=50,
        description="organisasjonsnummer of recipients",
        json_schema_extra=_items({"pattern": ORGNR}),
    )
    kinds: list[OrganisationKind] = Field(default_factory=list, max_length=20)
    roles: list[str] = Field(
        default_factory=list, max_length=20, json_schema_extra=_items({"enum": sorted(ROLES)})
    )

    @model_validator(mode="after")
    def _codes(self) -> RecipientsInput:
        bad_orgs = [o for o in self.organizations if not (len(o) == 9 and o.isdigit())]
        if bad_orgs:
            raise ValueError(f"organisasjonsnummer must be 9 digits: {bad_orgs}")
        unknown = sorted(set(self.roles) - ROLES)
        if unknown:
            raise ValueError(f"unknown care roles {unknown}; expected some of {sorted(ROLES)}")
        return self


class ConsentInput(Strict):
    """A new consent (or refusal) with at least one grantor's answer."""

    patient: str = Field(pattern=PATIENT)
    purpose: Purpose
    recipients: RecipientsInput = Field(default_factory=RecipientsInput)
    categories: list[DataCategory] = Field(min_length=1, max_length=6)
    purposes_of_use: list[str] = Field(
        default_factory=list,
        max_length=10,
        description="codes of HL7's GeneralPurposeOfUse value set (v3-ActReason); empty: any",
        json_schema_extra=_items(PURPOSE_OF_USE_SCHEMA),
    )
    start: dt.date | None = None
    end: dt.date | None = None
    daily_care: bool = False
    necessary_to_avoid_harm: bool = False
    confidential_from_parents: bool = False
    signatures: list[SignatureInput] = Field(min_length=1, max_length=10)
    child_view: ChildViewInput | None = None
    other_parent_heard: list[str] = Field(
        default_factory=list, max_length=4, json_schema_extra=_items({"pattern": RELATED_PERSON})
    )

    @model_validator(mode="after")
    def _consistent(self) -> ConsentInput:
        if self.start and self.end and self.end < self.start:
            raise ValueError("end is before start")
        if any(not _matches(ACT_REASON, code) for code in self.purposes_of_use):
            raise ValueError(
                "purposes_of_use are codes of HL7's GeneralPurposeOfUse value set: "
                + ", ".join(sorted(PURPOSES_OF_USE))
            )
        if any(not _matches(RELATED_PERSON, p) for p in self.other_parent_heard):
            raise ValueError("other_parent_heard lists RelatedPerson/<id> references")
        grantors = [signature.grantor for signature in self.signatures]
        if len(set(grantors)) != len(grantors):
            raise ValueError("each grantor answers once: signatures name a grantor twice")
        sharing = self.purpose is not Purpose.HELSEHJELP
        recipients = self.recipients
        if sharing and not (recipients.organizations or recipients.kinds or recipients.roles):
            raise ValueError("a consent to share must name its recipients")
        return self

    def record(self, today: date) -> ConsentRecord:
        flags = [
            name
            for name, chosen in (
                ("daily-care", self.daily_care),
                ("necessary-to-avoid-harm", self.necessary_to_avoid_harm),
                ("confidential-from-parents", self.confidential_from_parents),
            )
            if chosen
        ]
        return ConsentRecord(
            patient=self.patient,
            purpose=self.purpose,
            recipients=Recipients(
                organizations=self.recipients.organizations,
                kinds=[k.value for k in self.recipients.kinds],
                roles=self.recipients.roles,
            ),
            categories=[c.value for c in self.categories],
            purposes_of_use=self.purposes_of_use,
            start=self.start,
            end=self.end,
            flags=flags,
            signatures=[s.record(today) for s in self.signatures],
            child_view=self.child_view.record() if self.child_view else None,
            other_parent_heard=self.other_parent_heard,
        )


class SignInput(SignatureInput):
    """Another grantor's answer to a proposed consent (e.g. the second parent)."""

    other_parent_heard: list[str] = Field(default_factory=list, max_length=4)
    child_view: ChildViewInput | None = None


class HearingInput(Strict):
    """That the holder of parental responsibility who did not sign was heard."""

    parent: str = Field(pattern=RELATED_PERSON, description="RelatedPerson/<id> who was heard")


class ObjectionInput(Strict):
    """The child objects to the consent: its refusal where it is a grantor, otherwise its
    view, which the grantors must weigh."""

    statement: str = Field(min_length=1, max_length=4000, description="What the child said")
    heard_by: str = Field(min_length=1, max_length=200, description="Who heard the child")
    method: Literal["in-person", "phone", "digital"] = "in-person"
    date: dt.date | None = Field(
        None, description="Defaults to today; not after today nor before the child's birth"
    )

    def record(self) -> ChildViewRecord:
        return ChildViewRecord(
            heard=True,
            statement=self.statement,
            heard_by=self.heard_by,
            date=self.date,
            objects=True,
        )


class WithdrawInput(Strict):
    by: str = Field(pattern=GRANTOR, description="The grantor withdrawing")
    reason: str = Field("", max_length=1000)


class ActorInput(Strict):
    orgnr: str | None = Field(None, pattern=ORGNR)
    kind: OrganisationKind | None = None
    hpr: str | None = Field(None, max_length=20)
    fhir_user: str | None = Field(None, pattern=RELATED_PERSON)
    roles: list[str] = Field(default_factory=list, max_length=20)


class AuthorityQuery(BaseModel):
    """The question of `GET /authority`, as query parameters (others are ignored)."""

    patient: str = Field(pattern=PATIENT, description="Patient/<id>")
    purpose: Purpose
    date: dt.date | None = Field(None, description="Default: today (with as_of: that day)")
    daily_care: bool = False
    necessary_to_avoid_harm: bool = False
    confidential_from_parents: bool = False
    to_barnevern: bool = Field(
        False, description="The consent would share with a barnevernstjeneste"
    )
    as_of: AsOf | None = Field(
        None,
        description="Answer as the directory stood at this past date-time (with a time"
        " zone; a + is written %2B): to answer a complaint. The answer repeats it",
    )


class DecisionInput(Strict):
    """Why can or can't this actor see this category of information about this patient?"""

    actor: ActorInput
    patient: str = Field(pattern=PATIENT)
    category: DataCategory
    action: Literal["read", "search"] = "read"
    purpose_of_use: str = Field(
        DEFAULT_PURPOSE_OF_USE, pattern=ACT_REASON, json_schema_extra=PURPOSE_OF_USE_SCHEMA
    )
    emergency_reason: str | None = Field(None, max_length=1000)
    author: str | None = Field(
        None, pattern=ORGNR, description="orgnr of the organisation that wrote the information"
    )
    as_of: AsOf | None = Field(
        None,
        description="Decide as the directory and the consent records stood at this past"
        " date-time (with a time zone, e.g. 2026-03-01T12:00:00Z): to answer a complaint",
    )


class DisclosureInput(Strict):
    """An hpl §33 disclosure: a health organisation informs barnevern without consent. The
    version of each resource the reporter reads now is what is disclosed, and only that."""

    patient: str = Field(pattern=PATIENT)
    recipient: str = Field(pattern=ORGNR, description="orgnr of the barnevernstjeneste")
    resources: list[str] = Field(
        min_length=1,
        max_length=50,
        description="Type/id; the current version is disclosed",
        json_schema_extra=_items({"pattern": RESOURCE}),
    )
    reason: str = Field(min_length=1, max_length=2000)

    @model_validator(mode="after")
    def _references(self) -> DisclosureInput:
        if any(not _matches(RESOURCE, r) for r in self.resources):
            raise ValueError("resources lists Type/id references")
        return self


class CloseDisclosureInput(Strict):
    """Why an hpl §33 disclosure is closed (e.g. reported in error, the case is closed)."""

    reason: str = Field(min_length=1, max_length=1000)


def _matches(pattern: str, text: str) -> bool:
    return re.fullmatch(pattern, text) is not None


M = TypeVar("M", bound=BaseModel)


def _parse(model: type[M], body: bytes) -> M:
    try:
        return model.model_validate_json(body or b"{}")
    except ValidationError as exc:
        raise _invalid(exc) from exc


def _query(model: type[M], request: FhirRequest) -> M:
    """Query parameters (the first of each name) validated as `model`."""
    given: dict[str, str] = {}
    for key, value in request.params:
        given.setdefault(key, value)
    try:
        return model.model_validate_strings(given, strict=True)
    except ValidationError as exc:
        raise _invalid(exc, located=True) from exc


def _invalid(exc: ValidationError, located: bool = False) -> FhirError:
    """A 400 naming each field (or query parameter) that fails; `located`: each issue's
    expression is the query parameter's name too."""
    issues = []
    for problem in exc.errors():
        where = ".".join(str(p) for p in problem["loc"])
        expression = (where,) if located and where else ()
        issues.append(
            Issue("invalid", f"{where or 'body'}: {problem['msg']}", expression=expression)
        )
    return FhirError(400, issues)


def _json(status: int, data: Any) -> FhirResponse:
    return FhirResponse(
        status=status,
        headers={"Content-Type": JSON},
        body=orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS),
    )


def authority_json(authority: Authority) -> dict[str, Any]:
    return AuthorityAnswer.of(authority).json_body()


def outcome_json(outcome: Outcome) -> dict[str, Any]:
    record = outcome.record
    return ConsentOutcome(
        id=record.id or "",
        status=record.status,
        reasons=record.reasons,
        missing=record.missing,
        consent=record,
        authority=AuthorityAnswer.of(outcome.authority),
        fhir=outcome.consent,
    ).json_body()


class ConsentAdministration:
    """The operations of the API, registered on the consent service's FhirService."""

    def __init__(
        self, handlers: ConsentHandlers, directory: DirectoryReader, view: ConsentView
    ) -> None:
        self.handlers = handlers
        self.disclosures = Disclosures(handlers)
        self.directory = directory
        self.view = view

    def operations(self) -> dict[str, Callable[[FhirRequest, bytes], Awaitable[FhirResponse]]]:
        return {
            "consent-authority": self.authority,
            "consent-create": self.create,
            "consent-sign": self.sign,
            "consent-withdraw": self.withdraw,
            "consent-child-view": self.child_view,
            "consent-hearing": self.hearing,
            "consent-objection": self.objection,
            "consent-list": self.list_consents,
            "access-decide": self.decide,
            "disclosure-hpl33": self.disclose,
            "disclosure-list": self.list_disclosures,
            "disclosure-close": self.close_disclosure,
        }

    async def authority(self, request: FhirRequest, body: bytes) -> FhirResponse:
        query = _query(AuthorityQuery, request)
        patient_id = query.patient.partition("/")[2]
        await self.directory.require_relation(request.caller, patient_id)
        flags = ConsentFlags(
            daily_care=query.daily_care,
            necessary_to_avoid_harm=query.necessary_to_avoid_harm,
            confidential_from_parents=query.confidential_from_parents,
            to_barnevern=query.to_barnevern,
        )
        if query.as_of is None:
            authority = await self.handlers.authority(
                query.patient, query.purpose, query.date, flags
            )
            return _json(200, authority_json(authority))
        moment = parse_as_of(query.as_of)
        child = await child_at(self.directory, patient_id, moment)
        authority = who_may_consent(child, query.purpose, query.date or day_of(moment), flags)
        answer = AuthorityAsOfAnswer(**dict(AuthorityAnswer.of(authority)), as_of=query.as_of)
        return _json(200, answer.json_body())

    async def create(self, request: FhirRequest, body: bytes) -> FhirResponse:
        consent = _parse(ConsentInput, body)
        await self.directory.require_relation(request.caller, consent.patient.partition("/")[2])
        outcome = await self.handlers.create(request, consent.record(self.handlers.clock()))
        return _json(201, outcome_json(outcome))

    async def sign(self, request: FhirRequest, body: bytes) -> FhirResponse:
        consent_id = _consent_id(request)
        signature = _parse(SignInput, body)
        outcome = await self.handlers.sign(
            request,
            consent_id,
            signature.record(self.handlers.clock()),
            signature.other_parent_heard,
            signature.child_view.record() if signature.child_view else None,
        )
        return _json(200, outcome_json(outcome))

    async def child_view(self, request: FhirRequest, body: bytes) -> FhirResponse:
        consent_id = _consent_id(request)
        view = _parse(ChildViewInput, body)
        outcome = await self.handlers.record_child_view(request, consent_id, view.record())
        return _json(200, outcome_json(outcome))

    async def hearing(self, request: FhirRequest, body: bytes) -> FhirResponse:
        consent_id = _consent_id(request)
        hearing = _parse(HearingInput, body)
        outcome = await self.handlers.record_hearing(request, consent_id, hearing.parent)
        return _json(200, outcome_json(outcome))

    async def objection(self, request: FhirRequest, body: bytes) -> FhirResponse:
        consent_id = _consent_id(request)
        objection = _parse(ObjectionInput, body)
        outcome = await self.handlers.record_objection(
            request, consent_id, objection.record(), objection.method
        )
        return _json(200, outcome_json(outcome))

    async def withdraw(self, request: FhirRequest, body: bytes) -> FhirResponse:
        withdrawal = _parse(WithdrawInput, body)
        outcome = await self.handlers.withdraw(
            request, _consent_id(request), withdrawal.by, withdrawal.reason
        )
        return _json(200, outcome_json(outcome))

    async def list_consents(self, request: FhirRequest, body: bytes) -> FhirResponse:
        """A child's consents the caller may see, with the status the rules give each today
        (`effective_status`) next to the stored one."""
        patient_id = _path_id(request, "Patient")
        await self.directory.require_relation(request.caller, patient_id)
        child = await self.directory.child_facts(patient_id)
        day = self.handlers.clock()
        async with self.handlers.fhir.reading(request) as uow:
            stored = await uow.of_patient("Consent", patient_id)
        listed = []
        for resource in stored:
            if not await self.handlers.fhir.guard.check(request, resource):
                continue
            record = from_fhir(resource.json())
            effective = record
            if record.status in OPEN_STATUSES:
                authority = who_may_consent(child, record.purpose, day, record.consent_flags())
                effective = reassessed(record, authority, day)
            listed.append(
                ListedConsent(
                    **dict(record),
                    effective_status=effective.status,
                    effective_reasons=effective.reasons,
                )
            )
        answer = ConsentList(patient=f"Patient/{patient_id}", consents=listed)
        return _json(200, answer.json_body())

    async def decide(self, request: FhirRequest, body: bytes) -> FhirResponse:
        """Decide and explain. A client may ask about itself, exactly as its token says it
        is; asking about any other actor (another organisation, kind, role or person)
        reveals consents, so it needs the audit role's scope."""
        question = _parse(DecisionInput, body)
        asked = question.actor
        caller = request.caller
        kind = asked.kind.value if asked.kind else None
        if caller.fhir_user:  # a person's decisions depend on the person alone
            about_itself = asked.fhir_user == caller.fhir_user
        else:
            claimed = (asked.orgnr, kind, asked.hpr, asked.fhir_user, sorted(asked.roles))
            own = (caller.orgnr, caller.org_kind, caller.hpr, None, sorted(caller.roles))
            about_itself = caller.orgnr is not None and claimed == own
        if not about_itself:
            authorize(request.caller, "AuditEvent", "read")
        patient_id = question.patient.partition("/")[2]
        await self.directory.require_relation(caller, patient_id)
        then = None
        if question.as_of is not None:
            moment = parse_as_of(question.as_of)
            then = await situation_at(self.handlers.fhir, self.directory, patient_id, moment)
        else:
            self.view.ready()
        actor = Caller(
            orgnr=question.actor.orgnr,
            org_kind=question.actor.kind.value if question.actor.kind else None,
            hpr=question.actor.hpr,
            fhir_user=question.actor.fhir_user,
            roles=question.actor.roles,
        )
        emergency = (
            Emergency(patient=patient_id, reason=question.emergency_reason)
            if question.emergency_reason
            else None
        )
        facts = ResourceFacts(
            reference=f"{question.category.value} information about {question.patient}",
            patient=patient_id,
            category=question.category.value,
            author=question.author,
        )
        if then is None:
            context = AccessContext(actor, question.purpose_of_use, emergency)
            decision = decide(as_seen_by(self.view.state(patient_id), caller), facts, context)
        else:
            context = AccessContext(actor, question.purpose_of_use, emergency, day=then.day)
            decision = decide(as_seen_by(then.state, caller), facts, context)
        if then is None:
            return _json(200, AccessDecisionAnswer.of(decision).json_body())
        answer = AccessDecisionAsOfAnswer(
            **dict(AccessDecisionAnswer.of(decision)),
            as_of=question.as_of,
            consent_versions=_versions(then, decision),
        )
        return _json(200, answer.json_body())

    async def disclose(self, request: FhirRequest, body: bytes) -> FhirResponse:
        """Record an hpl §33 disclosure: the versions of the named resources the reporter
        reads now are released to the barnevernstjeneste, and nothing later."""
        disclosure = _parse(DisclosureInput, body)
        caller = request.caller
        if caller.org_kind not in HEALTH_KINDS or caller.fhir_user:
            raise error(
                403,
                "forbidden",
                "Only health organisations report under helsepersonelloven §33;"
                f" this client is {caller.org_kind or 'of unknown kind'}",
            )
        if not caller.hpr:
            raise error(
                403,
                "forbidden",
                "Opplysningsplikt (helsepersonelloven §33) is a duty of health personnel: the"
                " token must name the health person reporting (HPR number); a system"
                " without a person cannot report",
            )
        patient_id = disclosure.patient.partition("/")[2]
        released = []
        for reference in dict.fromkeys(disclosure.resources):
            version = await self.directory.version_about(caller, reference, patient_id)
            if version is None:
                raise error(
                    422,
                    "business-rule",
                    f"{reference} is not information about {disclosure.patient} that this"
                    " organisation may read; only what the reporter holds can be disclosed",
                    "resources",
                )
            released.append(f"{reference}/_history/{version}")
        _refuse_unless_child(await self.directory.child_facts(patient_id), self.handlers.clock())
        kind = await self.directory.kind_in_use(disclosure.recipient)
        if kind != OrganisationKind.BARNEVERNSTJENESTE:
            raise error(
                422,
                "business-rule",
                f"§33 disclosures go to a barnevernstjeneste; {disclosure.recipient} is"
                f" {kind or 'not registered in the directory, or out of use'}",
                "recipient",
            )
        event = await self.disclosures.record(
            request,
            disclosure.patient,
            disclosure.recipient,
            released,
            disclosure.reason,
        )
        answer = DisclosureAnswer(
            basis="hpl-33",
            disclosure=ListedDisclosure.model_validate(disclosure_json(event, patient_id)),
            audit_event=event,
        )
        return _json(201, answer.json_body())

    async def list_disclosures(self, request: FhirRequest, body: bytes) -> FhirResponse:
        """A child's §33 disclosures, to the organisation that reported and the one that
        received each, and to the operator. Without a relation to the child, the child
        answers as one that is not registered."""
        patient_id = _path_id(request, "Patient")
        if request.caller.credential == "operator":
            if not await self.directory.registered(patient_id):
                raise not_found("Patient", patient_id)
        else:
            await self.directory.require_relation(request.caller, patient_id)
        listed = await self.disclosures.of_patient(request, patient_id)
        answer = DisclosureList(
            patient=f"Patient/{patient_id}",
            disclosures=[ListedDisclosure.model_validate(d) for d in listed],
        )
        return _json(200, answer.json_body())

    async def close_disclosure(self, request: FhirRequest, body: bytes) -> FhirResponse:
        """Close a §33 disclosure (the reporting organisation or the operator): the
        recipient sees nothing more through it; the record stays."""
        event_id = _path_id(request, "disclosure")
        closing = _parse(CloseDisclosureInput, body)
        closed = await self.disclosures.close(request, event_id, closing.reason)
        return _json(200, ListedDisclosure.model_validate(closed).json_body())


def _refuse_unless_child(child: ChildFacts, day: date) -> None:
    """hpl §33 is about children: refused for a person of 18 or older on `day`, and for one
    whose age cannot be known (no confirmed birth date: a D-nummer or none recorded), as
    every rule here that depends on age refuses to guess it."""
    born = child.birth_date
    if born is None or not child.birth_date_confirmed:
        raise error(
            422,
            "business-rule",
            f"{child.patient} has no confirmed birth date, and helsepersonelloven §33 is about"
            " children under 18; a D-nummer or an unknown birth date never gives an age."
            f" Record a confirmed birth date on {child.patient} (Patient.birthDate) first",
            "patient",
        )
    if born > day:
        raise error(
            422,
            "business-rule",
            f"The birth date recorded for {child.patient} ({born.isoformat()}) is after"
            f" {day.isoformat()}; correct it (Patient.birthDate) first",
            "patient",
        )
    age = age_on(born, day)
    if age >= ADULT_AGE:
        raise error(
            422,
            "business-rule",
            f"{child.patient} is {age}: helsepersonelloven §33 (opplysningsplikt to barnevern)"
            " is about children under 18; sharing an adult's information needs the person's"
            " consent or another legal basis",
            "patient",
        )


def _versions(then: Situation, decision: AccessDecision) -> list[str]:
    """The versions of the consents a past decision rested on (`Consent/<id>/_history/<v>`),
    so the answer names exactly which record was in force."""
    named = set(decision.consents)
    return [v for stored, v in zip(then.consents, then.versions, strict=True)
            if stored.reference in named]  # fmt: skip


def _path_id(request: FhirRequest, what: str) -> str:
    """The id in the route's path, or a 400 saying it is not a valid `what` id."""
    if request.id is None or not ID_PATTERN.fullmatch(request.id):
        raise error(400, "invalid", f"{request.id!r} is not a valid {what} id")
    return request.id


def _consent_id(request: FhirRequest) -> str:
    return _path_id(request, "Consent")
