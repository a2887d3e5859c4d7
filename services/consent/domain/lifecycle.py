"""What state a consent is in, given who may consent and what has been signed.

`authority.who_may_consent` says who must sign; this module turns a consent record's
signatures, the child's recorded view (medvirkning) and the hearing of the other parent
into a FHIR Consent.status with plain reasons and a list of what is still missing, so the
consent service can store the status and the admin API can explain it. A refusal by any
required grantor means there is no consent (pbrl §4-4); a withdrawal takes effect at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

from services.consent.domain.authority import (
    CHILD_VIEW_MANDATORY_FROM_AGE,
    CHILD_VIEW_REQUIRED_FROM_AGE,
    HIDE_FROM_PARENTS,
    PARENTS_RULES,
    RULE_ADULT,
    RULE_CARE_ORDER,
    RULE_CHILD_CONFIDENTIAL,
    RULE_NASJONALT_FORLOP,
    RULE_YOUTH,
    listed,
)
from services.consent.domain.model import (
    Authority,
    ChildView,
    ConsentFacts,
    Decision,
    Evaluation,
    GrantorGroup,
    Signature,
    Status,
)


def unauthorised_grantors(authority: Authority, signatures: Sequence[Signature]) -> list[str]:
    """Grantors who signed but are in no group of `authority`, in order of first signature."""
    allowed = set(authority.grantors)
    found: list[str] = []
    for signature in signatures:
        if signature.grantor not in allowed and signature.grantor not in found:
            found.append(signature.grantor)
    return found


def authority_error(authority: Authority, grantor: str) -> str:
    """Why `grantor` (one of `unauthorised_grantors`) cannot consent: who can, and by what rule."""
    child = authority.patient or "the child"
    if not authority.decidable:
        return f"{grantor} cannot consent for {child} yet: {authority.explanation}"
    reason = _who_consents(authority)
    if grantor in authority.parents_without_responsibility:
        reason = f"{grantor} has no parental responsibility (foreldreansvar), and {reason}"
    return f"{grantor} cannot consent for {child}: {reason} ({authority.legal_reference})."


def evaluate(authority: Authority, consent: ConsentFacts, today: date) -> Evaluation:
    """The status of `consent` on `today`, with reasons and what is still missing.

    `authority` is the answer for the day the consent was given; when it stops holding
    (`valid_until`, e.g. the child turned 16) the consent becomes inactive and the consent
    service must ask again. Signatures from grantors outside the authority are ignored.
    """
    if consent.withdrawn:
        by = f" by {consent.withdrawn_by}" if consent.withdrawn_by else ""
        return _ended(authority, f"The consent was withdrawn{by}; withdrawal takes effect at once.")
    if consent.period_end is not None and consent.period_end < today:
        return _ended(authority, f"The consent period ended on {consent.period_end.isoformat()}.")
    if not authority.decidable:
        return Evaluation(
            status=Status.PROPOSED,
            reasons=(authority.explanation,),
            missing=authority.missing,
            obligations=authority.obligations,
            valid_until=authority.valid_until,
        )
    if authority.valid_until is not None and authority.valid_until < today:
        return _ended(authority, _authority_ended_reason(authority, authority.valid_until))

    decisions = _latest_decisions(authority, consent.signatures)
    ignored = unauthorised_grantors(authority, consent.signatures)
    ignored_reasons = (
        (f"Ignored signatures from {listed(ignored)}, who cannot consent under this rule.",)
        if ignored
        else ()
    )
    refused_by = [grantor for grantor, decision in decisions.items() if decision is Decision.REFUSE]
    if refused_by:
        return Evaluation(
            status=Status.REJECTED,
            reasons=(
                f"{listed(refused_by)} refused: a refusal by any required grantor means there"
                " is no consent.",
                *ignored_reasons,
            ),
            obligations=authority.obligations,
            valid_until=authority.valid_until,
        )

    missing = [
        *(item for group in authority.groups for item in _missing_consents(group, decisions)),
        *_missing_child_view(authority, consent.child_view),
        *_missing_hearings(authority, decisions, consent.other_parent_heard),
    ]
    if missing:
        return Evaluation(
            status=Status.PROPOSED,
            reasons=(
                authority.explanation,
                f"Still missing: {'; '.join(missing)}.",
                *ignored_reasons,
            ),
            missing=tuple(missing),
            obligations=authority.obligations,
            valid_until=authority.valid_until,
        )
    return Evaluation(
        status=Status.ACTIVE,
        reasons=(
            _complete_reason(authority, decisions),
            *_child_view_reasons(authority, consent.child_view),
            *_hearing_reasons(authority, decisions),
            *_obligation_reasons(authority),
            *ignored_reasons,
        ),
        obligations=authority.obligations,
        valid_until=authority.valid_until,
    )


def child_view_satisfied(requirement: str, view: ChildView | None) -> bool:
    """Whether the recorded child's view meets `requirement` (Authority.child_view)."""
    heard = (
        view is not None
        and view.heard
        and bool(view.statement.strip())
        and bool(view.heard_by.strip())
    )
    if requirement == "mandatory":
        return heard
    if requirement == "required":
        could_not_be_heard = (
            view is not None and not view.heard and bool(view.not_heard_reason.strip())
        )
        return heard or could_not_be_heard
    return True


def _who_consents(authority: Authority) -> str:
    members = listed(authority.grantors)
    if authority.rule == RULE_ADULT:
        return f"the person is {authority.age} and consents alone"
    if authority.rule == RULE_YOUTH:
        return f"the child is {authority.age} and consents alone"
    if authority.rule == RULE_CHILD_CONFIDENTIAL:
        return (
            f"the child is {authority.age} and consents alone to help the parents are not to"
            " be told about"
        )
    if authority.rule == RULE_CARE_ORDER:
        return (
            f"the child is under a care order, and the barnevernstjeneste holding it ({members})"
            " consents, not the parents"
        )
    if authority.rule in PARENTS_RULES:
        return f"only the holders of parental responsibility ({members}) consent"
    if authority.rule == RULE_NASJONALT_FORLOP:
        return f"for Nasjonalt forløp {members} consent"
    return f"only {members} may consent under the rule {authority.rule}"


def _ended(authority: Authority, reason: str) -> Evaluation:
    return Evaluation(
        status=Status.INACTIVE,
        reasons=(reason,),
        obligations=authority.obligations,
        valid_until=authority.valid_until,
    )


def _authority_ended_reason(authority: Authority, valid_until: date) -> str:
    changed_on = (valid_until + timedelta(days=1)).isoformat()
    age = authority.ends_at_age
    if age is not None:
        return (
            f"The child turned {age} on {changed_on}: the youth must now decide, so a consent"
            f" given under the rule {authority.rule} no longer holds."
        )
    return f"The authority under the rule {authority.rule} ended on {valid_until.isoformat()}."


def latest_answers(signatures: Sequence[Signature]) -> dict[str, Decision]:
    """Each grantor's latest answer: the one that counts (a grantor may change their mind;
    of answers on one day, the one recorded last)."""
    decisions: dict[str, Decision] = {}
    for signature in sorted(signatures, key=lambda signature: signature.when):
        decisions[signature.grantor] = signature.decision
    return decisions


def _latest_decisions(authority: Authority, signatures: Sequence[Signature]) -> dict[str, Decision]:
    """Each authorised grantor's latest answer."""
    allowed = set(authority.grantors)
    return {g: d for g, d in latest_answers(signatures).items() if g in allowed}


def _consented(member: str, decisions: dict[str, Decision]) -> bool:
    return decisions.get(member) is Decision.CONSENT


def _missing_consents(group: GrantorGroup, decisions: dict[str, Decision]) -> list[str]:
    if group.need == "one":
        if any(_consented(member, decisions) for member in group.members):
            return []
        if len(group.members) == 1:
            return [f"consent from {group.members[0]}"]
        return [f"consent from one of {listed(group.members, last='or')}"]
    return [
        f"consent from {member}" for member in group.members if not _consented(member, decisions)
    ]


def _missing_child_view(authority: Authority, view: ChildView | None) -> list[str]:
    if child_view_satisfied(authority.child_view, view):
        return []
    if authority.child_view == "mandatory":
        return [
            "record the child's view (heard, what was said, by whom):"
            f" mandatory from {CHILD_VIEW_MANDATORY_FROM_AGE}"
        ]
    return [
        "record the child's view (heard, what was said, by whom) or why the child could not"
        f" be heard: required from {CHILD_VIEW_REQUIRED_FROM_AGE}"
    ]


def _parents_not_signed(authority: Authority, decisions: dict[str, Decision]) -> list[str]:
    """Holders of parental responsibility who did not sign, when one parent was enough."""
    if not authority.one_parent_must_hear_other:
        return []
    parents = [group for group in authority.groups if group.role == "parents"]
    if not any(_consented(member, decisions) for group in parents for member in group.members):
        return []  # nobody to hear the other yet; the missing consent says so
    return [member for group in parents for member in group.members if member not in decisions]


def _missing_hearings(
    authority: Authority, decisions: dict[str, Decision], heard: tuple[str, ...]
) -> list[str]:
    return [
        f"record that {parent} was heard"
        for parent in _parents_not_signed(authority, decisions)
        if parent not in heard
    ]


def _complete_reason(authority: Authority, decisions: dict[str, Decision]) -> str:
    consented = [grantor for grantor in authority.grantors if _consented(grantor, decisions)]
    return (
        f"{listed(consented)} consented, which is what the rule {authority.rule} requires"
        f" ({authority.legal_reference})."
    )


def _child_view_reasons(authority: Authority, view: ChildView | None) -> list[str]:
    if view is not None and view.objects:
        return [
            f"The child objected (recorded by {view.heard_by}); the grantors decided, and the"
            " child's view must be given weight, great weight from 12 (pbrl §4-4)."
        ]
    if authority.child_view not in ("mandatory", "required") or view is None:
        return []
    if view.heard:
        return [f"The child's view was recorded by {view.heard_by}."]
    return [f"The child could not be heard: {view.not_heard_reason.strip()}."]


def _hearing_reasons(authority: Authority, decisions: dict[str, Decision]) -> list[str]:
    others = _parents_not_signed(authority, decisions)
    if not others:
        return []
    verb = "was" if len(others) == 1 else "were"
    return [f"{listed(others)} {verb} heard, as one parent's consent requires."]


def _obligation_reasons(authority: Authority) -> list[str]:
    if HIDE_FROM_PARENTS in authority.obligations:
        return ["Information under this consent must be withheld from the parents."]
    return []
