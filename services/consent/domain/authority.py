"""Who may consent for a child, for a purpose, on a given day.

Consent authority moves with the child's age and with care orders (pasient- og
brukerrettighetsloven, pbrl §4-3 and §4-4; DOMAIN.md §4): the parents with foreldreansvar
consent for a child under 16, both of them unless the help is daily care or needed to avoid
harm; a barnevernstjeneste holding a care order consents instead of the parents; from 12 a
child may consent alone to help the parents are not to be told about; sharing with
barnevern needs the child's own consent too from 15; from 16 the youth decides. A consent
the child gave itself holds as long as the child stays entitled to give it (a birthday
only ends consents others gave on the child's behalf). Getting this wrong either lets the
wrong person open a child's records or blocks care, so the answer never guesses: without a
confirmed birth date or a registered holder of parental responsibility it says what must
be recorded first.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

from services.consent.domain.model import (
    Authority,
    CareOrderFact,
    ChildFacts,
    ConsentFlags,
    GrantorGroup,
    LegalBasis,
    Purpose,
)

ADULT_AGE = 18
HEALTH_MAJORITY_AGE = 16  # helserettslig myndighetsalder
CONFIDENTIAL_FROM_AGE = 12
NASJONALT_FORLOP_PARENTS_BELOW_AGE = 15
BARNEVERN_SHARING_CHILD_FROM_AGE = 15
CHILD_VIEW_MANDATORY_FROM_AGE = 12
CHILD_VIEW_REQUIRED_FROM_AGE = 7

CONFIDENTIAL_PURPOSES = frozenset({Purpose.HELSEHJELP, Purpose.INFORMASJONSDELING})
HIDE_FROM_PARENTS = "hide-from-parents"

RULE_BIRTH_DATE_NEEDED = LegalBasis.BIRTH_DATE_NEEDED
RULE_BORN_AFTER_DAY = LegalBasis.BIRTH_DATE_AFTER_DAY
RULE_ADULT = LegalBasis.ADULT
RULE_YOUTH = LegalBasis.YOUTH_16
RULE_CARE_ORDER = LegalBasis.CARE_ORDER
RULE_CHILD_CONFIDENTIAL = LegalBasis.CHILD_CONFIDENTIAL
RULE_CHILD_CONFIDENTIAL_NOT_APPLICABLE = LegalBasis.CHILD_CONFIDENTIAL_NOT_APPLICABLE
RULE_PARENTS = LegalBasis.PARENTS
RULE_PARENTS_ONE_DAILY_CARE = LegalBasis.PARENTS_ONE_DAILY_CARE
RULE_PARENTS_ONE_NECESSARY = LegalBasis.PARENTS_ONE_NECESSARY
RULE_NASJONALT_FORLOP = LegalBasis.NASJONALT_FORLOP
RULE_BARNEVERN_FROM_15 = LegalBasis.BARNEVERN_SHARING_FROM_15

PARENTS_RULES = frozenset({RULE_PARENTS, RULE_PARENTS_ONE_DAILY_CARE, RULE_PARENTS_ONE_NECESSARY})

ON_BEHALF_RULES = PARENTS_RULES | {RULE_CARE_ORDER}
"""Rules under which others consent on the child's behalf, without the child: such a
consent cannot release what the child keeps from the parents (pbrl §3-4 second ledd)."""

REF_ADULT = "pbrl §4-3 første ledd bokstav a"
REF_YOUTH = "pbrl §4-3 første ledd bokstav b"
REF_CARE_ORDER = "pbrl §4-4 fjerde ledd"
REF_CHILD_CONFIDENTIAL = "pbrl §3-4 andre ledd, §4-3 første ledd bokstav c"
REF_PARENTS = "pbrl §4-4 første ledd"
REF_PARENTS_ONE = "pbrl §4-4 første og andre ledd"
REF_NASJONALT_FORLOP = "Nasjonalt forløp for barnevern (Helsedirektoratet); pbrl §4-4"
REF_BARNEVERN_FROM_15 = "pbrl §4-4; hpl §22; samtykke fra barn over 15 ved kontakt med barnevernet"
REF_BIRTH_DATE = "pbrl §4-3, §4-4"

REGISTER_HOLDERS = (
    "register the holders of parental responsibility"
    " (RelatedPerson with no-basis parental-responsibility)"
)


def birthday(birth_date: date, years: int) -> date:
    """The date a child born on `birth_date` turns `years`.

    A child born on 29 February turns a year older on 1 March in years without 29 February:
    the year is not full until 28 February has ended, so authority never passes to the
    child a day early.
    """
    try:
        return birth_date.replace(year=birth_date.year + years)
    except ValueError:
        return date(birth_date.year + years, 3, 1)


def age_on(birth_date: date, day: date) -> int:
    """The child's age in full years on `day` (see `birthday` for 29 February)."""
    if day < birth_date:
        raise ValueError(f"{day} is before the birth date {birth_date}")
    years = day.year - birth_date.year
    return years if day >= birthday(birth_date, years) else years - 1


def who_may_consent(
    child: ChildFacts,
    purpose: Purpose,
    on: date,
    flags: ConsentFlags = ConsentFlags(),  # noqa: B008 - frozen, never mutated
) -> Authority:
    """Who may consent for `child` to `purpose` on the day `on`, and under which rule."""
    if child.birth_date is None or not child.birth_date_confirmed:
        return _birth_date_needed(child)
    if child.birth_date > on:
        return _born_after_day(child, child.birth_date, on)
    age = age_on(child.birth_date, on)
    if age >= ADULT_AGE:
        return _adult(child, age)
    if age < HEALTH_MAJORITY_AGE and flags.confidential_from_parents:
        # The child's own right to confidential help (pbrl §4-3 c) is checked before care
        # orders: a care order moves the parents' authority, not the child's.
        return _confidential(child, purpose, age)
    if purpose is Purpose.NASJONALT_FORLOP:
        forlop = _nasjonalt_forlop(child, age, on)
        return _until_care_orders_change(forlop, child, on)
    if age >= HEALTH_MAJORITY_AGE:
        return _youth(child, age)
    care_order_holders = _care_order_holders(child.care_orders, on)
    if care_order_holders:
        authority = _care_order(child, child.birth_date, age, care_order_holders)
    else:
        authority = _parents(child, child.birth_date, age, flags)
    if flags.to_barnevern and age >= BARNEVERN_SHARING_CHILD_FROM_AGE:
        authority = _with_youth_to_barnevern(authority, child)
    elif flags.to_barnevern and authority.decidable:
        # On the child's behalf only until 15: from then the youth must consent as well.
        authority = replace(
            authority,
            valid_until=_day_before(birthday(child.birth_date, BARNEVERN_SHARING_CHILD_FROM_AGE)),
            ends_at_age=BARNEVERN_SHARING_CHILD_FROM_AGE,
        )
    return _until_care_orders_change(authority, child, on)


def _until_care_orders_change(authority: Authority, child: ChildFacts, on: date) -> Authority:
    """End `valid_until` where a care order already recorded moves the authority: the
    holder's when its order ends, the parents' the day before a recorded order starts.
    The sweep then ends such consents on that day, as it does on a birthday."""
    roles = {group.role for group in authority.groups}
    bounds: list[date] = []
    if "care-order-holder" in roles:
        active = [order for order in child.care_orders if order.active_on(on)]
        if active and all(order.end is not None for order in active):
            bounds.append(max(order.end for order in active if order.end is not None))
    if "parents" in roles:
        bounds += [_day_before(order.start) for order in child.care_orders if order.start > on]
    if not bounds:
        return authority
    ends = [*bounds, *([authority.valid_until] if authority.valid_until else [])]
    if min(ends) == authority.valid_until:
        return authority
    return replace(authority, valid_until=min(ends), ends_at_age=None)


def child_view_on_behalf(age: int) -> str:
    """How strictly the child must be heard (medvirkning) before others consent for it."""
    if age >= CHILD_VIEW_MANDATORY_FROM_AGE:
        return "mandatory"
    if age >= CHILD_VIEW_REQUIRED_FROM_AGE:
        return "required"
    return "recommended"


def listed(references: tuple[str, ...] | list[str], last: str = "and") -> str:
    """`A`, `A and B`, `A, B and C` (or `A, B or C` with `last="or"`)."""
    if len(references) <= 1:
        return "".join(references)
    return f"{', '.join(references[:-1])} {last} {references[-1]}"


def _day_before(day: date) -> date:
    return day - timedelta(days=1)


def _care_order_holders(orders: tuple[CareOrderFact, ...], on: date) -> tuple[str, ...]:
    holders: list[str] = []
    for order in orders:
        if order.active_on(on) and order.organization not in holders:
            holders.append(order.organization)
    return tuple(holders)


def _birth_date_needed(child: ChildFacts) -> Authority:
    return Authority(
        decidable=False,
        rule=RULE_BIRTH_DATE_NEEDED,
        legal_reference=REF_BIRTH_DATE,
        explanation=(
            f"{child.patient} has no confirmed birth date, and who may consent depends on"
            " the child's age; a D-nummer or an unknown birth date never gives an age."
        ),
        missing=(f"record a confirmed birth date on {child.patient} (Patient.birthDate)",),
        patient=child.patient,
        parents_without_responsibility=child.parents_without_responsibility,
    )


def _born_after_day(child: ChildFacts, birth_date: date, on: date) -> Authority:
    return Authority(
        decidable=False,
        rule=RULE_BORN_AFTER_DAY,
        legal_reference=REF_BIRTH_DATE,
        explanation=(
            f"The birth date recorded for {child.patient} ({birth_date.isoformat()}) is after"
            f" {on.isoformat()}, so the child's age on that day is unknown."
        ),
        missing=(f"correct the birth date on {child.patient} (Patient.birthDate)",),
        patient=child.patient,
        parents_without_responsibility=child.parents_without_responsibility,
    )


def _adult(child: ChildFacts, age: int) -> Authority:
    return Authority(
        decidable=True,
        rule=RULE_ADULT,
        legal_reference=REF_ADULT,
        explanation=f"{child.patient} is {age}, an adult, and consents alone.",
        age=age,
        groups=(GrantorGroup(role="person", members=(child.patient,), need="all"),),
        patient=child.patient,
        parents_without_responsibility=child.parents_without_responsibility,
    )


def _youth(child: ChildFacts, age: int) -> Authority:
    return Authority(
        decidable=True,
        rule=RULE_YOUTH,
        legal_reference=REF_YOUTH,
        explanation=(
            f"{child.patient} is {age} and has reached helserettslig myndighetsalder: the"
            " youth consents alone, and the parents cannot consent for the youth."
        ),
        age=age,
        groups=(GrantorGroup(role="child", members=(child.patient,), need="all"),),
        patient=child.patient,
        parents_without_responsibility=child.parents_without_responsibility,
    )


def _confidential(child: ChildFacts, purpose: Purpose, age: int) -> Authority:
    if age < CONFIDENTIAL_FROM_AGE or purpose not in CONFIDENTIAL_PURPOSES:
        return Authority(
            decidable=False,
            rule=RULE_CHILD_CONFIDENTIAL_NOT_APPLICABLE,
            legal_reference=REF_CHILD_CONFIDENTIAL,
            explanation=(
                "A child may consent alone to help the parents are not to be told about only"
                " from 12 and only to health care or information sharing;"
                f" {child.patient} is {age} and the purpose is {purpose.value}."
            ),
            age=age,
            missing=(
                "remove the confidential-from-parents flag, so that the holders of parental"
                " responsibility consent",
            ),
            patient=child.patient,
            parents_without_responsibility=child.parents_without_responsibility,
        )
    return Authority(
        decidable=True,
        rule=RULE_CHILD_CONFIDENTIAL,
        legal_reference=REF_CHILD_CONFIDENTIAL,
        explanation=(
            f"{child.patient} is {age} and, for reasons that should be respected, does not"
            " want the parents told: the child consents alone and the information is"
            " withheld from the parents."
        ),
        age=age,
        groups=(GrantorGroup(role="child", members=(child.patient,), need="all"),),
        obligations=(HIDE_FROM_PARENTS,),
        patient=child.patient,
        parents_without_responsibility=child.parents_without_responsibility,
    )


def _with_youth_to_barnevern(authority: Authority, child: ChildFacts) -> Authority:
    """`authority` for sharing with barnevern when the child is 15: the youth consents as
    well as whoever consents on its behalf, and a refusal by the youth blocks. The youth's
    own signature is its view; at 16 the youth alone is entitled, and has consented."""
    if not authority.decidable:
        return authority
    return replace(
        authority,
        rule=RULE_BARNEVERN_FROM_15,
        legal_reference=REF_BARNEVERN_FROM_15,
        explanation=(
            f"{authority.explanation} Sharing with a barnevernstjeneste that is not mandatory"
            f" needs the consent of a child of {BARNEVERN_SHARING_CHILD_FROM_AGE} or more as"
            f" well: {child.patient} must consent too."
        ),
        groups=(
            GrantorGroup(role="child", members=(child.patient,), need="all"),
            *authority.groups,
        ),
        child_view="not-applicable",
        valid_until=None,
        ends_at_age=None,
    )


def _care_order(
    child: ChildFacts, birth_date: date, age: int, holders: tuple[str, ...]
) -> Authority:
    return Authority(
        decidable=True,
        rule=RULE_CARE_ORDER,
        legal_reference=REF_CARE_ORDER,
        explanation=(
            f"{child.patient} is {age} and under a care order: the barnevernstjeneste"
            f" holding it ({listed(holders)}) consents, not the parents."
        ),
        age=age,
        groups=(GrantorGroup(role="care-order-holder", members=holders, need="one"),),
        child_view=child_view_on_behalf(age),
        valid_until=_day_before(birthday(birth_date, HEALTH_MAJORITY_AGE)),
        ends_at_age=HEALTH_MAJORITY_AGE,
        patient=child.patient,
        parents_without_responsibility=child.parents_without_responsibility,
    )


def _without_responsibility_note(child: ChildFacts) -> str:
    others = child.parents_without_responsibility
    if not others:
        return ""
    verb = "has" if len(others) == 1 else "have"
    return f" {listed(others)} {verb} no parental responsibility and cannot consent."


def _parents(child: ChildFacts, birth_date: date, age: int, flags: ConsentFlags) -> Authority:
    holders = child.parents_with_responsibility
    if not holders:
        return Authority(
            decidable=False,
            rule=RULE_PARENTS,
            legal_reference=REF_PARENTS,
            explanation=(
                f"{child.patient} is {age}, so the holders of parental responsibility consent,"
                " but none is registered." + _without_responsibility_note(child)
            ),
            age=age,
            missing=(REGISTER_HOLDERS,),
            patient=child.patient,
            parents_without_responsibility=child.parents_without_responsibility,
        )
    if flags.daily_care or flags.necessary_to_avoid_harm:
        if flags.daily_care:
            rule, because = RULE_PARENTS_ONE_DAILY_CARE, "the help is part of daily care"
        else:
            rule, because = (
                RULE_PARENTS_ONE_NECESSARY,
                "health personnel consider the help necessary so the child is not harmed",
            )
        must_hear_other = len(holders) > 1
        who = (
            f"one of the holders of parental responsibility ({listed(holders, last='or')}) is"
            " enough, and the other must be heard"
            if must_hear_other
            else f"the holder of parental responsibility ({holders[0]}) consents"
        )
        return Authority(
            decidable=True,
            rule=rule,
            legal_reference=REF_PARENTS_ONE,
            explanation=(
                f"{child.patient} is {age} and {because}: {who}."
                + _without_responsibility_note(child)
            ),
            age=age,
            groups=(GrantorGroup(role="parents", members=holders, need="one"),),
            child_view=child_view_on_behalf(age),
            one_parent_must_hear_other=must_hear_other,
            valid_until=_day_before(birthday(birth_date, HEALTH_MAJORITY_AGE)),
            ends_at_age=HEALTH_MAJORITY_AGE,
            patient=child.patient,
            parents_without_responsibility=child.parents_without_responsibility,
        )
    every = {1: "the holder", 2: "both holders"}.get(len(holders), "every holder")
    return Authority(
        decidable=True,
        rule=RULE_PARENTS,
        legal_reference=REF_PARENTS,
        explanation=(
            f"{child.patient} is {age}: {every} of parental responsibility"
            f" ({listed(holders)}) must consent." + _without_responsibility_note(child)
        ),
        age=age,
        groups=(GrantorGroup(role="parents", members=holders, need="all"),),
        child_view=child_view_on_behalf(age),
        valid_until=_day_before(birthday(birth_date, HEALTH_MAJORITY_AGE)),
        ends_at_age=HEALTH_MAJORITY_AGE,
        patient=child.patient,
        parents_without_responsibility=child.parents_without_responsibility,
    )


def _nasjonalt_forlop(child: ChildFacts, age: int, on: date) -> Authority:
    child_group = GrantorGroup(role="child", members=(child.patient,), need="all")
    if age >= NASJONALT_FORLOP_PARENTS_BELOW_AGE:
        return Authority(
            decidable=True,
            rule=RULE_NASJONALT_FORLOP,
            legal_reference=REF_NASJONALT_FORLOP,
            explanation=(
                f"{child.patient} is {age}: from 15 the child's own consent is enough for"
                " Nasjonalt forløp."
            ),
            age=age,
            groups=(child_group,),
            patient=child.patient,
            parents_without_responsibility=child.parents_without_responsibility,
        )
    care_order_holders = _care_order_holders(child.care_orders, on)
    if care_order_holders:
        others = GrantorGroup(role="care-order-holder", members=care_order_holders, need="one")
        who = (
            "the barnevernstjeneste holding the care order"
            f" ({listed(care_order_holders)}) must also consent, not the parents"
        )
    elif child.parents_with_responsibility:
        others = GrantorGroup(role="parents", members=child.parents_with_responsibility, need="all")
        who = (
            "the holders of parental responsibility"
            f" ({listed(child.parents_with_responsibility)}) must also consent"
        )
    else:
        return Authority(
            decidable=False,
            rule=RULE_NASJONALT_FORLOP,
            legal_reference=REF_NASJONALT_FORLOP,
            explanation=(
                f"{child.patient} is {age}: under 15 the holders of parental responsibility"
                " must consent to Nasjonalt forløp with the child, but none is registered."
                + _without_responsibility_note(child)
            ),
            age=age,
            missing=(REGISTER_HOLDERS,),
            patient=child.patient,
            parents_without_responsibility=child.parents_without_responsibility,
        )
    return Authority(
        decidable=True,
        rule=RULE_NASJONALT_FORLOP,
        legal_reference=REF_NASJONALT_FORLOP,
        explanation=(
            f"{child.patient} is {age}: the child consents to Nasjonalt forløp and, since the"
            f" child is under 15, {who}." + _without_responsibility_note(child)
        ),
        age=age,
        groups=(child_group, others),
        patient=child.patient,
        parents_without_responsibility=child.parents_without_responsibility,
    )
