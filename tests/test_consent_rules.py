"""Table tests of the consent rules (services/consent/domain): who may consent for a child
on a day, and the status a consent's signatures give it. Pure functions, no database.

DOMAIN.md §4; pbrl = pasient- og brukerrettighetsloven.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.consent.domain.authority import (
    REGISTER_HOLDERS,
    age_on,
    birthday,
    who_may_consent,
)
from services.consent.domain.lifecycle import (
    authority_error,
    evaluate,
    unauthorised_grantors,
)
from services.consent.domain.model import (
    CareOrderFact,
    ChildFacts,
    ChildView,
    ConsentFacts,
    ConsentFlags,
    Decision,
    GrantorGroup,
    Purpose,
    Signature,
    Status,
)

DAY = date(2025, 6, 2)
CHILD = "Patient/c"
P1, P2, P3 = "RelatedPerson/p1", "RelatedPerson/p2", "RelatedPerson/p3"
BV, BV2 = "Organization/bv", "Organization/bv2"

ACTIVE_ORDER = CareOrderFact(BV, start=date(2024, 1, 1))
ENDED_ORDER = CareOrderFact(BV, start=date(2023, 1, 1), end=date(2025, 1, 31))
FUTURE_ORDER = CareOrderFact(BV, start=date(2025, 7, 1))
ENDS_TODAY_ORDER = CareOrderFact(BV, start=date(2024, 1, 1), end=DAY)

HEARD = ChildView(heard=True, statement="Wants help to sleep.", heard_by="Practitioner/h")
HEARD_NOTHING_SAID = ChildView(heard=True, statement=" ", heard_by="Practitioner/h")
HEARD_BY_NOBODY = ChildView(heard=True, statement="Wants help to sleep.")
NOT_HEARD = ChildView(heard=False, not_heard_reason="The child was too ill to talk.")
NOT_HEARD_NO_REASON = ChildView(heard=False)

NO_FLAGS = ConsentFlags()
DAILY_CARE = ConsentFlags(daily_care=True)
NECESSARY = ConsentFlags(necessary_to_avoid_harm=True)
CONFIDENTIAL = ConsentFlags(confidential_from_parents=True)
TO_BARNEVERN = ConsentFlags(to_barnevern=True)

HELSEHJELP = Purpose.HELSEHJELP
FORLOP = Purpose.NASJONALT_FORLOP
INFODELING = Purpose.INFORMASJONSDELING

MANDATORY_VIEW = "record the child's view (heard, what was said, by whom): mandatory from 12"
REQUIRED_VIEW = (
    "record the child's view (heard, what was said, by whom) or why the child could not be"
    " heard: required from 7"
)
BIRTH_DATE_MISSING = f"record a confirmed birth date on {CHILD} (Patient.birthDate)"


def born(age: int) -> date:
    """A birth date (15 March) that makes the child `age` on DAY."""
    return date(DAY.year - age, 3, 15)


def turns(age_now: int, years: int) -> date:
    """The day before a child who is `age_now` on DAY turns `years`."""
    return date(DAY.year - age_now + years, 3, 14)


def child(
    age: int | None,
    *,
    holders: tuple[str, ...] = (P1, P2),
    without: tuple[str, ...] = (),
    care_orders: tuple[CareOrderFact, ...] = (),
    confirmed: bool = True,
) -> ChildFacts:
    return ChildFacts(
        patient=CHILD,
        birth_date=None if age is None else born(age),
        birth_date_confirmed=confirmed,
        parents_with_responsibility=holders,
        parents_without_responsibility=without,
        care_orders=care_orders,
    )


def consents(*grantors: str) -> tuple[Signature, ...]:
    return tuple(sign(grantor) for grantor in grantors)


def sign(grantor: str, decision: Decision = Decision.CONSENT, when: date = DAY) -> Signature:
    return Signature(
        grantor, decision, collected_by="Practitioner/h", method="in-person", when=when
    )


def person(member: str = CHILD) -> GrantorGroup:
    return GrantorGroup("person", (member,), "all")


def the_child() -> GrantorGroup:
    return GrantorGroup("child", (CHILD,), "all")


def parents(*members: str, need: str = "all") -> GrantorGroup:
    return GrantorGroup("parents", members or (P1, P2), need)


def care_order_holder(*members: str) -> GrantorGroup:
    return GrantorGroup("care-order-holder", members or (BV,), "one")


# --- who may consent --------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Decided:
    name: str
    facts: ChildFacts
    purpose: Purpose = HELSEHJELP
    flags: ConsentFlags = NO_FLAGS
    rule: str
    reference: str
    groups: tuple[GrantorGroup, ...]
    child_view: str = "not-applicable"
    hear_other: bool = False
    obligations: tuple[str, ...] = ()
    valid_until: date | None = None


ADULT_REF = "pbrl §4-3 første ledd bokstav a"
YOUTH_REF = "pbrl §4-3 første ledd bokstav b"
PARENTS_REF = "pbrl §4-4 første ledd"
PARENTS_ONE_REF = "pbrl §4-4 første og andre ledd"
CARE_ORDER_REF = "pbrl §4-4 fjerde ledd"
CONFIDENTIAL_REF = "pbrl §3-4 andre ledd, §4-3 første ledd bokstav c"
FORLOP_REF = "Nasjonalt forløp for barnevern (Helsedirektoratet); pbrl §4-4"
BARNEVERN_15_REF = "pbrl §4-4; hpl §22; samtykke fra barn over 15 ved kontakt med barnevernet"

DECIDED = [
    Decided(
        name="adult-18",
        facts=child(18),
        rule="adult",
        reference=ADULT_REF,
        groups=(person(),),
    ),
    Decided(
        name="adult-20-nasjonalt-forlop",
        facts=child(20, care_orders=(ACTIVE_ORDER,)),
        purpose=FORLOP,
        rule="adult",
        reference=ADULT_REF,
        groups=(person(),),
    ),
    Decided(
        name="youth-16",
        facts=child(16),
        rule="youth-16",
        reference=YOUTH_REF,
        groups=(the_child(),),
    ),
    Decided(
        name="youth-17-daily-care-still-alone",
        facts=child(17),
        flags=DAILY_CARE,
        rule="youth-16",
        reference=YOUTH_REF,
        groups=(the_child(),),
    ),
    Decided(
        name="youth-16-care-order-still-alone",
        facts=child(16, care_orders=(ACTIVE_ORDER,)),
        rule="youth-16",
        reference=YOUTH_REF,
        groups=(the_child(),),
    ),
    Decided(
        name="youth-17-confidential-flag-irrelevant",
        facts=child(17),
        flags=CONFIDENTIAL,
        rule="youth-16",
        reference=YOUTH_REF,
        groups=(the_child(),),
    ),
    Decided(
        name="parents-15-both",
        facts=child(15),
        rule="parents",
        reference=PARENTS_REF,
        groups=(parents(),),
        child_view="mandatory",
        valid_until=turns(15, 16),
    ),
    Decided(
        name="parents-15-daily-care-one",
        facts=child(15),
        flags=DAILY_CARE,
        rule="parents-one-daily-care",
        reference=PARENTS_ONE_REF,
        groups=(parents(need="one"),),
        child_view="mandatory",
        hear_other=True,
        valid_until=turns(15, 16),
    ),
    Decided(
        name="parents-9-necessary-one",
        facts=child(9),
        flags=NECESSARY,
        rule="parents-one-necessary",
        reference=PARENTS_ONE_REF,
        groups=(parents(need="one"),),
        child_view="required",
        hear_other=True,
        valid_until=turns(9, 16),
    ),
    Decided(
        name="parents-daily-care-single-holder-hears-nobody",
        facts=child(10, holders=(P1,)),
        flags=DAILY_CARE,
        rule="parents-one-daily-care",
        reference=PARENTS_ONE_REF,
        groups=(parents(P1, need="one"),),
        child_view="required",
        valid_until=turns(10, 16),
    ),
    Decided(
        name="parent-without-responsibility-is-no-grantor",
        facts=child(10, holders=(P1,), without=(P3,)),
        rule="parents",
        reference=PARENTS_REF,
        groups=(parents(P1),),
        child_view="required",
        valid_until=turns(10, 16),
    ),
    Decided(
        name="child-view-12-mandatory",
        facts=child(12),
        rule="parents",
        reference=PARENTS_REF,
        groups=(parents(),),
        child_view="mandatory",
        valid_until=turns(12, 16),
    ),
    Decided(
        name="child-view-11-required",
        facts=child(11),
        rule="parents",
        reference=PARENTS_REF,
        groups=(parents(),),
        child_view="required",
        valid_until=turns(11, 16),
    ),
    Decided(
        name="child-view-7-required",
        facts=child(7),
        rule="parents",
        reference=PARENTS_REF,
        groups=(parents(),),
        child_view="required",
        valid_until=turns(7, 16),
    ),
    Decided(
        name="child-view-6-recommended",
        facts=child(6),
        rule="parents",
        reference=PARENTS_REF,
        groups=(parents(),),
        child_view="recommended",
        valid_until=turns(6, 16),
    ),
    Decided(
        name="newborn-recommended",
        facts=child(0),
        rule="parents",
        reference=PARENTS_REF,
        groups=(parents(),),
        child_view="recommended",
        valid_until=turns(0, 16),
    ),
    Decided(
        name="care-order-13",
        facts=child(13, care_orders=(ACTIVE_ORDER,)),
        rule="care-order",
        reference=CARE_ORDER_REF,
        groups=(care_order_holder(),),
        child_view="mandatory",
        valid_until=turns(13, 16),
    ),
    Decided(
        name="care-order-overrides-daily-care",
        facts=child(8, care_orders=(ACTIVE_ORDER,)),
        flags=DAILY_CARE,
        rule="care-order",
        reference=CARE_ORDER_REF,
        groups=(care_order_holder(),),
        child_view="required",
        valid_until=turns(8, 16),
    ),
    Decided(
        name="care-order-ending-today-still-holds",
        facts=child(13, care_orders=(ENDS_TODAY_ORDER,)),
        rule="care-order",
        reference=CARE_ORDER_REF,
        groups=(care_order_holder(),),
        child_view="mandatory",
        valid_until=DAY,  # the holder's authority ends with its recorded order
    ),
    Decided(
        name="care-order-holders-deduplicated-in-order",
        facts=child(
            13,
            care_orders=(
                ENDED_ORDER,
                CareOrderFact(BV2, start=date(2025, 2, 1)),
                ACTIVE_ORDER,
                CareOrderFact(BV2, start=date(2025, 3, 1)),
            ),
        ),
        rule="care-order",
        reference=CARE_ORDER_REF,
        groups=(care_order_holder(BV2, BV),),
        child_view="mandatory",
        valid_until=turns(13, 16),
    ),
    Decided(
        name="care-order-ended-parents-again",
        facts=child(13, care_orders=(ENDED_ORDER,)),
        rule="parents",
        reference=PARENTS_REF,
        groups=(parents(),),
        child_view="mandatory",
        valid_until=turns(13, 16),
    ),
    Decided(
        name="care-order-not-started-parents",
        facts=child(13, care_orders=(FUTURE_ORDER,)),
        rule="parents",
        reference=PARENTS_REF,
        groups=(parents(),),
        child_view="mandatory",
        valid_until=FUTURE_ORDER.start - timedelta(days=1),  # the order moves authority
    ),
    Decided(
        name="confidential-13-helsehjelp",
        facts=child(13),
        flags=CONFIDENTIAL,
        rule="child-confidential",
        reference=CONFIDENTIAL_REF,
        groups=(the_child(),),
        obligations=("hide-from-parents",),
    ),
    Decided(
        name="confidential-12-informasjonsdeling",
        facts=child(12),
        purpose=Purpose.INFORMASJONSDELING,
        flags=CONFIDENTIAL,
        rule="child-confidential",
        reference=CONFIDENTIAL_REF,
        groups=(the_child(),),
        obligations=("hide-from-parents",),
    ),
    Decided(
        name="confidential-15-under-care-order-still-child",
        facts=child(15, care_orders=(ACTIVE_ORDER,)),
        flags=CONFIDENTIAL,
        rule="child-confidential",
        reference=CONFIDENTIAL_REF,
        groups=(the_child(),),
        obligations=("hide-from-parents",),
    ),
    Decided(
        name="nasjonalt-forlop-14-child-and-parents",
        facts=child(14),
        purpose=FORLOP,
        rule="nasjonalt-forlop",
        reference=FORLOP_REF,
        groups=(the_child(), parents()),
    ),
    Decided(
        name="nasjonalt-forlop-14-daily-care-still-both-parents",
        facts=child(14),
        purpose=FORLOP,
        flags=DAILY_CARE,
        rule="nasjonalt-forlop",
        reference=FORLOP_REF,
        groups=(the_child(), parents()),
    ),
    Decided(
        name="nasjonalt-forlop-15-child-only",
        facts=child(15),
        purpose=FORLOP,
        rule="nasjonalt-forlop",
        reference=FORLOP_REF,
        groups=(the_child(),),
    ),
    Decided(
        name="nasjonalt-forlop-17-child-only",
        facts=child(17),
        purpose=FORLOP,
        rule="nasjonalt-forlop",
        reference=FORLOP_REF,
        groups=(the_child(),),
    ),
    Decided(
        name="nasjonalt-forlop-10-care-order-holder-not-parents",
        facts=child(10, care_orders=(ACTIVE_ORDER,)),
        purpose=FORLOP,
        rule="nasjonalt-forlop",
        reference=FORLOP_REF,
        groups=(the_child(), care_order_holder()),
    ),
    Decided(
        name="nasjonalt-forlop-5-the-childs-signature-is-its-view",
        facts=child(5),
        purpose=FORLOP,
        rule="nasjonalt-forlop",
        reference=FORLOP_REF,
        groups=(the_child(), parents()),
    ),
    Decided(
        name="to-barnevern-15-youth-and-parents",
        facts=child(15),
        purpose=INFODELING,
        flags=TO_BARNEVERN,
        rule="barnevern-sharing-from-15",
        reference=BARNEVERN_15_REF,
        groups=(the_child(), parents()),
    ),
    Decided(
        name="to-barnevern-15-youth-and-care-order-holder",
        facts=child(15, care_orders=(ACTIVE_ORDER,)),
        purpose=Purpose.ANSVARSGRUPPE,
        flags=TO_BARNEVERN,
        rule="barnevern-sharing-from-15",
        reference=BARNEVERN_15_REF,
        groups=(the_child(), care_order_holder()),
    ),
    Decided(
        name="to-barnevern-15-daily-care-youth-and-one-parent",
        facts=child(15),
        purpose=INFODELING,
        flags=ConsentFlags(daily_care=True, to_barnevern=True),
        rule="barnevern-sharing-from-15",
        reference=BARNEVERN_15_REF,
        groups=(the_child(), parents(need="one")),
        hear_other=True,
    ),
    Decided(
        name="to-barnevern-14-parents-alone-until-15",
        facts=child(14),
        purpose=INFODELING,
        flags=TO_BARNEVERN,
        rule="parents",
        reference=PARENTS_REF,
        groups=(parents(),),
        child_view="mandatory",
        valid_until=turns(14, 15),
    ),
    Decided(
        name="to-barnevern-15-whatever-the-purpose",
        facts=child(15),
        flags=TO_BARNEVERN,
        rule="barnevern-sharing-from-15",
        reference=BARNEVERN_15_REF,
        groups=(the_child(), parents()),
    ),
    Decided(
        name="to-barnevern-16-youth-alone",
        facts=child(16),
        purpose=INFODELING,
        flags=TO_BARNEVERN,
        rule="youth-16",
        reference=YOUTH_REF,
        groups=(the_child(),),
    ),
]


@pytest.mark.parametrize("case", DECIDED, ids=[case.name for case in DECIDED])
def test_who_may_consent_decides(case: Decided) -> None:
    authority = who_may_consent(case.facts, case.purpose, DAY, case.flags)
    assert authority.decidable
    assert authority.rule == case.rule
    assert authority.legal_reference == case.reference
    assert authority.groups == case.groups
    assert authority.child_view == case.child_view
    assert authority.one_parent_must_hear_other is case.hear_other
    assert authority.obligations == case.obligations
    assert authority.valid_until == case.valid_until
    assert authority.age == age_on(born_on(case.facts), DAY)
    assert authority.missing == ()
    assert authority.patient == CHILD
    assert authority.explanation.endswith(".")


def born_on(facts: ChildFacts) -> date:
    assert facts.birth_date is not None
    return facts.birth_date


@dataclass(frozen=True, kw_only=True)
class Undecided:
    name: str
    facts: ChildFacts
    purpose: Purpose = HELSEHJELP
    flags: ConsentFlags = NO_FLAGS
    rule: str
    missing: str
    age: int | None


UNDECIDED = [
    Undecided(
        name="d-nummer-birth-date-unconfirmed",
        facts=child(10, confirmed=False),
        rule="birth-date-needed",
        missing=BIRTH_DATE_MISSING,
        age=None,
    ),
    Undecided(
        name="d-nummer-even-when-adult-looking",
        facts=child(30, confirmed=False),
        rule="birth-date-needed",
        missing=BIRTH_DATE_MISSING,
        age=None,
    ),
    Undecided(
        name="birth-date-unknown",
        facts=child(None),
        rule="birth-date-needed",
        missing=BIRTH_DATE_MISSING,
        age=None,
    ),
    Undecided(
        name="birth-date-after-the-day",
        facts=ChildFacts(CHILD, birth_date=DAY + timedelta(days=1)),
        rule="birth-date-after-day",
        missing=f"correct the birth date on {CHILD} (Patient.birthDate)",
        age=None,
    ),
    Undecided(
        name="confidential-11-too-young",
        facts=child(11),
        flags=CONFIDENTIAL,
        rule="child-confidential-not-applicable",
        missing=(
            "remove the confidential-from-parents flag, so that the holders of parental"
            " responsibility consent"
        ),
        age=11,
    ),
    Undecided(
        name="confidential-13-individuell-plan-wrong-purpose",
        facts=child(13),
        purpose=Purpose.INDIVIDUELL_PLAN,
        flags=CONFIDENTIAL,
        rule="child-confidential-not-applicable",
        missing=(
            "remove the confidential-from-parents flag, so that the holders of parental"
            " responsibility consent"
        ),
        age=13,
    ),
    Undecided(
        name="confidential-13-nasjonalt-forlop-wrong-purpose",
        facts=child(13),
        purpose=FORLOP,
        flags=CONFIDENTIAL,
        rule="child-confidential-not-applicable",
        missing=(
            "remove the confidential-from-parents flag, so that the holders of parental"
            " responsibility consent"
        ),
        age=13,
    ),
    Undecided(
        name="no-registered-holder",
        facts=child(9, holders=()),
        rule="parents",
        missing=REGISTER_HOLDERS,
        age=9,
    ),
    Undecided(
        name="no-registered-holder-only-a-parent-without-responsibility",
        facts=child(9, holders=(), without=(P3,)),
        flags=DAILY_CARE,
        rule="parents",
        missing=REGISTER_HOLDERS,
        age=9,
    ),
    Undecided(
        name="nasjonalt-forlop-10-no-registered-holder",
        facts=child(10, holders=()),
        purpose=FORLOP,
        rule="nasjonalt-forlop",
        missing=REGISTER_HOLDERS,
        age=10,
    ),
]


@pytest.mark.parametrize("case", UNDECIDED, ids=[case.name for case in UNDECIDED])
def test_who_may_consent_cannot_decide(case: Undecided) -> None:
    authority = who_may_consent(case.facts, case.purpose, DAY, case.flags)
    assert not authority.decidable
    assert authority.rule == case.rule
    assert authority.groups == ()
    assert authority.grantors == ()
    assert authority.missing == (case.missing,)
    assert authority.age == case.age
    assert authority.valid_until is None
    assert authority.explanation


def test_register_holders_names_the_fhir_resource() -> None:
    assert REGISTER_HOLDERS == (
        "register the holders of parental responsibility"
        " (RelatedPerson with no-basis parental-responsibility)"
    )


@pytest.mark.parametrize(
    ("facts", "purpose", "flags", "expected"),
    [
        pytest.param(
            child(13, care_orders=(ACTIVE_ORDER,)),
            HELSEHJELP,
            NO_FLAGS,
            f"{CHILD} is 13 and under a care order: the barnevernstjeneste holding it ({BV})"
            " consents, not the parents.",
            id="care-order",
        ),
        pytest.param(
            child(15),
            HELSEHJELP,
            NO_FLAGS,
            f"{CHILD} is 15: both holders of parental responsibility ({P1} and {P2}) must consent.",
            id="parents",
        ),
        pytest.param(
            child(10, holders=(P1,), without=(P3,)),
            HELSEHJELP,
            NO_FLAGS,
            f"{CHILD} is 10: the holder of parental responsibility ({P1}) must consent."
            f" {P3} has no parental responsibility and cannot consent.",
            id="parent-without-responsibility",
        ),
        pytest.param(
            child(9, holders=(), without=(P3,)),
            HELSEHJELP,
            NO_FLAGS,
            f"{CHILD} is 9, so the holders of parental responsibility consent, but none is"
            f" registered. {P3} has no parental responsibility and cannot consent.",
            id="no-holder",
        ),
        pytest.param(
            child(15),
            HELSEHJELP,
            DAILY_CARE,
            f"{CHILD} is 15 and the help is part of daily care: one of the holders of parental"
            f" responsibility ({P1} or {P2}) is enough, and the other must be heard.",
            id="daily-care",
        ),
        pytest.param(
            child(10, holders=(P1,)),
            HELSEHJELP,
            NECESSARY,
            f"{CHILD} is 10 and health personnel consider the help necessary so the child is"
            f" not harmed: the holder of parental responsibility ({P1}) consents.",
            id="necessary-single-holder",
        ),
        pytest.param(
            child(16),
            HELSEHJELP,
            NO_FLAGS,
            f"{CHILD} is 16 and has reached helserettslig myndighetsalder: the youth consents"
            " alone, and the parents cannot consent for the youth.",
            id="youth",
        ),
    ],
)
def test_explanation_names_who_consents_and_why(
    facts: ChildFacts, purpose: Purpose, flags: ConsentFlags, expected: str
) -> None:
    assert who_may_consent(facts, purpose, DAY, flags).explanation == expected


def test_undecidable_birth_date_explains_no_age_is_guessed() -> None:
    authority = who_may_consent(child(10, confirmed=False), HELSEHJELP, DAY)
    assert "D-nummer" in authority.explanation
    assert CHILD in authority.explanation


# --- ages and birthdays -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("birth_date", "day", "expected"),
    [
        (date(2010, 3, 15), date(2026, 3, 14), 15),
        (date(2010, 3, 15), date(2026, 3, 15), 16),
        (date(2010, 3, 15), date(2010, 3, 15), 0),
        (date(2010, 12, 31), date(2011, 1, 1), 0),
        (date(2012, 2, 29), date(2013, 2, 28), 0),
        (date(2012, 2, 29), date(2013, 3, 1), 1),
        (date(2012, 2, 29), date(2016, 2, 28), 3),
        (date(2012, 2, 29), date(2016, 2, 29), 4),
        (date(2012, 2, 29), date(2028, 2, 28), 15),
        (date(2012, 2, 29), date(2028, 2, 29), 16),
        (date(2012, 2, 29), date(2029, 2, 28), 16),
        (date(2012, 2, 29), date(2029, 3, 1), 17),
    ],
)
def test_age_on(birth_date: date, day: date, expected: int) -> None:
    assert age_on(birth_date, day) == expected


@pytest.mark.parametrize(
    ("birth_date", "years", "expected"),
    [
        (date(2010, 3, 15), 16, date(2026, 3, 15)),
        (date(2012, 2, 29), 16, date(2028, 2, 29)),
        (date(2012, 2, 29), 17, date(2029, 3, 1)),
        (date(2012, 2, 29), 18, date(2030, 3, 1)),
        (date(2012, 2, 29), 0, date(2012, 2, 29)),
    ],
)
def test_birthday(birth_date: date, years: int, expected: date) -> None:
    assert birthday(birth_date, years) == expected


def test_age_on_refuses_a_day_before_birth() -> None:
    with pytest.raises(ValueError, match="before the birth date"):
        age_on(date(2020, 5, 1), date(2020, 4, 30))


def test_leap_day_child_becomes_adult_on_1_march() -> None:
    leap_day_child = ChildFacts(CHILD, birth_date=date(2008, 2, 29))
    assert who_may_consent(leap_day_child, HELSEHJELP, date(2026, 2, 28)).rule == "youth-16"
    assert who_may_consent(leap_day_child, HELSEHJELP, date(2026, 3, 1)).rule == "adult"


BIRTH_DATES = st.dates(min_value=date(1900, 1, 1), max_value=date(2100, 12, 31))


@given(BIRTH_DATES, st.integers(0, 40_000), st.integers(0, 40_000))
def test_age_never_decreases(birth_date: date, first: int, later: int) -> None:
    day = birth_date + timedelta(days=first)
    assert age_on(birth_date, day) <= age_on(birth_date, day + timedelta(days=later))


@given(BIRTH_DATES, st.integers(1, 120))
def test_age_turns_on_the_birthday(birth_date: date, years: int) -> None:
    turning_day = birthday(birth_date, years)
    assert age_on(birth_date, turning_day) == years
    assert age_on(birth_date, turning_day - timedelta(days=1)) == years - 1


# --- evaluating a consent ---------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Scenario:
    name: str
    facts: ChildFacts
    purpose: Purpose = HELSEHJELP
    flags: ConsentFlags = NO_FLAGS
    signatures: tuple[Signature, ...] = ()
    view: ChildView | None = None
    other_parent_heard: tuple[str, ...] = ()
    status: Status
    missing: tuple[str, ...] = ()


SCENARIOS = [
    Scenario(
        name="adult-own-consent",
        facts=child(30),
        signatures=consents(CHILD),
        status=Status.ACTIVE,
    ),
    Scenario(
        name="adult-parents-cannot",
        facts=child(18),
        signatures=consents(P1, P2),
        status=Status.PROPOSED,
        missing=(f"consent from {CHILD}",),
    ),
    Scenario(
        name="youth-16-own-consent",
        facts=child(16),
        signatures=consents(CHILD),
        status=Status.ACTIVE,
    ),
    Scenario(
        name="youth-16-parents-signatures-ignored",
        facts=child(16),
        signatures=consents(P1, P2),
        view=HEARD,
        status=Status.PROPOSED,
        missing=(f"consent from {CHILD}",),
    ),
    Scenario(
        name="youth-16-parent-refusal-does-not-count",
        facts=child(16),
        signatures=(sign(CHILD), sign(P1, Decision.REFUSE)),
        status=Status.ACTIVE,
    ),
    Scenario(
        name="youth-16-refuses",
        facts=child(16),
        signatures=(sign(CHILD, Decision.REFUSE),),
        status=Status.REJECTED,
    ),
    Scenario(
        name="parents-15-nothing-yet",
        facts=child(15),
        status=Status.PROPOSED,
        missing=(f"consent from {P1}", f"consent from {P2}", MANDATORY_VIEW),
    ),
    Scenario(
        name="parents-15-one-parent-non-daily",
        facts=child(15),
        signatures=consents(P1),
        view=HEARD,
        status=Status.PROPOSED,
        missing=(f"consent from {P2}",),
    ),
    Scenario(
        name="parents-15-both-with-child-view",
        facts=child(15),
        signatures=consents(P1, P2),
        view=HEARD,
        status=Status.ACTIVE,
    ),
    Scenario(
        name="parents-15-both-without-child-view",
        facts=child(15),
        signatures=consents(P1, P2),
        status=Status.PROPOSED,
        missing=(MANDATORY_VIEW,),
    ),
    Scenario(
        name="parents-15-child-heard-but-nothing-recorded",
        facts=child(15),
        signatures=consents(P1, P2),
        view=HEARD_NOTHING_SAID,
        status=Status.PROPOSED,
        missing=(MANDATORY_VIEW,),
    ),
    Scenario(
        name="parents-15-child-heard-by-nobody",
        facts=child(15),
        signatures=consents(P1, P2),
        view=HEARD_BY_NOBODY,
        status=Status.PROPOSED,
        missing=(MANDATORY_VIEW,),
    ),
    Scenario(
        name="parents-15-mandatory-view-cannot-be-waived",
        facts=child(15),
        signatures=consents(P1, P2),
        view=NOT_HEARD,
        status=Status.PROPOSED,
        missing=(MANDATORY_VIEW,),
    ),
    Scenario(
        name="parents-15-other-parent-refuses",
        facts=child(15),
        signatures=(sign(P1), sign(P2, Decision.REFUSE)),
        view=HEARD,
        status=Status.REJECTED,
    ),
    Scenario(
        name="parents-15-refusal-before-any-consent",
        facts=child(15),
        signatures=(sign(P2, Decision.REFUSE),),
        status=Status.REJECTED,
    ),
    Scenario(
        name="parents-15-refused-then-consented",
        facts=child(15),
        signatures=(sign(P2), sign(P2, Decision.REFUSE, DAY - timedelta(days=3)), sign(P1)),
        view=HEARD,
        status=Status.ACTIVE,
    ),
    Scenario(
        name="parents-15-consented-then-refused",
        facts=child(15),
        signatures=(sign(P2, when=DAY - timedelta(days=3)), sign(P2, Decision.REFUSE), sign(P1)),
        view=HEARD,
        status=Status.REJECTED,
    ),
    Scenario(
        name="daily-care-one-parent-other-not-heard",
        facts=child(15),
        flags=DAILY_CARE,
        signatures=consents(P1),
        view=HEARD,
        status=Status.PROPOSED,
        missing=(f"record that {P2} was heard",),
    ),
    Scenario(
        name="daily-care-one-parent-other-heard",
        facts=child(15),
        flags=DAILY_CARE,
        signatures=consents(P1),
        view=HEARD,
        other_parent_heard=(P2,),
        status=Status.ACTIVE,
    ),
    Scenario(
        name="daily-care-nobody-yet",
        facts=child(15),
        flags=DAILY_CARE,
        status=Status.PROPOSED,
        missing=(f"consent from one of {P1} or {P2}", MANDATORY_VIEW),
    ),
    Scenario(
        name="daily-care-both-sign-nobody-to-hear",
        facts=child(15),
        flags=DAILY_CARE,
        signatures=consents(P1, P2),
        view=HEARD,
        status=Status.ACTIVE,
    ),
    Scenario(
        name="daily-care-other-parent-refuses",
        facts=child(15),
        flags=DAILY_CARE,
        signatures=(sign(P1), sign(P2, Decision.REFUSE)),
        view=HEARD,
        status=Status.REJECTED,
    ),
    Scenario(
        name="necessary-single-holder-child-could-not-be-heard",
        facts=child(9, holders=(P1,)),
        flags=NECESSARY,
        signatures=consents(P1),
        view=NOT_HEARD,
        status=Status.ACTIVE,
    ),
    Scenario(
        name="care-order-barnevernstjeneste-consents",
        facts=child(13, care_orders=(ACTIVE_ORDER,)),
        signatures=consents(BV),
        view=HEARD,
        status=Status.ACTIVE,
    ),
    Scenario(
        name="care-order-parents-signatures-ignored",
        facts=child(13, care_orders=(ACTIVE_ORDER,)),
        signatures=consents(P1, P2),
        view=HEARD,
        status=Status.PROPOSED,
        missing=(f"consent from {BV}",),
    ),
    Scenario(
        name="care-order-ended-parents-consent",
        facts=child(13, care_orders=(ENDED_ORDER,)),
        signatures=consents(P1, P2),
        view=HEARD,
        status=Status.ACTIVE,
    ),
    Scenario(
        name="confidential-13-child-alone",
        facts=child(13),
        flags=CONFIDENTIAL,
        signatures=consents(CHILD),
        status=Status.ACTIVE,
    ),
    Scenario(
        name="confidential-13-parents-cannot",
        facts=child(13),
        flags=CONFIDENTIAL,
        signatures=consents(P1, P2),
        status=Status.PROPOSED,
        missing=(f"consent from {CHILD}",),
    ),
    Scenario(
        name="confidential-11-not-decidable",
        facts=child(11),
        flags=CONFIDENTIAL,
        signatures=consents(CHILD),
        status=Status.PROPOSED,
        missing=(
            "remove the confidential-from-parents flag, so that the holders of parental"
            " responsibility consent",
        ),
    ),
    Scenario(
        name="nasjonalt-forlop-14-child-and-parents",
        facts=child(14),
        purpose=FORLOP,
        signatures=consents(CHILD, P1, P2),
        view=HEARD,
        status=Status.ACTIVE,
    ),
    Scenario(
        name="nasjonalt-forlop-14-child-only",
        facts=child(14),
        purpose=FORLOP,
        signatures=consents(CHILD),
        view=HEARD,
        status=Status.PROPOSED,
        missing=(f"consent from {P1}", f"consent from {P2}"),
    ),
    Scenario(
        name="nasjonalt-forlop-14-parents-only",
        facts=child(14),
        purpose=FORLOP,
        signatures=consents(P1, P2),
        view=HEARD,
        status=Status.PROPOSED,
        missing=(f"consent from {CHILD}",),
    ),
    Scenario(
        name="nasjonalt-forlop-14-child-refuses",
        facts=child(14),
        purpose=FORLOP,
        signatures=(sign(CHILD, Decision.REFUSE), sign(P1), sign(P2)),
        view=HEARD,
        status=Status.REJECTED,
    ),
    Scenario(
        name="nasjonalt-forlop-14-no-separate-view",
        facts=child(14),
        purpose=FORLOP,
        signatures=consents(CHILD, P1, P2),
        status=Status.ACTIVE,
    ),
    Scenario(
        name="to-barnevern-15-parents-without-the-youth",
        facts=child(15),
        purpose=INFODELING,
        flags=TO_BARNEVERN,
        signatures=consents(P1, P2),
        status=Status.PROPOSED,
        missing=(f"consent from {CHILD}",),
    ),
    Scenario(
        name="to-barnevern-15-the-youth-refuses",
        facts=child(15),
        purpose=INFODELING,
        flags=TO_BARNEVERN,
        signatures=(sign(CHILD, Decision.REFUSE), sign(P1), sign(P2)),
        status=Status.REJECTED,
    ),
    Scenario(
        name="to-barnevern-15-all-consent",
        facts=child(15),
        purpose=INFODELING,
        flags=TO_BARNEVERN,
        signatures=consents(CHILD, P1, P2),
        status=Status.ACTIVE,
    ),
    Scenario(
        name="nasjonalt-forlop-15-child-alone",
        facts=child(15),
        purpose=FORLOP,
        signatures=consents(CHILD),
        status=Status.ACTIVE,
    ),
    Scenario(
        name="nasjonalt-forlop-10-care-order",
        facts=child(10, care_orders=(ACTIVE_ORDER,)),
        purpose=FORLOP,
        signatures=consents(CHILD, BV),
        view=HEARD,
        status=Status.ACTIVE,
    ),
    Scenario(
        name="child-view-8-heard",
        facts=child(8),
        signatures=consents(P1, P2),
        view=HEARD,
        status=Status.ACTIVE,
    ),
    Scenario(
        name="child-view-8-waived-with-reason",
        facts=child(8),
        signatures=consents(P1, P2),
        view=NOT_HEARD,
        status=Status.ACTIVE,
    ),
    Scenario(
        name="child-view-8-missing",
        facts=child(8),
        signatures=consents(P1, P2),
        status=Status.PROPOSED,
        missing=(REQUIRED_VIEW,),
    ),
    Scenario(
        name="child-view-8-not-heard-without-reason",
        facts=child(8),
        signatures=consents(P1, P2),
        view=NOT_HEARD_NO_REASON,
        status=Status.PROPOSED,
        missing=(REQUIRED_VIEW,),
    ),
    Scenario(
        name="child-view-5-recommended-only",
        facts=child(5),
        signatures=consents(P1, P2),
        status=Status.ACTIVE,
    ),
    Scenario(
        name="d-nummer-not-decidable",
        facts=child(10, confirmed=False),
        signatures=consents(P1, P2),
        view=HEARD,
        status=Status.PROPOSED,
        missing=(BIRTH_DATE_MISSING,),
    ),
    Scenario(
        name="birth-date-unknown-not-decidable",
        facts=child(None),
        signatures=consents(CHILD),
        status=Status.PROPOSED,
        missing=(BIRTH_DATE_MISSING,),
    ),
    Scenario(
        name="no-registered-holder-not-decidable",
        facts=child(9, holders=(), without=(P3,)),
        signatures=consents(P3),
        view=HEARD,
        status=Status.PROPOSED,
        missing=(REGISTER_HOLDERS,),
    ),
    Scenario(
        name="parent-without-responsibility-does-not-count",
        facts=child(10, without=(P3,)),
        signatures=consents(P1, P3),
        view=HEARD,
        status=Status.PROPOSED,
        missing=(f"consent from {P2}",),
    ),
    Scenario(
        name="parent-without-responsibility-refusal-does-not-count",
        facts=child(10, without=(P3,)),
        signatures=(sign(P1), sign(P2), sign(P3, Decision.REFUSE)),
        view=HEARD,
        status=Status.ACTIVE,
    ),
]


@pytest.mark.parametrize("case", SCENARIOS, ids=[case.name for case in SCENARIOS])
def test_evaluate(case: Scenario) -> None:
    authority = who_may_consent(case.facts, case.purpose, DAY, case.flags)
    consent = ConsentFacts(
        purpose=case.purpose,
        flags=case.flags,
        signatures=case.signatures,
        child_view=case.view,
        other_parent_heard=case.other_parent_heard,
    )
    evaluation = evaluate(authority, consent, DAY)
    assert evaluation.status is case.status, evaluation.reasons
    assert evaluation.missing == case.missing
    assert evaluation.obligations == authority.obligations
    assert evaluation.valid_until == authority.valid_until
    assert evaluation.reasons
    assert all(reason.endswith(".") for reason in evaluation.reasons)


def test_refusal_names_who_refused() -> None:
    authority = who_may_consent(child(15), HELSEHJELP, DAY)
    consent = ConsentFacts(HELSEHJELP, signatures=(sign(P1), sign(P2, Decision.REFUSE)))
    evaluation = evaluate(authority, consent, DAY)
    assert evaluation.status is Status.REJECTED
    assert evaluation.reasons[0] == (
        f"{P2} refused: a refusal by any required grantor means there is no consent."
    )


def test_undecidable_reason_is_the_explanation() -> None:
    authority = who_may_consent(child(11), HELSEHJELP, DAY, CONFIDENTIAL)
    evaluation = evaluate(authority, ConsentFacts(HELSEHJELP, flags=CONFIDENTIAL), DAY)
    assert evaluation.reasons == (authority.explanation,)


def test_confidential_consent_carries_hide_from_parents() -> None:
    authority = who_may_consent(child(13), HELSEHJELP, DAY, CONFIDENTIAL)
    consent = ConsentFacts(HELSEHJELP, flags=CONFIDENTIAL, signatures=consents(CHILD))
    evaluation = evaluate(authority, consent, DAY)
    assert evaluation.status is Status.ACTIVE
    assert evaluation.obligations == ("hide-from-parents",)
    assert evaluation.valid_until is None, "the child stays entitled to this consent"
    assert "Information under this consent must be withheld from the parents." in (
        evaluation.reasons
    )


def test_ignored_signatures_are_explained() -> None:
    authority = who_may_consent(child(16), HELSEHJELP, DAY)
    evaluation = evaluate(authority, ConsentFacts(HELSEHJELP, signatures=consents(P1)), DAY)
    assert f"Ignored signatures from {P1}, who cannot consent under this rule." in (
        evaluation.reasons
    )


# --- time: withdrawal, period, turning 15 and 16 ----------------------------------------


COMPLETE_PARENTS_CONSENT = ConsentFacts(HELSEHJELP, signatures=consents(P1, P2), child_view=HEARD)


def test_turning_16_ends_a_parents_consent() -> None:
    facts = ChildFacts(CHILD, birth_date=date(2010, 3, 15), parents_with_responsibility=(P1, P2))
    day_before = date(2026, 3, 14)
    authority = who_may_consent(facts, HELSEHJELP, day_before)
    consent = ConsentFacts(HELSEHJELP, signatures=consents(P1, P2), child_view=HEARD)
    assert authority.valid_until == day_before
    assert evaluate(authority, consent, day_before).status is Status.ACTIVE
    on_birthday = evaluate(authority, consent, date(2026, 3, 15))
    assert on_birthday.status is Status.INACTIVE
    assert on_birthday.reasons[0].startswith("The child turned 16 on 2026-03-15")
    assert "youth must now decide" in on_birthday.reasons[0]
    assert who_may_consent(facts, HELSEHJELP, date(2026, 3, 15)).rule == "youth-16"


def test_a_nasjonalt_forlop_consent_the_child_gave_outlives_the_15th_birthday() -> None:
    """From 15 the child's own consent is enough, and the child gave it: the parents'
    part falling away ends nothing."""
    facts = ChildFacts(CHILD, birth_date=date(2011, 3, 15), parents_with_responsibility=(P1, P2))
    authority = who_may_consent(facts, FORLOP, date(2026, 3, 1))
    assert authority.valid_until is None
    consent = ConsentFacts(FORLOP, signatures=consents(CHILD, P1, P2))
    for day in (date(2026, 3, 14), date(2026, 3, 15), date(2029, 3, 15)):
        assert evaluate(authority, consent, day).status is Status.ACTIVE


def test_a_confidential_consent_outlives_the_16th_and_18th_birthdays() -> None:
    facts = ChildFacts(CHILD, birth_date=date(2011, 3, 15), parents_with_responsibility=(P1, P2))
    authority = who_may_consent(facts, HELSEHJELP, date(2025, 1, 1), CONFIDENTIAL)
    consent = ConsentFacts(HELSEHJELP, flags=CONFIDENTIAL, signatures=consents(CHILD))
    for day in (date(2027, 3, 15), date(2029, 3, 15)):
        assert evaluate(authority, consent, day).status is Status.ACTIVE
    youth = who_may_consent(facts, HELSEHJELP, date(2027, 3, 15), CONFIDENTIAL)
    assert evaluate(youth, consent, date(2027, 3, 15)).status is Status.ACTIVE


def test_a_parents_consent_to_share_with_barnevern_ends_at_15_without_the_youth() -> None:
    """Under 15 the parents alone consent to sharing with barnevern; on the 15th birthday
    that consent ends, since the youth must now consent as well."""
    facts = ChildFacts(CHILD, birth_date=date(2012, 3, 15), parents_with_responsibility=(P1, P2))
    authority = who_may_consent(facts, INFODELING, date(2026, 3, 1), TO_BARNEVERN)
    assert (authority.rule, authority.valid_until) == ("parents", date(2027, 3, 14))
    consent = ConsentFacts(
        INFODELING, flags=TO_BARNEVERN, signatures=consents(P1, P2), child_view=HEARD
    )
    assert evaluate(authority, consent, date(2027, 3, 14)).status is Status.ACTIVE
    on_birthday = evaluate(authority, consent, date(2027, 3, 15))
    assert on_birthday.status is Status.INACTIVE
    assert on_birthday.reasons[0].startswith("The child turned 15 on 2027-03-15")
    again = who_may_consent(facts, INFODELING, date(2027, 3, 15), TO_BARNEVERN)
    assert again.rule == "barnevern-sharing-from-15"


def test_a_care_order_ending_first_says_so_not_a_birthday() -> None:
    order = CareOrderFact(BV, start=date(2020, 1, 1), end=date(2026, 6, 30))
    facts = ChildFacts(CHILD, birth_date=date(2012, 3, 15), care_orders=(order,))
    authority = who_may_consent(facts, HELSEHJELP, date(2026, 3, 1))
    assert (authority.valid_until, authority.ends_at_age) == (date(2026, 6, 30), None)


def test_youth_consent_outlives_the_18th_birthday() -> None:
    facts = ChildFacts(CHILD, birth_date=date(2008, 3, 15))
    authority = who_may_consent(facts, HELSEHJELP, date(2025, 1, 1))
    consent = ConsentFacts(HELSEHJELP, signatures=consents(CHILD))
    assert authority.valid_until is None
    assert evaluate(authority, consent, date(2027, 1, 1)).status is Status.ACTIVE


def test_withdrawn_is_inactive_and_says_by_whom() -> None:
    authority = who_may_consent(child(15), HELSEHJELP, DAY)
    evaluation = evaluate(
        authority, replace(COMPLETE_PARENTS_CONSENT, withdrawn=True, withdrawn_by=P2), DAY
    )
    assert evaluation.status is Status.INACTIVE
    assert evaluation.reasons == (
        f"The consent was withdrawn by {P2}; withdrawal takes effect at once.",
    )


def test_withdrawn_beats_an_undecidable_authority() -> None:
    authority = who_may_consent(child(15, confirmed=False), HELSEHJELP, DAY)
    evaluation = evaluate(authority, replace(COMPLETE_PARENTS_CONSENT, withdrawn=True), DAY)
    assert evaluation.status is Status.INACTIVE


@pytest.mark.parametrize(
    ("period_end", "status"),
    [
        (DAY - timedelta(days=1), Status.INACTIVE),
        (DAY, Status.ACTIVE),
        (None, Status.ACTIVE),
    ],
)
def test_period_end(period_end: date | None, status: Status) -> None:
    authority = who_may_consent(child(15), HELSEHJELP, DAY)
    evaluation = evaluate(authority, replace(COMPLETE_PARENTS_CONSENT, period_end=period_end), DAY)
    assert evaluation.status is status
    if status is Status.INACTIVE:
        assert evaluation.reasons == (f"The consent period ended on {period_end}.",)


# --- who is not allowed to sign, and why ------------------------------------------------


@pytest.mark.parametrize(
    ("facts", "purpose", "flags", "signers", "unauthorised", "grantor", "message"),
    [
        pytest.param(
            child(16),
            HELSEHJELP,
            NO_FLAGS,
            (P1, CHILD, P2),
            [P1, P2],
            P1,
            f"{P1} cannot consent for {CHILD}: the child is 16 and consents alone"
            " (pbrl §4-3 første ledd bokstav b).",
            id="youth-16",
        ),
        pytest.param(
            child(13, care_orders=(ACTIVE_ORDER,)),
            HELSEHJELP,
            NO_FLAGS,
            (P1, P2, BV),
            [P1, P2],
            P2,
            f"{P2} cannot consent for {CHILD}: the child is under a care order, and the"
            f" barnevernstjeneste holding it ({BV}) consents, not the parents"
            " (pbrl §4-4 fjerde ledd).",
            id="care-order",
        ),
        pytest.param(
            child(10, without=(P3,)),
            HELSEHJELP,
            NO_FLAGS,
            (P3, P1, P3),
            [P3],
            P3,
            f"{P3} cannot consent for {CHILD}: {P3} has no parental responsibility"
            f" (foreldreansvar), and only the holders of parental responsibility ({P1} and"
            f" {P2}) consent (pbrl §4-4 første ledd).",
            id="parent-without-responsibility",
        ),
        pytest.param(
            child(13),
            HELSEHJELP,
            CONFIDENTIAL,
            (P1,),
            [P1],
            P1,
            f"{P1} cannot consent for {CHILD}: the child is 13 and consents alone to help the"
            " parents are not to be told about (pbrl §3-4 andre ledd, §4-3 første ledd"
            " bokstav c).",
            id="confidential",
        ),
        pytest.param(
            child(30),
            HELSEHJELP,
            NO_FLAGS,
            (P1,),
            [P1],
            P1,
            f"{P1} cannot consent for {CHILD}: the person is 30 and consents alone"
            " (pbrl §4-3 første ledd bokstav a).",
            id="adult",
        ),
        pytest.param(
            child(14),
            FORLOP,
            NO_FLAGS,
            (P3, CHILD),
            [P3],
            P3,
            f"{P3} cannot consent for {CHILD}: for Nasjonalt forløp {CHILD}, {P1} and {P2}"
            " consent (Nasjonalt forløp for barnevern (Helsedirektoratet); pbrl §4-4).",
            id="nasjonalt-forlop",
        ),
    ],
)
def test_unauthorised_grantors_and_error(
    facts: ChildFacts,
    purpose: Purpose,
    flags: ConsentFlags,
    signers: tuple[str, ...],
    unauthorised: list[str],
    grantor: str,
    message: str,
) -> None:
    authority = who_may_consent(facts, purpose, DAY, flags)
    assert unauthorised_grantors(authority, consents(*signers)) == unauthorised
    assert authority_error(authority, grantor) == message


def test_no_unauthorised_grantor_once_the_care_order_ended() -> None:
    authority = who_may_consent(child(13, care_orders=(ENDED_ORDER,)), HELSEHJELP, DAY)
    assert unauthorised_grantors(authority, consents(P1, P2)) == []


def test_authority_error_when_nobody_can_consent_yet() -> None:
    authority = who_may_consent(child(9, confirmed=False), HELSEHJELP, DAY)
    assert unauthorised_grantors(authority, consents(P1)) == [P1]
    assert authority_error(authority, P1) == (
        f"{P1} cannot consent for {CHILD} yet: {authority.explanation}"
    )


# --- the dates a consent may carry ---------------------------------------------------------


def test_signatures_are_dated_from_the_birth_to_today_and_periods_ten_years_ahead() -> None:
    from services.consent.domain.dates import consent_date_problems, signature_date_problems

    today, born = date(2027, 2, 28), date(2017, 5, 1)
    assert signature_date_problems(today, born, today) == []
    assert signature_date_problems(born, born, today) == []
    assert signature_date_problems(today, None, today) == []
    after = signature_date_problems(today + timedelta(days=1), born, today)
    assert [(p.status, p.expression) for p in after] == [(422, "date")]
    assert "after today" in after[0].message
    before = signature_date_problems(born - timedelta(days=1), born, today)
    assert "before the child was born" in before[0].message
    assert signature_date_problems(date(1, 1, 1), None, today) == [], "no birth date known"

    def problems(
        start: date | None = None,
        end: date | None = None,
        signed: tuple[date, ...] = (),
        heard: date | None = None,
    ) -> list[str | None]:
        found = consent_date_problems(
            start=start, end=end, signed=signed, heard=heard, born=born, today=today
        )
        return [p.expression for p in found]

    assert problems(start=born, end=date(2037, 2, 28), signed=(today,), heard=today) == []
    assert problems(end=date(2037, 3, 1)) == ["end"]
    assert problems(start=date(9999, 12, 31), end=date(9999, 12, 31)) == ["start", "end"]
    assert problems(start=born - timedelta(days=1)) == ["start"]
    assert problems(signed=(today, date(9999, 12, 31))) == ["signatures[1].date"]
    assert problems(heard=date(1, 1, 1)) == ["child_view.date"]
