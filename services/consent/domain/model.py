"""The facts and answers the consent rules work with.

`ChildFacts` is what the directory knows about a child on a given day (birth date,
holders of parental responsibility, care orders); `Authority` is the answer to "who may
consent for this child, for this purpose, on this date?"; `Signature` and `ChildView`
are what a consent record holds; `Evaluation` is the status the rules give it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum

from shared.codes import CODE_SYSTEM_BASE, CodedEnum


class Purpose(CodedEnum):
    """What a consent is for (project CodeSystem consent-purpose)."""

    HELSEHJELP = (
        "helsehjelp",
        "Helsehjelp",
        "Consent to health care for the child (pasient- og brukerrettighetsloven §4-1)",
    )
    INFORMASJONSDELING = (
        "informasjonsdeling",
        "Informasjonsdeling",
        "Consent to share the child's information with the named recipients"
        " (helsepersonelloven §22)",
    )
    INDIVIDUELL_PLAN = (
        "individuell-plan",
        "Individuell plan",
        "Consent to an individual plan for the child, and to sharing it with those who"
        " take part in it",
    )
    ANSVARSGRUPPE = (
        "ansvarsgruppe",
        "Ansvarsgruppe",
        "Consent to a care team (ansvarsgruppe) and to sharing information among its members",
    )
    NASJONALT_FORLOP = (
        "nasjonalt-forlop",
        "Nasjonalt forløp",
        "Consent to the national pathway for health assessment of children in barnevern"
        " (the child, plus the parents or the care-order holder under 15)",
    )
    KONTAKTINFO_VIDEREFORMIDLING = (
        "kontaktinfo-videreformidling",
        "Videreformidling av kontaktinformasjon",
        "Consent to pass the child's contact details on to another service, e.g. when a"
        " referral is redirected",
    )


LEGAL_BASIS_SYSTEM = f"{CODE_SYSTEM_BASE}/legal-basis"


class LegalBasis(CodedEnum):
    """The rule a consent was judged by, or the basis of a disclosure without consent
    (project CodeSystem legal-basis): `Consent.policyRule`, `AuditEvent.subtype`."""

    BIRTH_DATE_NEEDED = (
        "birth-date-needed",
        "Fødselsdato mangler",
        "No rule can be applied yet: the child has no confirmed birth date (pbrl §4-3, §4-4)",
    )
    BIRTH_DATE_AFTER_DAY = (
        "birth-date-after-day",
        "Født etter dagen",
        "No rule can be applied: the child's recorded birth date is after the day asked about",
    )
    ADULT = "adult", "Myndig", "The person is 18 or older and consents alone (pbrl §4-3 a)"
    YOUTH_16 = (
        "youth-16",
        "Helserettslig myndig",
        "The youth is 16 or older and consents alone to health care (pbrl §4-3 b)",
    )
    CARE_ORDER = (
        "care-order",
        "Omsorgsovertakelse",
        "The barnevernstjeneste holding a care order consents instead of the parents"
        " (pbrl §4-4 fjerde ledd)",
    )
    CHILD_CONFIDENTIAL = (
        "child-confidential",
        "Barnet samtykker alene",
        "A child of 12 or more consents alone to help the parents are not to be told about"
        " (pbrl §3-4 andre ledd, §4-3 c)",
    )
    CHILD_CONFIDENTIAL_NOT_APPLICABLE = (
        "child-confidential-not-applicable",
        "Barnet kan ikke samtykke alene",
        "The child asked to consent alone, but the rule for help kept from the parents does"
        " not apply (pbrl §3-4 andre ledd)",
    )
    PARENTS = (
        "parents",
        "Foreldrene",
        "Both holders of parental responsibility consent (pbrl §4-4 første ledd)",
    )
    PARENTS_ONE_DAILY_CARE = (
        "parents-one-daily-care",
        "Én forelder, daglig omsorg",
        "One holder of parental responsibility is enough: the help is part of daily and"
        " ordinary care (pbrl §4-4 andre ledd)",
    )
    PARENTS_ONE_NECESSARY = (
        "parents-one-necessary",
        "Én forelder, nødvendig",
        "One holder of parental responsibility is enough: qualified health personnel find"
        " the help necessary so the child is not harmed (pbrl §4-4 andre ledd)",
    )
    NASJONALT_FORLOP = (
        "nasjonalt-forlop",
        "Nasjonalt forløp",
        "The consent of the national pathway for children in barnevern: the child, and the"
        " parents or the care-order holder while the child is under 15",
    )
    BARNEVERN_SHARING_FROM_15 = (
        "barnevern-sharing-from-15",
        "Deling med barnevernet fra 15 år",
        "Sharing with a barnevernstjeneste needs the child's own consent too from 15"
        " (pbrl §4-4; hpl §22)",
    )
    HPL_33 = (
        "hpl-33",
        "Helsepersonelloven §33",
        "Health personnel's duty to inform the barnevernstjeneste (helsepersonelloven §33):"
        " a disclosure without consent",
    )


class Decision(StrEnum):
    """A grantor's answer: consent given, or refused."""

    CONSENT = "consent"
    REFUSE = "refuse"


class Status(StrEnum):
    """FHIR Consent.status values the rules produce."""

    PROPOSED = "proposed"
    ACTIVE = "active"
    REJECTED = "rejected"
    INACTIVE = "inactive"


@dataclass(frozen=True)
class CareOrderFact:
    """A care order (omsorgsovertakelse): the barnevernstjeneste holding it, as
    `Organization/<id>`, and its period (end None while it lasts)."""

    organization: str
    start: date
    end: date | None = None

    def active_on(self, day: date) -> bool:
        return self.start <= day and (self.end is None or day <= self.end)


@dataclass(frozen=True)
class ChildFacts:
    """What the directory says about the child.

    `patient` is `Patient/<id>`. `birth_date` is None when unknown; `birth_date_confirmed`
    is False when the only source of the date is unreliable (a D-nummer or a number under
    the 2032 rule with no recorded date), in which case no age may be guessed.
    `parents_with_responsibility` and `parents_without_responsibility` are
    `RelatedPerson/<id>` references; `responsibility_ends` the last day of a holder's
    parental responsibility where the register has set one.
    """

    patient: str
    birth_date: date | None
    birth_date_confirmed: bool = True
    parents_with_responsibility: tuple[str, ...] = ()
    parents_without_responsibility: tuple[str, ...] = ()
    care_orders: tuple[CareOrderFact, ...] = ()
    responsibility_ends: tuple[tuple[str, date], ...] = ()


@dataclass(frozen=True)
class ConsentFlags:
    """Circumstances recorded with a consent that change who must sign.

    `daily_care`: help that is part of daily and ordinary care (one parent is enough).
    `necessary_to_avoid_harm`: qualified health personnel consider it necessary so the
    child is not harmed (one parent is enough). `confidential_from_parents`: a child of
    12-15 consents alone to help the child, for reasons that should be respected, does not
    want the parents told about (pbrl §3-4 second ledd, §4-3 c). `to_barnevern`: the
    consent shares information with a barnevernstjeneste (a recipient is one, by kind or
    by organisation), which from 15 needs the child's own consent too (DOMAIN §4, NKVTS).
    The consent service sets it from the recipients; a client never states it.
    """

    daily_care: bool = False
    necessary_to_avoid_harm: bool = False
    confidential_from_parents: bool = False
    to_barnevern: bool = False


@dataclass(frozen=True)
class GrantorGroup:
    """Grantors of whom `need` ("all" or "one") must consent; any refusal rejects."""

    role: str  # "person", "child", "parents", "care-order-holder"
    members: tuple[str, ...]
    need: str  # "all" | "one"


@dataclass(frozen=True)
class Authority:
    """Who may consent, under which rule, and what is missing before anyone can.

    `decidable` is False when the rules cannot be applied yet (no reliable birth date, no
    registered holder of parental responsibility ...); `missing` then says what to record.
    Every group in `groups` must be satisfied for the consent to be complete.
    `child_view` is "mandatory", "required" (may be waived with a recorded reason why the
    child could not be heard), "recommended" or "not-applicable" (the child decides).
    `obligations` are attached to decisions made under this consent, e.g.
    "hide-from-parents".
    """

    decidable: bool
    rule: str
    legal_reference: str
    explanation: str
    age: int | None = None
    groups: tuple[GrantorGroup, ...] = ()
    missing: tuple[str, ...] = ()
    child_view: str = "not-applicable"
    one_parent_must_hear_other: bool = False
    obligations: tuple[str, ...] = ()
    valid_until: date | None = None
    ends_at_age: int | None = None
    """The birthday at which the grantors' authority ends (`valid_until` is the day before
    it, unless a care order ends it earlier); None when no birthday ends it."""
    # The child the answer is about and the registered parents who hold no parental
    # responsibility, so that a refusal to a non-grantor can say who and why.
    patient: str = ""
    parents_without_responsibility: tuple[str, ...] = ()

    @property
    def grantors(self) -> tuple[str, ...]:
        return tuple(member for group in self.groups for member in group.members)


@dataclass(frozen=True)
class Signature:
    """One grantor's answer, who collected it and how (in-person, phone, digital)."""

    grantor: str
    decision: Decision
    collected_by: str
    method: str
    when: date


@dataclass(frozen=True)
class ChildView:
    """The child's view (medvirkning), recorded separately from any consent on its behalf.

    Either `heard` with what was said and by whom, or not heard with the reason why the
    child could not be heard. `objects`: the child, heard, objects to the consent; where
    the child is not a grantor this does not decide, but the grantors must weigh it."""

    heard: bool
    statement: str = ""
    heard_by: str = ""
    when: date | None = None
    not_heard_reason: str = ""
    objects: bool = False


@dataclass(frozen=True)
class Evaluation:
    """The status the rules give a consent, with the reasons and what is still missing."""

    status: Status
    reasons: tuple[str, ...]
    missing: tuple[str, ...] = ()
    obligations: tuple[str, ...] = ()
    valid_until: date | None = None


@dataclass(frozen=True)
class ConsentFacts:
    """A consent record as the rules see it."""

    purpose: Purpose
    flags: ConsentFlags = ConsentFlags()
    signatures: tuple[Signature, ...] = ()
    child_view: ChildView | None = None
    other_parent_heard: tuple[str, ...] = ()
    withdrawn: bool = False
    period_end: date | None = None
    extra: dict[str, str] = field(default_factory=dict)
    withdrawn_by: str = ""
