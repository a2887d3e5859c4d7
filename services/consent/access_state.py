"""What a patient's consent records add up to: the access state every service mirrors.

Active consents become grants (their recipients, categories, purposes of use and days,
and whether others gave them on the child's behalf); consents a child of 12-15 gave alone
keep what the recipients hold from the parents, and from anyone a consent on the child's
behalf names, also after they end (what was told in confidence stays confidential); open
hpl §33 disclosures let the named barnevernstjeneste see the versions reported. Parents
see by parental responsibility until the day before the child turns 16. The organisations with a
relation to the child (a record about it anywhere, or its care order) are listed too:
the directory releases the child's record only to them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, timedelta

from services.consent.domain.authority import (
    HEALTH_MAJORITY_AGE,
    HIDE_FROM_PARENTS,
    ON_BEHALF_RULES,
    birthday,
)
from services.consent.domain.model import ChildFacts, Status
from services.consent.records import ConsentRecord
from shared.access.state import Disclosure, Grant, HiddenFromParents, PatientAccessState
from shared.transport.wire import Caller


def _collector(record: ConsentRecord) -> list[str]:
    return [record.collected_by_organization] if record.collected_by_organization else []


def patient_state(
    patient_id: str,
    child: ChildFacts,
    consents: list[ConsentRecord],
    disclosures: list[Disclosure],
    *,
    related: Sequence[str] = (),
    care_order_holders: Sequence[str] = (),
    care_order_ends: Mapping[str, date] | None = None,
) -> PatientAccessState:
    """`related`: organisations with a record about the child in any service;
    `care_order_holders`: organisasjonsnummer of the holders of its open care orders, and
    `care_order_ends` the last day of those whose every order has an end."""
    grants = [
        Grant(
            consent=f"Consent/{record.id}",
            categories=record.categories,
            purpose=record.purpose.value,
            orgs=record.recipients.organizations,
            kinds=record.recipients.kinds,
            roles=record.recipients.roles,
            purposes_of_use=record.purposes_of_use,
            start=record.start,
            end=record.grant_end,
            on_behalf=record.rule in ON_BEHALF_RULES,
        )
        for record in consents
        if record.status is Status.ACTIVE
    ]
    hidden = [
        HiddenFromParents(
            consent=f"Consent/{record.id}",
            orgs=sorted({*record.recipients.organizations, *_collector(record)}),
            categories=sorted(record.categories),
        )
        for record in consents
        if HIDE_FROM_PARENTS in record.obligations
        and record.status in (Status.ACTIVE, Status.INACTIVE)
    ]
    parents_until = None
    if child.birth_date is not None and child.birth_date_confirmed:
        parents_until = birthday(child.birth_date, HEALTH_MAJORITY_AGE) - timedelta(days=1)
    return PatientAccessState(
        patient=patient_id,
        parents=list(child.parents_with_responsibility),
        parents_until=parents_until,
        grants=grants,
        related=sorted(set(related)),
        care_order_holders=sorted(set(care_order_holders)),
        parents_end={
            parent: end
            for parent, end in child.responsibility_ends
            if parent in child.parents_with_responsibility
        },
        care_order_ends=dict(care_order_ends or {}),
        hidden_from_parents=hidden,
        disclosures=disclosures,
    )


def as_seen_by(state: PatientAccessState | None, caller: Caller) -> PatientAccessState | None:
    """`state` as a question from `caller` may reveal it (`/decisions`). What a child of
    12-15 keeps from its parents is known only to the organisations that hold it (the
    consent's recipients and its collector): to anyone else (the parents, whoever a consent
    on the child's behalf names, another organisation's audit role) the answer is the one
    they would get if the child's confidential consent did not exist. Reads of the
    information itself are refused all the same."""
    if state is None:
        return None
    entitled = caller.credential == "organisation" and not caller.fhir_user and caller.orgnr
    unknown = {
        hidden.consent
        for hidden in state.hidden_from_parents
        if not (entitled and caller.orgnr in hidden.orgs)
    }
    if not unknown:
        return state
    return state.model_copy(
        update={
            "hidden_from_parents": [
                h for h in state.hidden_from_parents if h.consent not in unknown
            ],
            "grants": [g for g in state.grants if g.consent not in unknown],
        }
    )
