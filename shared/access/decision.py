"""Access decisions: may this caller see this patient's information, and on what basis?

One function, `decide`, answers for one resource; `visibility` turns the same rules into
the filter a search runs in SQL, so what a search returns, what `_total` counts and what
a read by id releases never disagree. Default deny: patient information crosses an
organisation boundary only under an active consent covering the recipient, the data
category, the purpose of use and the day, or under a named basis without consent
(emergency, hpl §33), and parents see what their parental responsibility covers minus
what a child of 12-15 keeps from them. An hpl §33 disclosure releases exactly the versions
it reported (`Type/id/_history/<version>`): a vread of one, and a read or search only while
the resource is still at that version; a later version and the earlier history stay closed.

The directory's records of a child (category `person`) follow other rules: an
organisation sees them only with a relation to the child (it wrote or is named on a
record about the child, holds its care order, is a recipient of a consent about it or of
an hpl §33 disclosure, or has an emergency basis); an exact identifier lets a health or
barnevern organisation find the child itself, as a subset. Care orders are released only
to kinds that may know of them (`shared.access.permissions.may_know_care_orders`).

`decide` and `visibility` stay in one module (over the usual size) on purpose: they share
their helpers, so a rule changed for one is changed for the other, and
`tests/test_decision_agreement.py` checks that they agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date

from shared.access.permissions import ACTOR_KINDS, Actor, may_know_care_orders
from shared.access.state import Grant, PatientAccessState
from shared.clock import today
from shared.codes import (
    AUDIT_CATEGORY,
    DEFAULT_PURPOSE_OF_USE,
    HEALTH_KINDS,
    PERSON_CATEGORY,
    DataCategory,
)
from shared.store.access_sql import AccessFilter
from shared.transport.wire import Caller, Emergency

SUBSET = "subset"
"""Obligation: release only the identifying subset of a child's record (a look-up)."""
HIDE_CARE_ORDERS = "hide-care-orders"
"""Obligation: release the record without its care orders."""
OWN_AUDIT = "own-audit"
"""Obligation: an organisation reads the records of its own accesses without what it was
refused (which patient, why, whether it exists)."""
PARTNER_KINDS = ACTOR_KINDS[Actor.PARTNER]
RELATION_BASES = frozenset(
    {"own-data", "relation", "care-order-holder", "consent-recipient", "hpl-33", "self",
     "parental-responsibility", "emergency", "service"}
)  # fmt: skip
"""Bases on which a child's directory record is released in full: a relation."""
CONSENT_CATEGORY = DataCategory.CONSENT.value


@dataclass(frozen=True)
class ResourceFacts:
    """What a decision needs to know about one resource (from its stored access columns)."""

    reference: str
    patient: str | None
    category: str | None
    author: str | None = None
    parties: tuple[str, ...] = ()
    version: int | None = None
    """The version decided on (a disclosure releases single versions); None when the
    question is about information in general, not a stored version."""

    @property
    def versioned(self) -> str | None:
        """`Type/id/_history/<version>`, as a disclosure names what it released."""
        return None if self.version is None else f"{self.reference}/_history/{self.version}"

    @property
    def holders(self) -> tuple[str, ...]:
        """Organisations that wrote the resource or are named on it."""
        return (self.author, *self.parties) if self.author else self.parties


@dataclass(frozen=True)
class AccessDecision:
    """Permit or deny, the basis, human-readable reasons and obligations."""

    permit: bool
    basis: str
    reasons: tuple[str, ...]
    consents: tuple[str, ...] = ()
    obligations: tuple[str, ...] = ()
    legal_reference: str = ""


@dataclass(frozen=True)
class AccessContext:
    """The caller and the circumstances of one request."""

    caller: Caller
    purpose_of_use: str = DEFAULT_PURPOSE_OF_USE
    emergency: Emergency | None = None
    day: date = field(default_factory=today)
    lookup: bool = False
    """The request looks a child up by one exact identifier (`Patient?identifier=`)."""


def _actor(caller: Caller) -> str:
    who = caller.fhir_user or (f"organisation {caller.orgnr}" if caller.orgnr else "the caller")
    return f"{who} ({caller.org_kind})" if caller.org_kind else who


def emergency_allowed(caller: Caller) -> bool:
    """Emergency access is for an identified health person (HPR number in the token) at a
    health organisation: never a system without a person, a person logged in as
    themselves, or an organisation of another kind."""
    return (
        caller.credential == "organisation"
        and caller.org_kind in HEALTH_KINDS
        and bool(caller.hpr)
        and not caller.fhir_user
    )


def _emergency(caller: Caller, emergency: Emergency) -> AccessDecision:
    return AccessDecision(
        True,
        "emergency",
        (f"Emergency access (øyeblikkelig hjelp) by {_actor(caller)}: {emergency.reason}",),
        obligations=("review-after-the-fact",),
        legal_reference="helsepersonelloven §7; pbrl §4-9",
    )


def relation_basis(state: PatientAccessState | None, context: AccessContext) -> str | None:
    """The relation an organisation has to the child of `state`, if any, from the
    consent-view state (its authorship of the child's own record is the resource's)."""
    caller = context.caller
    if state is None or caller.fhir_user or caller.credential != "organisation":
        return None
    orgnr = caller.orgnr
    if state.holds_care_order(orgnr, context.day):
        return "care-order-holder"
    named = any(_naming_grants(state, context))
    if orgnr and orgnr in state.related and (named or caller.org_kind not in PARTNER_KINDS):
        return "relation"
    if named:
        return "consent-recipient"
    if orgnr and any(orgnr in d.recipients for d in state.disclosures):
        return "hpl-33"
    return None


def _takes_part(state: PatientAccessState, caller: Caller, day: date) -> bool:
    """Whether the caller's organisation takes part in the child's care: it wrote or is
    named on a record about the child, or holds its care order."""
    orgnr = caller.orgnr
    return bool(orgnr) and (orgnr in state.related or state.holds_care_order(orgnr, day))


def _naming_grants(state: PatientAccessState, context: AccessContext) -> Iterator[Grant]:
    """The active grants that name the caller today, for the purpose it states. A care
    role is the token's statement about the person acting: it names the caller only where
    the caller's organisation takes part in the child's care, never for a stranger to the
    child (a role is held for a child, not in general)."""
    caller = context.caller
    role_counts = bool(caller.roles) and _takes_part(state, caller, context.day)
    for grant in state.grants:
        if not grant.covers_day(context.day):
            continue
        if grant.purposes_of_use and context.purpose_of_use not in grant.purposes_of_use:
            continue
        if (
            (caller.orgnr and caller.orgnr in grant.orgs)
            or (caller.org_kind and caller.org_kind in grant.kinds)
            or (role_counts and set(caller.roles) & set(grant.roles))
        ):
            yield grant


def _matching_grants(state: PatientAccessState, context: AccessContext, category: str) -> list[str]:
    return [g.consent for g in _naming_grants(state, context) if category in g.categories]


def _releasing_grants(
    state: PatientAccessState, context: AccessContext, resource: ResourceFacts
) -> list[str]:
    """The grants that release `resource` to the caller: a consent given on the child's
    behalf releases nothing the child keeps from the parents (what the parents may not
    know, they cannot pass on)."""
    category = resource.category or ""
    hidden = bool(_hidden_from_parents(state, resource))
    return [
        g.consent
        for g in _naming_grants(state, context)
        if category in g.categories and not (hidden and g.on_behalf)
    ]


def _partner_without_consent(state: PatientAccessState | None, context: AccessContext) -> bool:
    """A school, kindergarten, PPT or NAV takes part in a child's care only under an active
    consent that names it: without one, being named on a record (or having been) gives it
    nothing; what it wrote itself stays its own."""
    if context.caller.org_kind not in PARTNER_KINDS:
        return False
    return state is None or not any(_naming_grants(state, context))


def consents_covering(
    state: PatientAccessState | None, category: str, orgnr: str, kind: str | None, day: date
) -> list[str]:
    """Active consents that would release `category` to the organisation on `day`: for a
    write that would share a record with it (e.g. naming it a plan's contributor)."""
    if state is None:
        return []
    recipient = Caller(orgnr=orgnr, org_kind=kind)
    return _matching_grants(state, AccessContext(recipient, day=day), category)


def consents_for(
    state: PatientAccessState | None, purpose: str, orgnr: str, kind: str | None, day: date
) -> list[str]:
    """Active consents for `purpose` that name the organisation (or its kind) on `day`:
    for steps that need a consent to a purpose rather than to a category of data (e.g.
    passing contact details on to a municipal service)."""
    if state is None:
        return []
    return [
        grant.consent
        for grant in state.grants
        if grant.purpose == purpose
        and grant.covers_day(day)
        and (orgnr in grant.orgs or (kind is not None and kind in grant.kinds))
    ]


def purpose_consents(state: PatientAccessState | None, purpose: str, day: date) -> list[str]:
    """Active consents for `purpose` on `day`, whoever they name (e.g. the consent to an
    individual plan, which the plan itself needs before it is more than a draft)."""
    if state is None:
        return []
    return [g.consent for g in state.grants if g.purpose == purpose and g.covers_day(day)]


def _hidden_from_parents(state: PatientAccessState, resource: ResourceFacts) -> list[str]:
    """The child's confidential consents that keep `resource` from the parents: of its
    consents, the confidential ones themselves; of every other category, what the
    organisations the child confided in hold in the categories it named."""
    if resource.category == CONSENT_CATEGORY:
        return [h.consent for h in state.hidden_from_parents if h.consent == resource.reference]
    held = set(resource.holders)
    return [
        hidden.consent
        for hidden in state.hidden_from_parents
        if resource.category in hidden.categories and held & set(hidden.orgs)
    ]


def _hidden(state: PatientAccessState, category: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """What `_hidden_from_parents` keeps from the parents in `category`, for the SQL
    filter: (the organisations whose rows, the single records)."""
    if category == CONSENT_CATEGORY:
        return (), tuple(sorted(h.consent for h in state.hidden_from_parents))
    orgs = {org for h in state.hidden_from_parents if category in h.categories for org in h.orgs}
    return tuple(sorted(orgs)), ()


def _is_parent(state: PatientAccessState, context: AccessContext) -> bool:
    return state.is_parent(context.caller.fhir_user, context.day)


def decide(
    state: PatientAccessState | None, resource: ResourceFacts, context: AccessContext
) -> AccessDecision:
    """Whether the caller may see `resource`, and why."""
    caller = context.caller
    if resource.category is None:
        return AccessDecision(True, "not-patient-data", ("Not information about a patient",))
    if caller.credential == "service":
        return AccessDecision(True, "service", ("A barnebro service reads for its rules",))
    if resource.category == PERSON_CATEGORY:
        return _decide_directory(state, resource, context)
    if resource.category == AUDIT_CATEGORY:
        if caller.orgnr and not caller.fhir_user and caller.orgnr in resource.holders:
            return AccessDecision(
                True,
                "party",
                (f"{_actor(caller)} is the agent of {resource.reference}",),
                obligations=(OWN_AUDIT,),
            )
        return AccessDecision(False, "none", (f"{resource.reference} records others' access",))
    if caller.fhir_user:
        return _decide_for_person(state, resource, context)
    if caller.orgnr and caller.orgnr == resource.author:
        return AccessDecision(True, "own-data", (f"{_actor(caller)} wrote {resource.reference}",))
    if (
        caller.orgnr
        and caller.orgnr in resource.parties
        and not _partner_without_consent(state, context)
    ):
        return AccessDecision(
            True, "party", (f"{_actor(caller)} is named on {resource.reference}",)
        )
    category = resource.category
    if resource.patient is None:
        return AccessDecision(
            False, "none", (f"{resource.reference} is about no patient the caller may see",)
        )
    subject = f"Patient/{resource.patient}"
    if state is not None:
        consents = _releasing_grants(state, context, resource)
        if consents:
            return AccessDecision(
                True,
                "consent",
                (
                    f"Active consent {', '.join(consents)} covers {_actor(caller)},"
                    f" category {category}, purpose {context.purpose_of_use} today",
                ),
                consents=tuple(consents),
            )
        versioned = resource.versioned
        for disclosure in state.disclosures:
            if versioned in disclosure.resources and caller.orgnr in disclosure.recipients:
                return AccessDecision(
                    True,
                    disclosure.basis,
                    (
                        f"{versioned} was disclosed without consent under {disclosure.basis}"
                        f" ({disclosure.record})",
                    ),
                    legal_reference="helsepersonelloven §33",
                )
    emergency = context.emergency
    if emergency is not None and emergency.patient == resource.patient:
        if not emergency_allowed(caller):
            return AccessDecision(
                False,
                "none",
                (f"Emergency access is for health personnel; {_actor(caller)} is not",),
            )
        return _emergency(caller, emergency)
    return AccessDecision(
        False,
        "none",
        (
            f"No active consent covers {_actor(caller)} for {category} information about"
            f" {subject} (purpose {context.purpose_of_use}), and no other legal basis applies",
        ),
    )


def _decide_directory(
    state: PatientAccessState | None, resource: ResourceFacts, context: AccessContext
) -> AccessDecision:
    """A child's (or its parents') directory record: only with a relation to the child,
    or as the identifying subset of an exact look-up."""
    caller = context.caller
    hidden = () if may_know_care_orders(caller) else (HIDE_CARE_ORDERS,)
    subject = f"Patient/{resource.patient}"
    if caller.fhir_user:
        if resource.reference == caller.fhir_user:
            return AccessDecision(True, "self", (f"{caller.fhir_user} is this person",), (),
                                  hidden)  # fmt: skip
        if state is not None and resource.patient is not None and _is_parent(state, context):
            return AccessDecision(
                True,
                "parental-responsibility",
                (f"{caller.fhir_user} holds parental responsibility for {subject}",),
                obligations=hidden,
            )
        return AccessDecision(False, "none", (f"No basis lets {caller.fhir_user} see it",))
    if caller.orgnr and caller.orgnr == resource.author:
        reasons = (f"{_actor(caller)} registered {resource.reference}",)
        return AccessDecision(True, "own-data", reasons, obligations=hidden)
    basis = relation_basis(state, context)
    if basis is not None:
        reasons = (f"{_actor(caller)} has a relation to {subject} ({basis})",)
        return AccessDecision(True, basis, reasons, obligations=hidden)
    emergency = context.emergency
    if (
        emergency is not None
        and emergency.patient == resource.patient
        and emergency_allowed(caller)
    ):
        return _emergency(caller, emergency)
    if context.lookup and resource.reference == subject:
        return AccessDecision(
            True,
            "identifier-lookup",
            (f"{_actor(caller)} looked {subject} up by an exact identifier",),
            obligations=(SUBSET,),
        )
    return AccessDecision(False, "none", (f"{_actor(caller)} has no relation to {subject}",))


def _decide_for_person(
    state: PatientAccessState | None, resource: ResourceFacts, context: AccessContext
) -> AccessDecision:
    """A person logged in as themselves (`fhirUser`) acts for no organisation: only what
    they hold personally counts (today: parental responsibility)."""
    caller = context.caller
    if state is not None and resource.patient is not None and _is_parent(state, context):
        hidden = _hidden_from_parents(state, resource)
        if hidden:
            return AccessDecision(
                False,
                "hidden-from-parents",
                (
                    f"The child consented alone ({', '.join(hidden)}) to help it does not"
                    " want its parents told about (pbrl §3-4 second ledd)",
                ),
                consents=tuple(hidden),
                obligations=("hide-from-parents",),
                legal_reference="pbrl §3-4 andre ledd",
            )
        return AccessDecision(
            True,
            "parental-responsibility",
            (f"{caller.fhir_user} holds parental responsibility for Patient/{resource.patient}",),
            legal_reference="pbrl §3-4 første ledd",
        )
    return AccessDecision(
        False, "none", (f"No basis lets {caller.fhir_user} see {resource.reference}",)
    )


def actor_keys(caller: Caller) -> list[str]:
    """The index keys under which the consent view finds states that may concern a caller."""
    if caller.fhir_user:
        return [f"parent:{caller.fhir_user}"]
    keys = []
    if caller.orgnr:
        keys.append(f"org:{caller.orgnr}")
    if caller.org_kind:
        keys.append(f"kind:{caller.org_kind}")
    keys += [f"role:{role}" for role in caller.roles]
    return keys


def visibility(
    states: Iterable[PatientAccessState], category: str, context: AccessContext
) -> AccessFilter:
    """The search filter equivalent to `decide` for every resource of one category.

    `states` are the patients the view found under the caller's keys (any state that may
    permit the caller something); the emergency patient is added when allowed.
    """
    caller = context.caller
    if category == AUDIT_CATEGORY:
        return AccessFilter(orgs=(caller.orgnr,) if caller.orgnr else ())
    if category == PERSON_CATEGORY:
        return _directory_visibility(states, context)
    person = caller.fhir_user is not None
    patients: list[str] = []
    excepting: list[tuple[str, tuple[str, ...]]] = []
    excepting_records: list[tuple[str, tuple[str, ...]]] = []
    disclosed: dict[str, set[str]] = {}
    named_within: list[str] | None = [] if caller.org_kind in PARTNER_KINDS else None
    for state in states:
        if named_within is not None and not _partner_without_consent(state, context):
            named_within.append(state.patient)
        hidden_orgs, hidden_records = _hidden(state, category)
        withheld = bool(hidden_orgs or hidden_records)
        if not person:
            grants = [g for g in _naming_grants(state, context) if category in g.categories]
            if any(not g.on_behalf for g in grants) or (grants and not withheld):
                patients.append(state.patient)
                continue
            if grants:  # given on the child's behalf: not what the child keeps hidden
                _except(state.patient, hidden_orgs, hidden_records, excepting, excepting_records)
        if _is_parent(state, context):
            if withheld:
                _except(state.patient, hidden_orgs, hidden_records, excepting, excepting_records)
            else:
                patients.append(state.patient)
            continue
        if person:
            continue
        for disclosure in state.disclosures:
            if caller.orgnr in disclosure.recipients:
                disclosed.setdefault(state.patient, set()).update(disclosure.resources)
    emergency = context.emergency
    if emergency is not None and emergency_allowed(caller) and not person:
        patients.append(emergency.patient)
    return AccessFilter(
        orgs=(caller.orgnr,) if caller.orgnr and not person else (),
        named_within=tuple(sorted(set(named_within))) if named_within is not None else None,
        patients=tuple(sorted(set(patients))),
        patients_except=tuple(excepting),
        patients_except_records=tuple(excepting_records),
        disclosed=tuple((p, tuple(sorted(refs))) for p, refs in sorted(disclosed.items()) if refs),
    )


def _except(
    patient: str,
    orgs: tuple[str, ...],
    records: tuple[str, ...],
    by_orgs: list[tuple[str, tuple[str, ...]]],
    by_records: list[tuple[str, tuple[str, ...]]],
) -> None:
    """Add the patient's rows except what is withheld: by holder, or single records."""
    if orgs:
        by_orgs.append((patient, orgs))
    else:
        by_records.append((patient, records))


def _directory_visibility(
    states: Iterable[PatientAccessState], context: AccessContext
) -> AccessFilter:
    """`visibility` for the directory's records of children and their parents."""
    caller = context.caller
    if caller.fhir_user:
        parents = [s.patient for s in states if _is_parent(s, context)]
        return AccessFilter(patients=tuple(sorted(parents)), resources=(caller.fhir_user,))
    patients = {s.patient for s in states if relation_basis(s, context) is not None}
    emergency = context.emergency
    if emergency is not None and emergency_allowed(caller):
        patients.add(emergency.patient)
    return AccessFilter(
        orgs=(caller.orgnr,) if caller.orgnr else (), patients=tuple(sorted(patients))
    )
