"""Table tests of the care plan rules (services/careplan/domain): the nine points of an
individual plan, the periods of care team participants, who may coordinate and who is the
coordinator of record. Pure functions, no database.

DOMAIN.md §2 (organisation kinds and roles) and §6 (individual plan, care team, coordinator).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from typing import Any

import pytest

from services.careplan.domain.completeness import WHAT_IS_MISSING, missing_points
from services.careplan.domain.coordination import (
    ADULT_AGE,
    MUNICIPAL,
    NEVER_COORDINATE,
    coordinator_of_record,
    team_problems,
)
from services.careplan.domain.model import Activity, Participant, PlanFacts
from services.careplan.domain.vocabulary import COORDINATOR_ROLES, PlanCategory, Point
from shared.codes import OrganisationKind as K
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

ALL_KINDS = tuple(K)
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
    assert COORDINATOR_ROLES == {KOORD, BARNEKOORD, FORLOP_KOMMUNE, FORLOP_BUP}
    assert NEVER_COORDINATE == {K.SKOLE, K.BARNEHAGE, K.PPT, K.NAV}
    assert MUNICIPAL == {K.KOMMUNE_HELSE, K.BARNEVERNSTJENESTE, K.FASTLEGE}
    assert ADULT_AGE == 18
    assert PlanCategory.FORLOPSPLAN == "forlopsplan"


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
