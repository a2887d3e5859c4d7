"""Table tests of the care plan rules (services/careplan/domain): the nine points of an
individual plan, the periods of care team participants, who may coordinate and who is the
coordinator of record, one open individual plan per person and what a lost consent does.
Pure functions, no database.

DOMAIN.md §2 (organisation kinds and roles) and §6 (individual plan, care team, coordinator).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from typing import Any

import pytest

from services.careplan.consent_watch import ended_consents
from services.careplan.domain.completeness import WHAT_IS_MISSING, missing_points
from services.careplan.domain.coordination import (
    ADULT_AGE,
    MUNICIPAL,
    NEVER_COORDINATE,
    coordinator_of_record,
    team_problems,
)
from services.careplan.domain.lifecycle import (
    CLOSED_STATUSES,
    CONSENT_PURPOSES,
    ONE_PER_PERSON,
    ConsentLoss,
    consent_lost,
    is_open,
    one_per_person,
)
from services.careplan.domain.model import Activity, Participant, PlanFacts
from services.careplan.domain.vocabulary import COORDINATOR_ROLES, PlanCategory, Point
from shared.access.state import Grant
from shared.codes import OrganisationKind as K
from shared.events import DomainEvent
from shared.rules import Problem

DAY = date(2025, 6, 2)
YESTERDAY = DAY - timedelta(days=1)
TOMORROW = DAY + timedelta(days=1)
EARLIER = date(2024, 1, 1)
LATER = date(2026, 1, 1)

A, B, C, S = "Practitioner/a", "Practitioner/b", "Practitioner/c", "Practitioner/s"
SCHOOL = "Organization/skole"

KOORD, BARNEKOORD = "koordinator", "barnekoordinator"
FORLOP_KOMMUNE, FORLOP_BUP = "forlopskoordinator-kommune", "forlopskoordinator-bup"
FORLOP = PlanCategory.FORLOPSPLAN.value
IP = PlanCategory.INDIVIDUELL_PLAN.value

NON_MUNICIPAL = tuple(kind for kind in K if kind not in MUNICIPAL)
MAY_COORDINATE = tuple(kind for kind in K if kind not in NEVER_COORDINATE)

NEVER_REMOVED = "never removed"
NEVER_COORDINATE_WORDS = "never coordinate"
MUNICIPALITY_WORDS = "appointed by the municipality"
UNDER_18_WORDS = "under 18"
FORLOP_WORDS = "In nasjonalt forløp the coordinator belongs to the barnevernstjeneste"
ONE_AT_A_TIME = "Only one {role} at a time"
NO_COORDINATOR_WORDS = "who is no coordinator in this team"


def member(
    name: str = A,
    role: str = KOORD,
    kind: str | None = K.KOMMUNE_HELSE,
    start: date | None = EARLIER,
    end: date | None = None,
    substitute_for: str | None = None,
) -> Participant:
    """One participant of a care team; the organisation number is irrelevant to the rules."""
    return Participant(
        member=name,
        role=role,
        orgnr="999999999" if kind else None,
        kind=kind,
        start=start,
        end=end,
        substitute_for=substitute_for,
    )


def problems(
    before: list[Participant],
    after: list[Participant],
    *,
    appointer: str | None = K.KOMMUNE_HELSE,
    age: int | None = 10,
    category: str | None = None,
) -> list[Problem]:
    return team_problems(
        before, after, appointer_kind=appointer, child_age=age, plan_category=category
    )


def statuses(found: list[Problem]) -> list[int]:
    return [problem.status for problem in found]


def only(found: list[Problem], status: int, *words: str) -> Problem:
    """The one problem found; it has this status and its message holds these words."""
    assert len(found) == 1, found
    problem = found[0]
    assert problem.status == status, problem
    assert problem.expression == "CareTeam.participant"
    for word in words:
        assert word in problem.message, (word, problem.message)
    return problem


# --- vocabulary --------------------------------------------------------------------------


def test_the_regulation_has_nine_points_in_its_order() -> None:
    assert [point.value for point in Point] == [
        "mal",
        "deltakere",
        "koordinator",
        "bidrag",
        "tiltak",
        "gjennomforing",
        "periode",
        "samtykke",
        "samarbeid",
    ]


def test_every_point_says_what_is_missing() -> None:
    assert set(WHAT_IS_MISSING) == set(Point)
    assert all(text.strip() for text in WHAT_IS_MISSING.values())
    assert "koordinator" in WHAT_IS_MISSING[Point.KOORDINATOR]
    assert "consent" in WHAT_IS_MISSING[Point.SAMTYKKE]
    assert "revision" in WHAT_IS_MISSING[Point.PERIODE]


def test_coordinator_roles_and_kinds() -> None:
    assert {KOORD, BARNEKOORD, FORLOP_KOMMUNE, FORLOP_BUP} == COORDINATOR_ROLES
    assert {K.SKOLE, K.BARNEHAGE, K.PPT, K.NAV} == NEVER_COORDINATE
    assert {K.KOMMUNE_HELSE, K.BARNEVERNSTJENESTE, K.FASTLEGE} == MUNICIPAL
    assert ADULT_AGE == 18
    assert FORLOP == "forlopsplan"


# --- the nine points ---------------------------------------------------------------------

WHOLE = Activity("Weekly talks at school with the helsesykepleier", "Organization/kh", "1 t/uke")
COMPLETE = PlanFacts(
    category=IP,
    status="active",
    goals=2,
    team="CareTeam/t",
    has_coordinator=True,
    participants=3,
    activities=(WHOLE, Activity("Medication review", "Organization/bup", "every 3rd month")),
    period_start=date(2025, 1, 1),
    next_revision=date(2025, 9, 1),
    consent=True,
    collaboration=True,
)


def test_a_plan_with_all_nine_points_misses_nothing() -> None:
    assert missing_points(COMPLETE) == []


def test_an_empty_draft_misses_all_nine_points_in_order() -> None:
    empty = PlanFacts(
        category=IP,
        status="draft",
        goals=0,
        team=None,
        has_coordinator=False,
        participants=0,
        activities=(),
        period_start=None,
        next_revision=None,
        consent=False,
        collaboration=False,
    )
    assert missing_points(empty) == list(Point)


NO_PERFORMER = Activity("Medication review", None, "every 3rd month")
EMPTY_PERFORMER = Activity("Medication review", "", "every 3rd month")
NO_EXTENT = Activity("Medication review", "Organization/bup", None)
EMPTY_EXTENT = Activity("Medication review", "Organization/bup", "")
NO_DESCRIPTION = Activity("", "Organization/bup", "every 3rd month")
BLANK_DESCRIPTION = Activity("  \n\t", "Organization/bup", "every 3rd month")
NOTHING_BUT_A_NAME = Activity("Medication review", None, None)


@pytest.mark.parametrize(
    ("changes", "missing"),
    [
        pytest.param({"goals": 0}, [Point.MAL], id="no-goals"),
        pytest.param({"team": None}, [Point.DELTAKERE], id="no-care-team"),
        pytest.param({"participants": 0}, [Point.DELTAKERE], id="team-without-participants"),
        pytest.param({"has_coordinator": False}, [Point.KOORDINATOR], id="no-coordinator"),
        pytest.param(
            {"activities": (WHOLE, NO_PERFORMER)},
            [Point.BIDRAG, Point.TILTAK],
            id="performer-missing-is-also-who-is-responsible",
        ),
        pytest.param({"activities": (WHOLE, NO_EXTENT)}, [Point.TILTAK], id="no-extent"),
        pytest.param(
            {"activities": (WHOLE, NO_DESCRIPTION)}, [Point.GJENNOMFORING], id="no-description"
        ),
        pytest.param({"period_start": None}, [Point.PERIODE], id="no-period-start"),
        pytest.param({"next_revision": None}, [Point.PERIODE], id="no-next-revision"),
        pytest.param({"period_start": None, "next_revision": None}, [Point.PERIODE], id="no-dates"),
        pytest.param({"consent": False}, [Point.SAMTYKKE], id="no-consent"),
        pytest.param({"collaboration": False}, [Point.SAMARBEID], id="no-collaboration"),
    ],
)
def test_each_point_missing_alone(changes: dict[str, Any], missing: list[Point]) -> None:
    plan = replace(COMPLETE, **changes)
    assert missing_points(plan) == missing
    for point in missing:
        assert WHAT_IS_MISSING[point]


@pytest.mark.parametrize(
    ("activities", "missing"),
    [
        pytest.param(
            (),
            [Point.BIDRAG, Point.TILTAK, Point.GJENNOMFORING],
            id="no-activities-at-all",
        ),
        pytest.param((WHOLE,), [], id="one-whole-activity"),
        pytest.param((NO_PERFORMER,), [Point.BIDRAG, Point.TILTAK], id="only-no-performer"),
        pytest.param((WHOLE, EMPTY_PERFORMER), [Point.BIDRAG, Point.TILTAK], id="empty-performer"),
        pytest.param((EMPTY_EXTENT, WHOLE), [Point.TILTAK], id="empty-extent-first"),
        pytest.param((WHOLE, BLANK_DESCRIPTION), [Point.GJENNOMFORING], id="blank-description"),
        pytest.param(
            (WHOLE, NO_EXTENT, NO_DESCRIPTION),
            [Point.TILTAK, Point.GJENNOMFORING],
            id="two-activities-each-lacking-one-thing",
        ),
        pytest.param(
            (WHOLE, NOTHING_BUT_A_NAME),
            [Point.BIDRAG, Point.TILTAK],
            id="named-but-nobody-and-no-extent",
        ),
        pytest.param(
            (Activity("", None, None),),
            [Point.BIDRAG, Point.TILTAK, Point.GJENNOMFORING],
            id="one-empty-activity",
        ),
    ],
)
def test_activities_partly_incomplete(
    activities: tuple[Activity, ...], missing: list[Point]
) -> None:
    """Every activity must have a performer, an extent and a description: one incomplete
    activity among whole ones is enough to miss the point."""
    assert missing_points(replace(COMPLETE, activities=activities)) == missing


def test_missing_points_keep_the_regulations_order() -> None:
    plan = replace(COMPLETE, collaboration=False, goals=0, consent=False, has_coordinator=False)
    assert missing_points(plan) == [Point.MAL, Point.KOORDINATOR, Point.SAMTYKKE, Point.SAMARBEID]


# --- periods -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end", "day", "active"),
    [
        pytest.param(DAY, None, DAY, True, id="first-day"),
        pytest.param(DAY, None, YESTERDAY, False, id="day-before-start"),
        pytest.param(EARLIER, DAY, DAY, True, id="last-day-included"),
        pytest.param(EARLIER, DAY, TOMORROW, False, id="day-after-end"),
        pytest.param(DAY, DAY, DAY, True, id="one-day-period"),
        pytest.param(DAY, DAY, TOMORROW, False, id="one-day-period-after"),
        pytest.param(None, None, DAY, True, id="no-period"),
        pytest.param(None, DAY, date(1900, 1, 1), True, id="open-start"),
        pytest.param(None, YESTERDAY, DAY, False, id="open-start-ended"),
        pytest.param(EARLIER, None, date(2999, 12, 31), True, id="open-end"),
        pytest.param(TOMORROW, None, DAY, False, id="not-yet-started"),
    ],
)
def test_active_on(start: date | None, end: date | None, day: date, active: bool) -> None:
    assert member(start=start, end=end).active_on(day) is active


@pytest.mark.parametrize(
    ("first", "second", "overlap"),
    [
        pytest.param((EARLIER, YESTERDAY), (DAY, None), False, id="adjacent-handover"),
        pytest.param((EARLIER, DAY), (DAY, None), True, id="same-day-touch"),
        pytest.param((EARLIER, TOMORROW), (DAY, None), True, id="one-day-too-long"),
        pytest.param((EARLIER, date(2024, 6, 1)), (DAY, LATER), False, id="disjoint"),
        pytest.param((EARLIER, LATER), (DAY, TOMORROW), True, id="contained"),
        pytest.param((DAY, DAY), (DAY, DAY), True, id="same-single-day"),
        pytest.param((EARLIER, None), (DAY, None), True, id="both-open-ended"),
        pytest.param((None, None), (DAY, DAY), True, id="no-period-overlaps-all"),
        pytest.param((None, YESTERDAY), (DAY, None), False, id="open-start-before-open-end"),
        pytest.param((None, DAY), (DAY, None), True, id="open-start-meets-open-end"),
        pytest.param((None, DAY), (None, EARLIER), True, id="both-open-start"),
        pytest.param((TOMORROW, None), (EARLIER, DAY), False, id="starts-after-other-ends"),
    ],
)
def test_overlaps_is_symmetric_and_inclusive(
    first: tuple[date | None, date | None],
    second: tuple[date | None, date | None],
    overlap: bool,
) -> None:
    one = member(A, start=first[0], end=first[1])
    other = member(B, start=second[0], end=second[1])
    assert one.overlaps(other) is overlap
    assert other.overlaps(one) is overlap


# --- who may coordinate ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "after"),
    [
        pytest.param([], [member()], id="one-koordinator"),
        pytest.param(
            [member(A)],
            [member(A, end=YESTERDAY), member(B, start=DAY)],
            id="handover-end-is-day-before-start",
        ),
        pytest.param(
            [member(A, end=date(2024, 12, 31)), member(B, start=date(2025, 1, 1))],
            [
                member(A, end=date(2024, 12, 31)),
                member(B, start=date(2025, 1, 1), end=YESTERDAY),
                member(C, start=DAY),
            ],
            id="second-handover-keeps-history",
        ),
        pytest.param(
            [],
            [member(A, BARNEKOORD, end=YESTERDAY), member(B, BARNEKOORD, start=DAY)],
            id="barnekoordinator-handover",
        ),
        pytest.param([], [member(A), member(B, BARNEKOORD)], id="koordinator-and-barnekoordinator"),
        pytest.param(
            [],
            [member(A, FORLOP_KOMMUNE), member(B, FORLOP_BUP, K.BUP), member(C)],
            id="coordinators-of-different-kinds",
        ),
        pytest.param(
            [],
            [member(A), member(SCHOOL, "hovedkontakt", K.SKOLE), member(B, "behandler", K.PPT)],
            id="school-and-ppt-take-part",
        ),
        pytest.param(
            [member(A), member(B, "behandler", K.BUP)],
            [member(A), member(B, "behandler", K.BUP), member(SCHOOL, "hovedkontakt", K.SKOLE)],
            id="adding-a-member-keeps-the-team",
        ),
    ],
)
def test_valid_teams(before: list[Participant], after: list[Participant]) -> None:
    assert problems(before, after) == []


@pytest.mark.parametrize(
    ("role", "first", "second"),
    [
        pytest.param(KOORD, (EARLIER, None), (DAY, None), id="koordinator-both-open"),
        pytest.param(KOORD, (EARLIER, DAY), (DAY, None), id="koordinator-one-day-overlap"),
        pytest.param(KOORD, (EARLIER, LATER), (DAY, TOMORROW), id="koordinator-contained"),
        pytest.param(KOORD, (None, None), (DAY, DAY), id="koordinator-no-period"),
        pytest.param(BARNEKOORD, (EARLIER, None), (DAY, None), id="barnekoordinator-both-open"),
        pytest.param(BARNEKOORD, (EARLIER, DAY), (DAY, None), id="barnekoordinator-one-day"),
    ],
)
def test_two_coordinators_at_once_conflict(
    role: str, first: tuple[date | None, date | None], second: tuple[date | None, date | None]
) -> None:
    after = [
        member(A, role, start=first[0], end=first[1]),
        member(B, role, start=second[0], end=second[1]),
    ]
    found = only(problems([], after), 409, ONE_AT_A_TIME.format(role=role), A, B, "handover")
    assert found.code == "business-rule"


def test_three_overlapping_koordinatorer_give_a_conflict_for_each_pair() -> None:
    after = [member(A), member(B, start=DAY), member(C, start=TOMORROW)]
    found = problems([], after)
    assert statuses(found) == [409, 409, 409]
    assert all(ONE_AT_A_TIME.format(role=KOORD) in p.message for p in found)


@pytest.mark.parametrize("role", sorted(COORDINATOR_ROLES))
def test_a_coordinator_is_never_removed(role: str) -> None:
    kind = K.BUP if role == FORLOP_BUP else K.KOMMUNE_HELSE
    before = [member(A, role, kind), member(B, "behandler", K.BUP)]
    found = only(problems(before, [before[1]]), 409, f"The {role} {A}", NEVER_REMOVED, "history")
    assert found.code == "business-rule"


@pytest.mark.parametrize(
    ("before", "after"),
    [
        pytest.param([member(A)], [], id="only-member-removed"),
        pytest.param(
            [member(A, end=YESTERDAY), member(B, start=DAY)],
            [member(B, start=DAY)],
            id="ended-coordinator-removed-from-history",
        ),
        pytest.param(
            [member(A)],
            [member(B, start=DAY)],
            id="replaced-instead-of-handed-over",
        ),
    ],
)
def test_removing_a_coordinator_is_refused(
    before: list[Participant], after: list[Participant]
) -> None:
    found = [p for p in problems(before, after) if NEVER_REMOVED in p.message]
    assert statuses(found) == [409]


def test_ending_a_coordinators_period_is_the_way_to_stop() -> None:
    before = [member(A), member(B, BARNEKOORD)]
    after = [member(A, end=DAY), member(B, BARNEKOORD, end=DAY)]
    assert problems(before, after) == []


@pytest.mark.parametrize("role", ["behandler", "hovedkontakt", "tillitsperson", "saksbehandler"])
def test_a_member_who_does_not_coordinate_may_be_removed(role: str) -> None:
    before = [member(A), member(B, role, K.SKOLE)]
    assert problems(before, [member(A)]) == []


@pytest.mark.parametrize("role", sorted(COORDINATOR_ROLES))
@pytest.mark.parametrize("kind", sorted(NEVER_COORDINATE))
def test_school_kindergarten_ppt_and_nav_never_coordinate(kind: str, role: str) -> None:
    found = only(problems([], [member(A, role, kind)]), 422, kind, NEVER_COORDINATE_WORDS)
    assert "004:l.580" in found.message


@pytest.mark.parametrize("kind", sorted(NEVER_COORDINATE))
def test_a_never_coordinating_substitute_is_refused_too(kind: str) -> None:
    after = [member(A), member(S, KOORD, kind, substitute_for=A)]
    only(problems([], after), 422, kind, NEVER_COORDINATE_WORDS)


@pytest.mark.parametrize("kind", sorted(MAY_COORDINATE))
def test_other_kinds_may_coordinate(kind: str) -> None:
    assert problems([], [member(A, KOORD, kind)]) == []


# --- the barnekoordinator ----------------------------------------------------------------


@pytest.mark.parametrize("appointer", sorted(MUNICIPAL))
def test_the_municipality_appoints_a_barnekoordinator(appointer: str) -> None:
    assert problems([], [member(A, BARNEKOORD)], appointer=appointer) == []


@pytest.mark.parametrize("appointer", [*sorted(NON_MUNICIPAL), None])
def test_nobody_else_appoints_a_barnekoordinator(appointer: str | None) -> None:
    found = only(problems([], [member(A, BARNEKOORD)], appointer=appointer), 403)
    assert found.code == "forbidden"
    assert MUNICIPALITY_WORDS in found.message
    assert (appointer or "an unknown organisation") in found.message
    assert "§15-8" in found.message


def test_bup_may_not_appoint_a_barnekoordinator() -> None:
    found = only(problems([], [member(A, BARNEKOORD)], appointer=K.BUP), 403)
    assert "not by bup" in found.message


@pytest.mark.parametrize("age", [0, 1, 12, 17])
def test_a_barnekoordinator_for_a_child(age: int) -> None:
    assert problems([], [member(A, BARNEKOORD)], age=age) == []


@pytest.mark.parametrize("age", [18, 19, 23, None])
def test_no_barnekoordinator_from_18_or_without_a_birth_date(age: int | None) -> None:
    found = only(problems([], [member(A, BARNEKOORD)], age=age), 422, UNDER_18_WORDS)
    assert "birth date" in found.message


def test_an_adult_age_does_not_matter_for_an_ordinary_koordinator() -> None:
    assert problems([], [member(A)], age=30, appointer=K.BUP) == []
    assert problems([], [member(A)], age=None, appointer=None) == []


def test_a_specialist_appointing_for_an_adult_gets_both_problems() -> None:
    found = problems([], [member(A, BARNEKOORD)], appointer=K.BUP, age=18)
    assert statuses(found) == [403, 422]
    assert MUNICIPALITY_WORDS in found[0].message
    assert UNDER_18_WORDS in found[1].message


def test_an_unchanged_barnekoordinator_is_not_judged_again() -> None:
    """Rules on appointing judge the new participants: when the child has turned 18, the
    team can still be edited by anyone while the barnekoordinator stays as it was."""
    before = [member(A, BARNEKOORD)]
    after = [member(A, BARNEKOORD), member(B, "behandler", K.BUP)]
    assert problems(before, after, appointer=K.BUP, age=18) == []


def test_ending_a_barnekoordinator_when_the_child_turns_18() -> None:
    before = [member(A, BARNEKOORD)]
    after = [member(A, BARNEKOORD, end=DAY)]
    assert problems(before, after, age=18) == []


# --- nasjonalt forløp --------------------------------------------------------------------


def test_in_forlop_the_koordinator_belongs_to_the_barnevernstjeneste() -> None:
    after = [member(A, KOORD, K.BARNEVERNSTJENESTE)]
    assert problems([], after, category=FORLOP) == []


@pytest.mark.parametrize(
    "kind", sorted(kind for kind in MAY_COORDINATE if kind != K.BARNEVERNSTJENESTE)
)
def test_in_forlop_no_other_koordinator(kind: str | None) -> None:
    found = only(problems([], [member(A, KOORD, kind)], category=FORLOP), 422, FORLOP_WORDS)
    assert "000:l.4201" in found.message


@pytest.mark.parametrize("category", [IP, "kriseplan", "behandlingsplan", None])
def test_outside_forlop_any_coordinating_kind_may_coordinate(category: str | None) -> None:
    assert problems([], [member(A, KOORD, K.BUP)], category=category) == []


def test_in_forlop_a_school_koordinator_breaks_both_rules() -> None:
    found = problems([], [member(A, KOORD, K.SKOLE)], category=FORLOP)
    assert statuses(found) == [422, 422]
    assert NEVER_COORDINATE_WORDS in found[0].message
    assert FORLOP_WORDS in found[1].message


@pytest.mark.parametrize(
    "participant",
    [
        pytest.param(member(A, FORLOP_BUP, K.BUP), id="forlopskoordinator-bup"),
        pytest.param(member(A, FORLOP_KOMMUNE, K.KOMMUNE_HELSE), id="forlopskoordinator-kommune"),
        pytest.param(member(A, BARNEKOORD, K.KOMMUNE_HELSE), id="barnekoordinator"),
        pytest.param(member(A, "behandler", K.BUP), id="behandler"),
    ],
)
def test_in_forlop_the_rule_is_about_the_koordinator(participant: Participant) -> None:
    assert problems([], [participant], category=FORLOP) == []


def test_in_forlop_handing_over_to_the_barnevernstjeneste() -> None:
    before = [member(A, KOORD, K.KOMMUNE_HELSE)]
    after = [
        member(A, KOORD, K.KOMMUNE_HELSE, end=YESTERDAY),
        member(B, KOORD, K.BARNEVERNSTJENESTE, start=DAY),
    ]
    assert problems(before, after, category=FORLOP) == []


# --- substitutes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "after",
    [
        pytest.param([member(A), member(S, substitute_for=A)], id="for-the-koordinator"),
        pytest.param(
            [member(A), member(S, start=DAY, end=TOMORROW, substitute_for=A)],
            id="in-its-own-period-overlapping",
        ),
        pytest.param(
            [member(A, BARNEKOORD), member(S, BARNEKOORD, substitute_for=A)],
            id="for-the-barnekoordinator",
        ),
        pytest.param(
            [member(A, FORLOP_BUP, K.BUP), member(S, FORLOP_BUP, K.BUP, substitute_for=A)],
            id="for-a-forlopskoordinator",
        ),
        pytest.param(
            [member(A), member(S, substitute_for=A), member(B, substitute_for=A)],
            id="two-substitutes-for-one",
        ),
    ],
)
def test_valid_substitutes(after: list[Participant]) -> None:
    assert problems([], after) == []


@pytest.mark.parametrize(
    ("after", "absent"),
    [
        pytest.param(
            [member(A), member(B, "behandler", K.BUP), member(S, substitute_for=B)],
            B,
            id="for-a-non-coordinator",
        ),
        pytest.param([member(A), member(S, substitute_for=C)], C, id="for-someone-not-in-team"),
        pytest.param([member(S, substitute_for=A)], A, id="nobody-coordinates"),
        pytest.param(
            [member(A), member(S, "behandler", K.BUP, substitute_for=C)],
            C,
            id="non-coordinating-substitute",
        ),
    ],
)
def test_a_substitute_stands_in_for_a_coordinator_of_the_team(
    after: list[Participant], absent: str
) -> None:
    only(problems([], after), 422, f"{S} is a substitute for {absent}", NO_COORDINATOR_WORDS)


def test_removing_the_coordinator_leaves_its_substitute_pointing_nowhere() -> None:
    before = [member(A), member(S, substitute_for=A)]
    found = problems(before, [member(S, substitute_for=A)])
    assert statuses(found) == [409, 422]
    assert NEVER_REMOVED in found[0].message
    assert NO_COORDINATOR_WORDS in found[1].message


@pytest.mark.parametrize(
    "after",
    [
        pytest.param([member(A), member(S, substitute_for=S)], id="for-itself"),
        pytest.param(
            [member(A), member(B, substitute_for=A), member(S, substitute_for=B)],
            id="for-another-substitute",
        ),
    ],
)
def test_a_substitute_does_not_stand_in_for_a_substitute(after: list[Participant]) -> None:
    only(problems([], after), 422, NO_COORDINATOR_WORDS)


# --- the coordinator of record -----------------------------------------------------------


@pytest.mark.parametrize(
    ("team", "expected"),
    [
        pytest.param([], None, id="empty-team"),
        pytest.param([member(A)], A, id="the-koordinator"),
        pytest.param(
            [member(A), member(B, BARNEKOORD)], B, id="barnekoordinator-listed-after-koordinator"
        ),
        pytest.param([member(B, BARNEKOORD), member(A)], B, id="barnekoordinator-listed-first"),
        pytest.param(
            [member(A), member(B, BARNEKOORD, end=YESTERDAY)], A, id="barnekoordinator-ended"
        ),
        pytest.param([member(A), member(B, BARNEKOORD, end=DAY)], B, id="ends-today-still-active"),
        pytest.param(
            [member(A), member(B, BARNEKOORD, start=TOMORROW)],
            A,
            id="barnekoordinator-from-tomorrow",
        ),
        pytest.param(
            [
                member(A),
                member(S, BARNEKOORD, substitute_for=B),
                member(B, BARNEKOORD, end=EARLIER),
            ],
            A,
            id="substitute-barnekoordinator-ignored",
        ),
        pytest.param([member(S, substitute_for=A)], None, id="only-a-substitute"),
        pytest.param(
            [member(S, start=EARLIER, substitute_for=A), member(A, start=DAY)],
            A,
            id="substitute-listed-first-ignored",
        ),
        pytest.param([member(A, end=YESTERDAY), member(B, start=DAY)], B, id="after-the-handover"),
        pytest.param(
            [member(A, end=DAY), member(B, start=TOMORROW)], A, id="last-day-before-handover"
        ),
        pytest.param([member(A, end=YESTERDAY)], None, id="only-ended-koordinator"),
        pytest.param([member(A, start=TOMORROW)], None, id="only-future-koordinator"),
        pytest.param(
            [member(A, FORLOP_KOMMUNE), member(B, FORLOP_BUP, K.BUP)],
            None,
            id="forlopskoordinatorer-are-not-of-record",
        ),
        pytest.param([member(A, "behandler", K.BUP)], None, id="nobody-coordinates"),
    ],
)
def test_coordinator_of_record(team: list[Participant], expected: str | None) -> None:
    found = coordinator_of_record(team, DAY)
    assert (found.member if found else None) == expected
    if found is not None:
        assert found.substitute_for is None
        assert found.active_on(DAY)


@pytest.mark.parametrize("role", sorted(COORDINATOR_ROLES))
def test_a_coordinator_acts_for_a_registered_organisation(role: str) -> None:
    unknown = problems([], [member(A, role, None)], age=10)
    assert 422 in statuses(unknown)
    assert any("registered organisation" in p.message for p in unknown)


# --- one open individual plan per person, and a lost consent ----------------------------


@pytest.mark.parametrize("status", ["draft", "active", "on-hold", "unknown"])
def test_an_open_plan_beside_another_is_refused_alike_seen_or_not(status: str) -> None:
    unseen = one_per_person(status, [None])
    seen = one_per_person(status, ["CarePlan/a"])
    assert [p.status for p in unseen] == [409]
    assert unseen[0] == seen[0]  # the same words whether or not the caller may read it
    assert unseen[0].message == ONE_PER_PERSON and "CarePlan/" not in ONE_PER_PERSON
    assert [p.message for p in seen[1:]] == ["The child's open individual plan is CarePlan/a"]


@pytest.mark.parametrize("status", sorted(CLOSED_STATUSES))
def test_a_closed_plan_never_counts(status: str) -> None:
    assert one_per_person(status, ["CarePlan/a", None]) == []
    assert not is_open(status)


def test_the_only_open_plan_is_no_problem() -> None:
    assert one_per_person("active", []) == []


@pytest.mark.parametrize(
    ("status", "missing", "expected"),
    [
        ("active", (), ConsentLoss("on-hold", (Point.SAMTYKKE,))),
        ("draft", (Point.MAL,), ConsentLoss("draft", (Point.MAL, Point.SAMTYKKE))),
        ("on-hold", (Point.SAMARBEID,), ConsentLoss("on-hold", (Point.SAMTYKKE, Point.SAMARBEID))),
        ("on-hold", (Point.SAMTYKKE,), None),
        ("draft", (Point.MAL, Point.SAMTYKKE), None),
        ("completed", (), None),
        ("revoked", (), None),
    ],
)
def test_what_a_lost_consent_does(
    status: str, missing: tuple[Point, ...], expected: ConsentLoss | None
) -> None:
    assert consent_lost(status, missing) == expected


def test_the_plans_that_rest_on_a_consent() -> None:
    assert CONSENT_PURPOSES == {IP: "individuell-plan", FORLOP: "nasjonalt-forlop"}


def test_the_consents_an_event_ended_are_named_as_grants_name_them() -> None:
    """The watch compares what ended with the grants its view still holds (a view behind
    the event is waited for): the two must name a consent alike, or a view behind would
    pass for one that has caught up, and the plan would stay active."""
    withdrawn = DomainEvent(
        type="consent.Consent.withdrawn",
        source="consent",
        resource_type="Consent",
        resource_id="c1",
        version_id="2",
        patient="p1",
        data={"purpose": "individuell-plan"},
    )
    ended = ended_consents([withdrawn])
    grant = Grant(consent="Consent/c1", categories=["individuell-plan"], orgs=["910000012"])
    assert ended == {"p1": {grant.consent}}
