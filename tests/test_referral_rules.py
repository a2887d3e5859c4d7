"""Table tests of the referral rules (services/referral/domain): the Norwegian working-day
calendar, the Task state machine, what a rejection must say, referral completeness, who
may refer to whom, when a legal deadline is breached, and where the referral's clock
starts (its arrival). Pure functions, no I/O.

pbrl = pasient- og brukerrettighetsloven; DOMAIN §5 and §8.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest
from pydantic import ValidationError

from services.referral.domain.completeness import markers, missing, missing_coordinators
from services.referral.domain.deadlines import (
    assessment_deadline,
    breaches_due,
    clock_start,
    dated,
)
from services.referral.domain.model import Actor, Arrival, Problem, TaskState
from services.referral.domain.referrers import receiver_problem, referrer_problem
from services.referral.domain.rejection import care_situation_only, rejection_problems
from services.referral.domain.vocabulary import (
    CLOSE_REASON_SYSTEM,
    NO_SHOW_CLOSURE_DEFAULT,
    REJECTION_REASON_SYSTEM,
    ArrivalSource,
    Attachment,
    Breach,
    CloseReason,
    Completeness,
    LegalCriterion,
    RejectionReason,
    Step,
    TaskStatus,
)
from services.referral.domain.workflow import STEPS, TRANSITIONS, TaskChange, check_change
from services.referral.domain.working_days import (
    add_working_days,
    is_working_day,
    public_holidays,
    working_days_between,
)
from shared.clock import NORWAY
from shared.codes import OrganisationKind as K
from shared.config import Settings

S = TaskStatus

# --------------------------------------------------------------------------------------
# 1. The holiday calendar
# --------------------------------------------------------------------------------------

EASTER_SUNDAYS = [
    date(2008, 3, 23),
    date(2019, 4, 21),
    date(2020, 4, 12),
    date(2021, 4, 4),
    date(2022, 4, 17),
    date(2023, 4, 9),
    date(2024, 3, 31),
    date(2025, 4, 20),
    date(2026, 4, 5),
    date(2027, 3, 28),
    date(2028, 4, 16),
    date(2030, 4, 21),
    date(2038, 4, 25),
]
"""Easter Sunday (Western computus), from published almanacs."""

EASTER_OFFSETS = {
    -3: "skjærtorsdag",
    -2: "langfredag",
    0: "første påskedag",
    1: "andre påskedag",
    39: "Kristi himmelfartsdag",
    49: "første pinsedag",
    50: "andre pinsedag",
}
FIXED_DAYS = [(1, 1), (5, 1), (5, 17), (12, 25), (12, 26)]


@pytest.mark.parametrize("sunday", EASTER_SUNDAYS, ids=lambda d: str(d.year))
def test_easter_sunday_and_the_days_that_move_with_it(sunday: date) -> None:
    assert sunday.weekday() == 6
    holidays = public_holidays(sunday.year)
    for offset in EASTER_OFFSETS:
        day = sunday + timedelta(days=offset)
        assert day in holidays, (offset, day)
        assert not is_working_day(day), (offset, day)
    # The weekday ones are the ones that cost working days.
    assert (sunday - timedelta(days=3)).weekday() == 3  # skjærtorsdag is a Thursday
    assert (sunday - timedelta(days=2)).weekday() == 4  # langfredag is a Friday
    assert (sunday + timedelta(days=1)).weekday() == 0  # 2. påskedag is a Monday
    assert (sunday + timedelta(days=39)).weekday() == 3  # Kristi himmelfart: Thursday
    assert (sunday + timedelta(days=50)).weekday() == 0  # 2. pinsedag is a Monday
    # The days around Easter that are not holidays are working days.
    assert is_working_day(sunday - timedelta(days=4))  # onsdag før skjærtorsdag
    assert is_working_day(sunday + timedelta(days=2))  # tirsdag etter 2. påskedag
    assert is_working_day(sunday + timedelta(days=51))  # tirsdag etter 2. pinsedag


@pytest.mark.parametrize("sunday", EASTER_SUNDAYS, ids=lambda d: str(d.year))
def test_easter_holiday_names(sunday: date) -> None:
    holidays = public_holidays(sunday.year)
    assert holidays[sunday - timedelta(days=3)] == "skjærtorsdag"
    assert holidays[sunday - timedelta(days=2)] == "langfredag"
    assert holidays[sunday + timedelta(days=1)] == "andre påskedag"
    assert holidays[sunday + timedelta(days=50)] == "andre pinsedag"


@pytest.mark.parametrize("year", [2008, 2019, 2020, 2023, 2024, 2025, 2026, 2027, 2030, 2038])
@pytest.mark.parametrize(("month", "day"), FIXED_DAYS)
def test_fixed_holidays_are_not_working_days(year: int, month: int, day: int) -> None:
    holiday = date(year, month, day)
    assert holiday in public_holidays(year)
    assert not is_working_day(holiday)


@pytest.mark.parametrize(
    "day",
    [
        date(2024, 12, 24),  # Tuesday
        date(2025, 12, 24),  # Wednesday
        date(2026, 12, 24),  # Thursday
        date(2025, 12, 31),  # New Year's Eve, Wednesday
        date(2026, 12, 31),  # Thursday
        date(2026, 5, 18),  # the Monday after 17 May on a Sunday: no substitute day
        date(2025, 5, 2),  # Friday after 1 May
    ],
)
def test_christmas_eve_and_new_years_eve_on_a_weekday_are_working_days(day: date) -> None:
    assert day.weekday() < 5
    assert day not in public_holidays(day.year)
    assert is_working_day(day)


@pytest.mark.parametrize(
    "day",
    [
        date(2025, 12, 27),  # Saturday
        date(2025, 12, 28),  # Sunday
        date(2026, 3, 7),  # Saturday
        date(2026, 3, 8),  # Sunday
    ],
)
def test_weekends_are_not_working_days(day: date) -> None:
    assert day not in public_holidays(day.year)
    assert not is_working_day(day)


@pytest.mark.parametrize(
    "day",
    [date(2026, 3, 2), date(2026, 3, 6), date(2025, 11, 3), date(2026, 4, 1), date(2026, 4, 7)],
)
def test_ordinary_weekdays_are_working_days(day: date) -> None:
    assert is_working_day(day)


@pytest.mark.parametrize("sunday", [d for d in EASTER_SUNDAYS if d.year != 2008 and d.year != 2027])
def test_a_year_has_twelve_holidays(sunday: date) -> None:
    year = sunday.year
    expected = {date(year, m, d) for m, d in FIXED_DAYS} | {
        sunday + timedelta(days=offset) for offset in EASTER_OFFSETS
    }
    assert len(expected) == 12
    assert set(public_holidays(year)) == expected


@pytest.mark.parametrize(
    ("sunday", "shared", "names"),
    [
        # Easter 23 March 2008: Kristi himmelfart (+39) fell on 1 May.
        (date(2008, 3, 23), date(2008, 5, 1), {"offentlig høytidsdag (1. mai)", "Kristi"}),
        # Easter 28 March 2027: 2. pinsedag (+50) falls on 17 May.
        (date(2027, 3, 28), date(2027, 5, 17), {"grunnlovsdag (17. mai)", "andre pinsedag"}),
    ],
    ids=["2008-ascension-on-1-may", "2027-whit-monday-on-17-may"],
)
def test_a_year_where_two_holidays_coincide_has_eleven(
    sunday: date, shared: date, names: set[str]
) -> None:
    year = sunday.year
    expected = {date(year, m, d) for m, d in FIXED_DAYS} | {
        sunday + timedelta(days=offset) for offset in EASTER_OFFSETS
    }
    assert len(expected) == 11
    holidays = public_holidays(year)
    assert set(holidays) == expected
    assert len(holidays) == 11
    assert shared in holidays
    assert not is_working_day(shared)
    # One of the two names is kept for the shared day.
    assert any(holidays[shared].startswith(name) for name in names)


# --------------------------------------------------------------------------------------
# 2. Counting working days
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "count", "expected"),
    [
        # A plain Monday: two weeks later.
        (date(2025, 11, 3), 10, date(2025, 11, 17)),
        (date(2026, 3, 2), 10, date(2026, 3, 16)),
        # Easter 2026: received Friday 27 March; Mon 30, Tue 31, Wed 1 April (3), then
        # skjærtorsdag 2, langfredag 3 and 2. påskedag 6 April are skipped; Tue 7 .. Fri 10
        # (7), Mon 13, Tue 14, Wed 15 April (10).
        (date(2026, 3, 27), 10, date(2026, 4, 15)),
        (date(2026, 3, 27), 3, date(2026, 4, 1)),
        (date(2026, 3, 27), 4, date(2026, 4, 7)),
        # May 2023: 1 May (Mon), 17 May (Wed), Kristi himmelfart 18 May (Thu), 2. pinsedag
        # 29 May (Mon). From Fri 28 April: 2-5 May (4), 8-12 (9), Mon 15 May (10).
        (date(2023, 4, 28), 10, date(2023, 5, 15)),
        # From Mon 15 May 2023: Tue 16 (1), skip 17 and 18, Fri 19 (2), 22-26 (7), skip 29,
        # Tue 30 (8), Wed 31 (9), Thu 1 June (10).
        (date(2023, 5, 15), 10, date(2023, 6, 1)),
        (date(2023, 5, 16), 1, date(2023, 5, 19)),
        # May 2026: Kristi himmelfart Thu 14 May, 2. pinsedag Mon 25 May (17 May is Sunday).
        (date(2026, 5, 8), 10, date(2026, 5, 26)),
        # Christmas 2025: Mon 22, Tue 23, Wed 24 (Christmas Eve is a working day) (3), skip
        # 25 and 26, Mon 29 - Wed 31 (6), skip 1 January, Fri 2 (7), Mon 5 - Wed 7 (10).
        (date(2025, 12, 19), 10, date(2026, 1, 7)),
        (date(2025, 12, 23), 1, date(2025, 12, 24)),
        (date(2025, 12, 24), 1, date(2025, 12, 29)),
        (date(2025, 12, 31), 1, date(2026, 1, 2)),
        # From a Saturday: Monday is the first working day.
        (date(2025, 10, 4), 1, date(2025, 10, 6)),
        (date(2025, 10, 4), 10, date(2025, 10, 17)),
        (date(2025, 10, 5), 10, date(2025, 10, 17)),  # from a Sunday
        # Saturday 7 June 2025: 2. pinsedag is Monday 9 June, so Tue 10 June is the first.
        (date(2025, 6, 7), 1, date(2025, 6, 10)),
        (date(2025, 6, 7), 10, date(2025, 6, 23)),
        # From a Friday: the next Monday.
        (date(2025, 10, 3), 1, date(2025, 10, 6)),
    ],
)
def test_add_working_days(start: date, count: int, expected: date) -> None:
    assert add_working_days(start, count) == expected
    assert is_working_day(expected)
    assert working_days_between(start, expected) == count


@pytest.mark.parametrize(
    "start",
    [date(2025, 10, 4), date(2026, 4, 3), date(2025, 12, 25), date(2026, 3, 2)],
)
def test_add_zero_working_days_is_the_start_even_on_a_holiday(start: date) -> None:
    assert add_working_days(start, 0) == start


@pytest.mark.parametrize("count", [-1, -10])
def test_add_negative_working_days_is_refused(count: int) -> None:
    with pytest.raises(ValueError):
        add_working_days(date(2026, 3, 2), count)


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (date(2026, 3, 2), date(2026, 3, 2), 0),
        (date(2026, 3, 16), date(2026, 3, 2), 0),  # end before start
        (date(2026, 3, 2), date(2026, 3, 3), 1),
        (date(2026, 3, 6), date(2026, 3, 8), 0),  # Friday to Sunday
        (date(2026, 4, 1), date(2026, 4, 6), 0),  # over Easter 2026
        (date(2026, 4, 1), date(2026, 4, 7), 1),
        (date(2025, 12, 31), date(2026, 1, 1), 0),  # across the new year
    ],
)
def test_working_days_between(start: date, end: date, expected: int) -> None:
    assert working_days_between(start, end) == expected


@pytest.mark.parametrize("count", [1, 2, 5, 10, 23])
def test_add_and_count_agree_every_day_2019_to_2031(count: int) -> None:
    start, last = date(2019, 1, 1), date(2031, 12, 31)
    day = start
    checked = 0
    while day <= last:
        result = add_working_days(day, count)
        assert result > day
        assert is_working_day(result), (day, count)
        assert working_days_between(day, result) == count, (day, count)
        # Nothing earlier would do: the day before `result` has one working day fewer.
        assert working_days_between(day, result - timedelta(days=1)) == count - 1, (day, count)
        # A long chain adds up.
        assert add_working_days(add_working_days(day, 1), count - 1) == result
        day += timedelta(days=1)
        checked += 1
    assert checked == (last - start).days + 1


def test_assessment_deadline_is_ten_working_days_after_receipt() -> None:
    assert assessment_deadline(date(2026, 3, 27)) == date(2026, 4, 15)
    assert assessment_deadline(date(2025, 11, 3)) == date(2025, 11, 17)


# --------------------------------------------------------------------------------------
# 3. The workflow
# --------------------------------------------------------------------------------------

OWNER_ORG = "910000012"
REQUESTER_ORG = "889640782"
OTHER_ORG = "974760673"
FOLLOW_UP_ORG = "964338531"
OWNER = Actor(OWNER_ORG, K.BUP)
REQUESTER = Actor(REQUESTER_ORG, K.FASTLEGE)
OUTSIDER = Actor(OTHER_ORG, K.BUP)
NOBODY = Actor(None, None)
ACTORS = {"owner": OWNER, "requester": REQUESTER}

TODAY = date(2026, 3, 2)
RECEIVED_ON = date(2026, 2, 23)
FRIST = date(2026, 4, 30)
CLOSED = (S.REJECTED, S.COMPLETED, S.CANCELLED)

EXPECTED_TRANSITIONS: dict[tuple[TaskStatus, TaskStatus], frozenset[str]] = {
    (S.REQUESTED, S.RECEIVED): frozenset({"owner"}),
    (S.REQUESTED, S.CANCELLED): frozenset({"requester"}),
    (S.RECEIVED, S.ACCEPTED): frozenset({"owner"}),
    (S.RECEIVED, S.REJECTED): frozenset({"owner"}),
    (S.RECEIVED, S.ON_HOLD): frozenset({"owner"}),
    (S.RECEIVED, S.CANCELLED): frozenset({"owner", "requester"}),
    (S.ACCEPTED, S.IN_PROGRESS): frozenset({"owner"}),
    (S.ACCEPTED, S.ON_HOLD): frozenset({"owner"}),
    (S.ACCEPTED, S.CANCELLED): frozenset({"owner", "requester"}),
    (S.IN_PROGRESS, S.ON_HOLD): frozenset({"owner"}),
    (S.IN_PROGRESS, S.COMPLETED): frozenset({"owner"}),
    (S.IN_PROGRESS, S.CANCELLED): frozenset({"owner"}),
    (S.ON_HOLD, S.RECEIVED): frozenset({"owner"}),
    (S.ON_HOLD, S.ACCEPTED): frozenset({"owner"}),
    (S.ON_HOLD, S.IN_PROGRESS): frozenset({"owner"}),
    (S.ON_HOLD, S.CANCELLED): frozenset({"owner", "requester"}),
}
"""The state machine of the workflow module's docstring, written out independently."""

BASE = TaskState(status=S.REQUESTED, owner=OWNER_ORG, requester=REQUESTER_ORG)


def task(status: TaskStatus, *, frist: date | None = None) -> TaskState:
    """A consistent stored Task in `status` (with a frist when it has been accepted)."""
    state = replace(BASE, status=status, step=STEPS[status][0])
    if status is not S.REQUESTED:
        state = replace(
            state,
            ansiennitetsdato=RECEIVED_ON,
            assessment_deadline=add_working_days(RECEIVED_ON, 10),
        )
    if status in (S.ACCEPTED, S.IN_PROGRESS) or frist is not None:
        state = replace(state, frist=frist or FRIST)
    if status is S.IN_PROGRESS:
        state = replace(state, care_started=TODAY)
    return state


def valid_rejection(before: TaskState) -> TaskState:
    return replace(
        before,
        status=S.REJECTED,
        step=Step.AVSLATT,
        reason_system=REJECTION_REASON_SYSTEM,
        reason_code=RejectionReason.INGEN_RETT,
        justification=(
            "Alvorlighetskriteriet er ikke oppfylt: plagene er milde og forbigående, og"
            " kommunale tiltak (helsesykepleier, kommunepsykolog) er ikke prøvd."
        ),
        criteria=(LegalCriterion.ALVORLIGHETSKRITERIET, LegalCriterion.PRIORITERINGSVEILEDEREN),
        follow_up=FOLLOW_UP_ORG,
    )


def satisfied(frm: TaskStatus, to: TaskStatus, role: str) -> TaskChange:
    """A change from `frm` to `to` by `role` that carries everything the change needs."""
    resumes_accepted = frm is S.ON_HOLD and to in (S.ACCEPTED, S.IN_PROGRESS)
    before = task(frm, frist=FRIST if resumes_accepted else None)
    after = replace(before, status=to, step=STEPS[to][0])
    if to is S.ACCEPTED and before.frist is None:
        after = replace(after, frist=FRIST)
    if to is S.IN_PROGRESS:
        after = replace(after, care_started=TODAY)
    if to is S.REJECTED:
        after = valid_rejection(before)
    if to is S.COMPLETED:
        after = replace(after, follow_up_plan=True, follow_up=FOLLOW_UP_ORG)
    if to is S.CANCELLED:
        if role == "owner":
            after = replace(after, reason_system=CLOSE_REASON_SYSTEM, reason_code=CloseReason.ANNET)
        else:
            after = replace(after, step=Step.TRUKKET)
    return TaskChange(before, after, ACTORS[role], TODAY)


def statuses(problems: list[Problem]) -> list[int]:
    return [p.status for p in problems]


def test_the_transition_table_is_the_documented_state_machine() -> None:
    assert {pair: frozenset(who) for pair, who in TRANSITIONS.items()} == EXPECTED_TRANSITIONS


LEGAL = [(frm, to, role) for (frm, to), who in EXPECTED_TRANSITIONS.items() for role in sorted(who)]
WRONG_ROLE = [
    (frm, to, role)
    for (frm, to), who in EXPECTED_TRANSITIONS.items()
    for role in sorted({"owner", "requester"} - who)
]
ILLEGAL = [
    (frm, to)
    for frm in S
    for to in S
    if frm != to and frm not in CLOSED and (frm, to) not in EXPECTED_TRANSITIONS
]
REOPEN = [(frm, to) for frm in CLOSED for to in S if to != frm]
ALL_PAIRS = [(frm, to) for frm in S for to in S]


def test_the_pair_tables_cover_every_pair() -> None:
    moves = {(f, t) for f, t, _ in LEGAL} | set(ILLEGAL) | set(REOPEN)
    same = {(s, s) for s in S}
    assert moves | same == set(ALL_PAIRS)
    assert len(ALL_PAIRS) == 64
    assert len(same) + len(EXPECTED_TRANSITIONS) + len(ILLEGAL) + len(REOPEN) == 64


@pytest.mark.parametrize(("frm", "to", "role"), LEGAL)
def test_a_legal_transition_with_its_requirements_succeeds(
    frm: TaskStatus, to: TaskStatus, role: str
) -> None:
    assert check_change(satisfied(frm, to, role)) == []


@pytest.mark.parametrize(("frm", "to", "role"), WRONG_ROLE)
def test_a_legal_transition_by_the_wrong_party_is_forbidden(
    frm: TaskStatus, to: TaskStatus, role: str
) -> None:
    other = "owner" if role == "requester" else "requester"
    change = replace(satisfied(frm, to, other), actor=ACTORS[role])
    problems = check_change(change)
    assert statuses(problems) == [403]
    assert problems[0].code == "forbidden"
    assert problems[0].expression == "Task.status"


@pytest.mark.parametrize(("frm", "to"), ILLEGAL)
@pytest.mark.parametrize("role", ["owner", "requester"])
def test_an_illegal_transition_is_a_conflict(frm: TaskStatus, to: TaskStatus, role: str) -> None:
    before = task(frm)
    after = replace(before, status=to, step=STEPS[to][0])
    problems = check_change(TaskChange(before, after, ACTORS[role], TODAY))
    assert statuses(problems) == [409]
    assert problems[0].code == "business-rule"
    assert problems[0].expression == "Task.status"
    assert f"from {frm} to {to}" in problems[0].message


@pytest.mark.parametrize(("frm", "to"), REOPEN)
@pytest.mark.parametrize("role", ["owner", "requester"])
def test_a_closed_referral_is_not_reopened(frm: TaskStatus, to: TaskStatus, role: str) -> None:
    before = task(frm)
    after = replace(before, status=to, step=STEPS[to][0], frist=FRIST)
    problems = check_change(TaskChange(before, after, ACTORS[role], TODAY))
    assert statuses(problems) == [409]
    assert problems[0].expression == "Task.status"
    assert "not reopened" in problems[0].message


@pytest.mark.parametrize(("frm", "to"), ALL_PAIRS)
@pytest.mark.parametrize("actor", [OUTSIDER, NOBODY], ids=["other-org", "no-org"])
def test_an_organisation_not_party_to_the_referral_is_forbidden(
    frm: TaskStatus, to: TaskStatus, actor: Actor
) -> None:
    if (frm, to) in EXPECTED_TRANSITIONS:
        role = sorted(EXPECTED_TRANSITIONS[(frm, to)])[0]
        change = replace(satisfied(frm, to, role), actor=actor)
    else:
        before = task(frm)
        change = TaskChange(before, replace(before, status=to), actor, TODAY)
    problems = check_change(change)
    assert statuses(problems) == [403]
    assert problems[0].code == "forbidden"


@pytest.mark.parametrize("status", list(S))
def test_an_unchanged_status_is_an_update_only_the_owner_may_make(status: TaskStatus) -> None:
    before = task(status)
    by_owner = statuses(check_change(TaskChange(before, before, OWNER, TODAY)))
    assert by_owner == ([409] if status in CLOSED else [])
    problems = check_change(TaskChange(before, before, REQUESTER, TODAY))
    assert statuses(problems) == [403]
    assert "withdraw" in problems[0].message


@pytest.mark.parametrize("status", CLOSED)
def test_a_closed_referrals_workflow_no_longer_changes(status: TaskStatus) -> None:
    before = task(status)
    other_step = next((s for s in STEPS[status] if s != before.step), None)
    changes = [replace(before, no_shows=before.no_shows + 1)]
    if other_step is not None:
        changes.append(replace(before, step=other_step))
    for after in changes:
        problems = check_change(TaskChange(before, after, OWNER, TODAY))
        assert statuses(problems)[:1] == [409], after


@pytest.mark.parametrize("frm", [S.REQUESTED, S.RECEIVED, S.ACCEPTED, S.ON_HOLD])
@pytest.mark.parametrize("step", [Step.TRUKKET, None])
def test_the_requester_may_withdraw_before_care_starts(frm: TaskStatus, step: Step | None) -> None:
    before = task(frm)
    after = replace(before, status=S.CANCELLED, step=step)
    # The requester needs no coded reason to withdraw its own referral.
    assert check_change(TaskChange(before, after, REQUESTER, TODAY)) == []


def test_withdrawing_and_closing_are_each_one_partys_step() -> None:
    before = task(S.RECEIVED)
    by_requester = check_change(
        TaskChange(
            before, replace(before, status=S.CANCELLED, step=Step.AVSLUTTET), REQUESTER, TODAY
        )
    )
    assert statuses(by_requester) == [422]
    assert "trukket" in by_requester[0].message
    closed = replace(
        before,
        status=S.CANCELLED,
        step=Step.TRUKKET,
        reason_system=CLOSE_REASON_SYSTEM,
        reason_code=CloseReason.ANNET,
    )
    by_owner = check_change(TaskChange(before, closed, OWNER, TODAY))
    assert statuses(by_owner) == [422]
    assert "avsluttet" in by_owner[0].message


def test_the_requester_may_not_withdraw_once_care_has_started() -> None:
    during = task(S.IN_PROGRESS)
    problems = check_change(
        TaskChange(during, replace(during, status=S.CANCELLED, step=Step.TRUKKET), REQUESTER, TODAY)
    )
    assert statuses(problems) == [403]
    assert "receiving organisation" in problems[0].message
    paused = replace(task(S.ON_HOLD, frist=FRIST), care_started=TODAY)
    problems = check_change(
        TaskChange(paused, replace(paused, status=S.CANCELLED, step=Step.TRUKKET), REQUESTER, TODAY)
    )
    assert statuses(problems) == [409]
    assert "Care has started" in problems[0].message


@pytest.mark.parametrize(
    ("frm", "to"),
    [
        (S.REQUESTED, S.RECEIVED),
        (S.RECEIVED, S.ACCEPTED),
        (S.RECEIVED, S.REJECTED),
        (S.RECEIVED, S.ON_HOLD),
        (S.ACCEPTED, S.IN_PROGRESS),
        (S.IN_PROGRESS, S.COMPLETED),
    ],
)
def test_the_requester_cannot_assess_or_treat(frm: TaskStatus, to: TaskStatus) -> None:
    change = replace(satisfied(frm, to, "owner"), actor=REQUESTER)
    assert statuses(check_change(change)) == [403]


def test_an_organisation_that_is_both_parties_may_do_either() -> None:
    before = replace(task(S.RECEIVED), requester=OWNER_ORG)
    after = replace(before, status=S.CANCELLED, step=Step.AVSLUTTET)
    # Acting as owner it needs the owner's coded reason...
    assert statuses(check_change(TaskChange(before, after, OWNER, TODAY))) == [422]
    closing = replace(after, reason_system=CLOSE_REASON_SYSTEM, reason_code=CloseReason.ANNET)
    assert check_change(TaskChange(before, closing, OWNER, TODAY)) == []


@pytest.mark.parametrize(
    ("frist", "expected"),
    [
        (None, [422]),
        (TODAY - timedelta(days=1), [422]),
        (date(2025, 1, 1), [422]),
        (TODAY, []),
        (TODAY + timedelta(days=1), []),
        (FRIST, []),
    ],
)
def test_accepting_needs_a_frist_that_is_not_past(frist: date | None, expected: list[int]) -> None:
    before = task(S.RECEIVED)
    after = replace(before, status=S.ACCEPTED, step=Step.RETT_TIL_HELSEHJELP, frist=frist)
    problems = check_change(TaskChange(before, after, OWNER, TODAY))
    assert statuses(problems) == expected
    if problems:
        assert problems[0].expression == "Task.extension"
        assert problems[0].code == ("required" if frist is None else "business-rule")


def test_the_requester_cannot_accept_even_with_a_frist() -> None:
    before = task(S.RECEIVED)
    after = replace(before, status=S.ACCEPTED, step=Step.RETT_TIL_HELSEHJELP, frist=FRIST)
    problems = check_change(TaskChange(before, after, REQUESTER, TODAY))
    assert statuses(problems) == [403]


REJECTION_GAPS: list[tuple[str, dict[str, object], str, str]] = [
    ("no-reason", {"reason_system": None, "reason_code": None}, "Task.statusReason", "required"),
    (
        "reason-from-wrong-system",
        {"reason_system": CLOSE_REASON_SYSTEM, "reason_code": "annet"},
        "Task.statusReason",
        "required",
    ),
    ("unknown-reason", {"reason_code": "fordi"}, "Task.statusReason", "required"),
    ("no-justification", {"justification": ""}, "Task.statusReason.text", "required"),
    ("blank-justification", {"justification": "  \n "}, "Task.statusReason.text", "required"),
    (
        "care-situation-only",
        {"justification": "Uavklart omsorgssituasjon, anbefaler barnevernstiltak."},
        "Task.statusReason.text",
        "business-rule",
    ),
    ("no-criteria", {"criteria": ()}, "Task.extension", "required"),
    (
        "unknown-criterion",
        {"criteria": (LegalCriterion.NYTTEKRITERIET, "magefølelse")},
        "Task.extension",
        "required",
    ),
    ("no-follow-up", {"follow_up": None}, "Task.output", "required"),
]


@pytest.mark.parametrize(
    ("gap", "expression", "code"),
    [(fields, expression, code) for _, fields, expression, code in REJECTION_GAPS],
    ids=[name for name, *_ in REJECTION_GAPS],
)
def test_a_rejection_missing_one_thing_gets_one_problem(
    gap: dict[str, object], expression: str, code: str
) -> None:
    before = task(S.RECEIVED)
    after = replace(valid_rejection(before), **gap)  # type: ignore[arg-type]
    problems = check_change(TaskChange(before, after, OWNER, TODAY))
    assert statuses(problems) == [422]
    assert problems[0].expression == expression
    assert problems[0].code == code
    assert rejection_problems(after) == problems


def test_a_rejection_missing_everything_gets_a_problem_per_item() -> None:
    before = task(S.RECEIVED)
    after = replace(before, status=S.REJECTED, step=Step.AVSLATT)
    problems = check_change(TaskChange(before, after, OWNER, TODAY))
    assert statuses(problems) == [422, 422, 422, 422]
    assert [p.expression for p in problems] == [
        "Task.statusReason",
        "Task.statusReason.text",
        "Task.extension",
        "Task.output",
    ]


@pytest.mark.parametrize("step", [Step.AVSLATT, Step.VIDERESENDT])
@pytest.mark.parametrize("reason", list(RejectionReason))
def test_a_complete_rejection_or_redirect_is_accepted(step: Step, reason: RejectionReason) -> None:
    before = task(S.RECEIVED)
    after = replace(valid_rejection(before), step=step, reason_code=reason)
    assert check_change(TaskChange(before, after, OWNER, TODAY)) == []
    assert rejection_problems(after) == []


WRONG_STEPS = [(status, step) for status in S for step in Step if step not in STEPS[status]]


@pytest.mark.parametrize(("status", "step"), WRONG_STEPS)
def test_a_business_status_from_another_status_is_invalid(status: TaskStatus, step: Step) -> None:
    # Both as an update in place and as the target of a legal change.
    before = task(status)
    after = replace(before, step=step)
    problems = check_change(TaskChange(before, after, OWNER, TODAY))
    assert statuses(problems) == [422]
    assert problems[0].code == "code-invalid"
    assert problems[0].expression == "Task.businessStatus"


@pytest.mark.parametrize(("frm", "to"), list(EXPECTED_TRANSITIONS))
def test_a_legal_change_with_a_foreign_business_status_is_invalid(
    frm: TaskStatus, to: TaskStatus
) -> None:
    role = sorted(EXPECTED_TRANSITIONS[(frm, to)])[0]
    change = satisfied(frm, to, role)
    wrong = next(step for step in Step if step not in STEPS[to])
    problems = check_change(replace(change, after=replace(change.after, step=wrong)))
    assert statuses(problems) == [422]
    assert problems[0].code == "code-invalid"


@pytest.mark.parametrize("status", [S.ACCEPTED, S.IN_PROGRESS])
def test_no_shows_are_recorded_and_never_decrease(status: TaskStatus) -> None:
    before = replace(task(status), no_shows=2)
    assert check_change(TaskChange(before, replace(before, no_shows=3), OWNER, TODAY)) == []
    problems = check_change(TaskChange(before, replace(before, no_shows=1), OWNER, TODAY))
    assert statuses(problems) == [409]
    assert "only grows" in problems[0].message


def test_no_shows_do_not_decrease_on_a_transition_either() -> None:
    change = satisfied(S.IN_PROGRESS, S.CANCELLED, "owner")
    before = replace(change.before, no_shows=3)
    after = replace(change.after, no_shows=1)
    assert statuses(check_change(TaskChange(before, after, OWNER, TODAY)))[:1] == [409]


@pytest.mark.parametrize("status", [S.RECEIVED, S.ON_HOLD])
def test_no_shows_are_not_recorded_before_acceptance(status: TaskStatus) -> None:
    before = task(status)
    problems = check_change(TaskChange(before, replace(before, no_shows=1), OWNER, TODAY))
    assert statuses(problems) == [409]


@pytest.mark.parametrize(("no_shows", "expected"), [(0, [422]), (1, []), (3, [])])
def test_a_closure_warning_follows_a_no_show(no_shows: int, expected: list[int]) -> None:
    before = replace(task(S.IN_PROGRESS), no_shows=no_shows)
    after = replace(before, step=Step.AVSLUTNING_VARSLET)
    assert statuses(check_change(TaskChange(before, after, OWNER, TODAY))) == expected


@pytest.mark.parametrize("status", [S.ACCEPTED, S.IN_PROGRESS])
def test_the_frist_is_not_moved_by_an_update(status: TaskStatus) -> None:
    before = task(status)
    for frist in (FRIST + timedelta(days=30), FRIST - timedelta(days=1), None):
        problems = check_change(TaskChange(before, replace(before, frist=frist), OWNER, TODAY))
        assert statuses(problems) == [409], frist


@pytest.mark.parametrize(
    ("before", "after"),
    [
        # A different frist, or none, on a status change: the same decision, moved.
        (task(S.ACCEPTED), replace(task(S.ON_HOLD, frist=FRIST), frist=FRIST + timedelta(90))),
        (task(S.ACCEPTED), replace(task(S.ON_HOLD), frist=None)),
        (task(S.ACCEPTED), replace(task(S.IN_PROGRESS), frist=FRIST + timedelta(90))),
        (task(S.IN_PROGRESS), replace(task(S.ON_HOLD), frist=None)),
        (task(S.ON_HOLD, frist=FRIST), replace(task(S.ACCEPTED), frist=None)),
        (task(S.ON_HOLD, frist=FRIST), replace(task(S.ACCEPTED), frist=FRIST + timedelta(90))),
    ],
    ids=[
        "accepted-to-on-hold-moved",
        "accepted-to-on-hold-cleared",
        "accepted-to-in-progress-moved",
        "in-progress-to-on-hold-cleared",
        "on-hold-to-accepted-cleared",
        "on-hold-to-accepted-moved",
    ],
)
def test_a_status_change_does_not_move_or_clear_the_frist(
    before: TaskState, after: TaskState
) -> None:
    problems = check_change(TaskChange(before, after, OWNER, TODAY))
    assert statuses(problems)[:1] == [409]


CLOSE_CASES = [
    # (no_shows, warned, expected statuses)
    (0, None, [422, 409]),
    (1, None, [422, 409]),
    (NO_SHOW_CLOSURE_DEFAULT, None, [409]),
    (0, TODAY - timedelta(days=14), [422]),
    (2, TODAY - timedelta(days=14), [422]),  # DOMAIN §5: repeated is 3, not 2
    (NO_SHOW_CLOSURE_DEFAULT - 1, TODAY - timedelta(days=14), [422]),
    (NO_SHOW_CLOSURE_DEFAULT, TODAY - timedelta(days=14), []),
    (NO_SHOW_CLOSURE_DEFAULT + 3, TODAY - timedelta(days=1), []),
]


@pytest.mark.parametrize("frm", [S.ACCEPTED, S.IN_PROGRESS])
@pytest.mark.parametrize(("no_shows", "warned", "expected"), CLOSE_CASES)
def test_closing_after_no_shows_needs_repeated_no_shows_and_a_warning(
    frm: TaskStatus, no_shows: int, warned: date | None, expected: list[int]
) -> None:
    before = replace(
        task(frm),
        no_shows=no_shows,
        closure_warned=warned,
        step=Step.AVSLUTNING_VARSLET if warned and frm is S.IN_PROGRESS else STEPS[frm][0],
    )
    after = replace(
        before,
        status=S.CANCELLED,
        step=Step.AVSLUTTET,
        reason_system=CLOSE_REASON_SYSTEM,
        reason_code=CloseReason.GJENTATTE_UTEBLIVELSER,
    )
    problems = check_change(TaskChange(before, after, OWNER, TODAY))
    assert statuses(problems) == expected
    if 409 in expected:
        assert problems[-1].expression == "Task.businessStatus"


def closure(no_shows: int) -> tuple[TaskState, TaskState]:
    """A warned referral in care with `no_shows`, and its closure after no-shows."""
    before = replace(
        task(S.IN_PROGRESS),
        no_shows=no_shows,
        closure_warned=TODAY - timedelta(days=14),
        step=Step.AVSLUTNING_VARSLET,
    )
    after = replace(
        before,
        status=S.CANCELLED,
        step=Step.AVSLUTTET,
        reason_system=CLOSE_REASON_SYSTEM,
        reason_code=CloseReason.GJENTATTE_UTEBLIVELSER,
    )
    return before, after


@pytest.mark.parametrize(
    ("threshold", "no_shows", "expected"),
    [
        (3, 2, [422]),
        (3, 3, []),
        (4, 3, [422]),
        (4, 4, []),
        (5, 4, [422]),
        (5, 7, []),
        (10, 9, [422]),
        (10, 10, []),
    ],
)
def test_the_no_show_threshold_is_the_deployments(
    threshold: int, no_shows: int, expected: list[int]
) -> None:
    before, after = closure(no_shows)
    problems = check_change(TaskChange(before, after, OWNER, TODAY, no_show_closure=threshold))
    assert statuses(problems) == expected
    if expected:
        assert f"at least {threshold}" in problems[0].message


def test_the_default_no_show_threshold_is_three() -> None:
    assert NO_SHOW_CLOSURE_DEFAULT == 3
    for no_shows, expected in ((2, [422]), (3, [])):
        before, after = closure(no_shows)
        assert statuses(check_change(TaskChange(before, after, OWNER, TODAY))) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, 3), ("3", 3), ("5", 5), ("10", 10), ("2", None), ("0", None), ("11", None)],
)
def test_the_no_show_setting_and_its_bounds(
    monkeypatch: pytest.MonkeyPatch, value: str | None, expected: int | None
) -> None:
    """BARNEBRO_REFERRAL_NO_SHOW_CLOSURE: never below DOMAIN §5's three."""
    if value is not None:
        monkeypatch.setenv("BARNEBRO_REFERRAL_NO_SHOW_CLOSURE", value)
    if expected is None:
        with pytest.raises(ValidationError):
            Settings()
    else:
        assert Settings().referral_no_show_closure == expected


def test_the_warning_must_precede_the_closure_not_come_with_it() -> None:
    # closure_warned set only on the new version does not count.
    before = replace(task(S.IN_PROGRESS), no_shows=NO_SHOW_CLOSURE_DEFAULT)
    after = replace(
        before,
        status=S.CANCELLED,
        step=Step.AVSLUTTET,
        reason_system=CLOSE_REASON_SYSTEM,
        reason_code=CloseReason.GJENTATTE_UTEBLIVELSER,
        closure_warned=TODAY,
    )
    assert statuses(check_change(TaskChange(before, after, OWNER, TODAY))) == [409]


@pytest.mark.parametrize(
    ("system", "code", "expected"),
    [
        (None, None, [422]),
        (REJECTION_REASON_SYSTEM, "annet", [422]),
        (CLOSE_REASON_SYSTEM, "ferdig", [422]),
        (CLOSE_REASON_SYSTEM, CloseReason.ANNET, []),
        (CLOSE_REASON_SYSTEM, CloseReason.TRUKKET, []),
    ],
)
@pytest.mark.parametrize("frm", [S.RECEIVED, S.ACCEPTED, S.IN_PROGRESS, S.ON_HOLD])
def test_the_owner_closes_with_a_coded_reason(
    frm: TaskStatus, system: str | None, code: str | None, expected: list[int]
) -> None:
    before = task(frm)
    after = replace(
        before, status=S.CANCELLED, step=Step.AVSLUTTET, reason_system=system, reason_code=code
    )
    problems = check_change(TaskChange(before, after, OWNER, TODAY))
    assert statuses(problems) == expected
    if problems:
        assert problems[0].expression == "Task.statusReason"


@pytest.mark.parametrize(
    ("plan", "follow_up", "expected"),
    [
        (False, None, [422, 422]),
        (True, None, [422]),
        (False, FOLLOW_UP_ORG, [422]),
        (True, FOLLOW_UP_ORG, []),
    ],
)
def test_discharge_needs_a_follow_up_plan_and_service(
    plan: bool, follow_up: str | None, expected: list[int]
) -> None:
    before = task(S.IN_PROGRESS)
    after = replace(
        before, status=S.COMPLETED, step=Step.UTSKREVET, follow_up_plan=plan, follow_up=follow_up
    )
    problems = check_change(TaskChange(before, after, OWNER, TODAY))
    assert statuses(problems) == expected
    assert all(p.expression == "Task.output" for p in problems)


@pytest.mark.parametrize(
    ("to", "before_frist", "after_frist", "expected"),
    [
        # Put on hold during assessment: it resumes as received...
        (S.RECEIVED, None, None, []),
        # ...but a referral that was accepted resumes as accepted or in-progress.
        (S.RECEIVED, FRIST, FRIST, [409]),
        (S.ACCEPTED, FRIST, FRIST, []),
        (S.IN_PROGRESS, FRIST, FRIST, []),
        # Never accepted: care cannot start.
        (S.IN_PROGRESS, None, None, [409]),
        # Never accepted: going to accepted is an acceptance and needs a frist.
        (S.ACCEPTED, None, None, [422]),
        (S.ACCEPTED, None, TODAY - timedelta(days=1), [422]),
        (S.ACCEPTED, None, FRIST, []),
    ],
)
def test_resuming_from_on_hold(
    to: TaskStatus, before_frist: date | None, after_frist: date | None, expected: list[int]
) -> None:
    before = task(S.ON_HOLD, frist=before_frist)
    after = replace(before, status=to, step=STEPS[to][0], frist=after_frist)
    if to is S.IN_PROGRESS:
        after = replace(after, care_started=TODAY)
    problems = check_change(TaskChange(before, after, OWNER, TODAY))
    assert statuses(problems) == expected


# --------------------------------------------------------------------------------------
# 4. Care situation as the only justification
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Uavklart omsorgssituasjon, anbefaler barnevernstiltak.", True),
        ("unresolved care situation, recommend child welfare measures", True),
        ("Uavklart omsorgssituasjon.", True),
        ("UAVKLART OMSORGSSITUASJON", True),
        ("Uavklarte omsorgsforhold; bør følges opp av barnevernet.", True),
        ("Omsorgssituasjonen må avklares først.", True),
        ("The care situation must be clarified first.", True),
        ("Unresolved home situation. Should be handled by child welfare.", True),
        ("Vi anbefaler tiltak fra barnevernet.", True),
        (
            "Nyttekriteriet er ikke oppfylt: symptomene er milde og kommunale tiltak er ikke"
            " prøvd; omsorgssituasjonen er uavklart",
            False,
        ),
        (
            "The benefit criterion is not met: symptoms are mild and municipal measures have"
            " not been tried. The care situation is unresolved.",
            False,
        ),
        ("Nyttekriteriet er ikke oppfylt: symptomene er milde og forbigående.", False),
        ("Henvisningen mangler kommunal kartlegging.", False),
        ("", False),
    ],
)
def test_care_situation_only(text: str, expected: bool) -> None:
    assert care_situation_only(text) is expected


@pytest.mark.parametrize(
    "text",
    [
        "Omsorgssituasjonen er ikke avklart.",
        "The child's care situation is unresolved.",
        "Barnevernet må avklare omsorgssituasjonen.",
        "Uavklart omsorgssituasjon hos barnet, som bor i beredskapshjem.",
    ],
)
def test_care_situation_only_other_phrasings(text: str) -> None:
    assert care_situation_only(text) is True


# --------------------------------------------------------------------------------------
# 5. Completeness
# --------------------------------------------------------------------------------------

ALL_ATTACHMENTS = [
    Attachment.KOMMUNAL_KARTLEGGING,
    Attachment.BARNETS_STEMME,
    Attachment.SOMATISK_VURDERING,
]
MARKER_OF = {
    Attachment.KOMMUNAL_KARTLEGGING: Completeness.MANGLER_KOMMUNAL_KARTLEGGING,
    Attachment.BARNETS_STEMME: Completeness.MANGLER_BARNETS_STEMME,
    Attachment.SOMATISK_VURDERING: Completeness.MANGLER_SOMATISK_VURDERING,
}


@pytest.mark.parametrize("receiver", [K.BUP, K.BUPA, "bup"])
@pytest.mark.parametrize(
    "absent",
    [
        [],
        [Attachment.KOMMUNAL_KARTLEGGING],
        [Attachment.BARNETS_STEMME],
        [Attachment.SOMATISK_VURDERING],
        [Attachment.KOMMUNAL_KARTLEGGING, Attachment.SOMATISK_VURDERING],
        ALL_ATTACHMENTS,
    ],
    ids=["complete", "no-kartlegging", "no-stemme", "no-somatisk", "two-missing", "none"],
)
def test_completeness_of_a_referral_to_bup(receiver: str, absent: list[Attachment]) -> None:
    attached = [a for a in ALL_ATTACHMENTS if a not in absent] + [Attachment.PPT_VURDERING]
    gaps = missing(receiver, attached)
    assert [code for code, _ in gaps] == [MARKER_OF[a] for a in absent]
    assert all(message for _, message in gaps)
    expected = [MARKER_OF[a] for a in absent] or [Completeness.KOMPLETT]
    assert markers(missing(receiver, attached)) == expected
    assert markers(missing(receiver, iter(attached))) == expected  # any iterable


def test_other_attachments_do_not_stand_in_for_the_expected_ones() -> None:
    attached = [Attachment.PPT_VURDERING, Attachment.ANNET, "kommunal", "Barnets-Stemme"]
    assert markers(missing(K.BUP, attached)) == [MARKER_OF[a] for a in ALL_ATTACHMENTS]


@pytest.mark.parametrize("receiver", [K.DPS, K.KOMMUNE_HELSE, K.FASTLEGE, None])
@pytest.mark.parametrize("attached", [[], ALL_ATTACHMENTS, [Attachment.BARNETS_STEMME]])
def test_other_receivers_are_not_checked(receiver: str | None, attached: list[Attachment]) -> None:
    assert missing(receiver, attached) == []
    assert markers(missing(receiver, attached)) == [Completeness.KOMPLETT]


# --------------------------------------------------------------------------------------
# 6. Who refers to whom
# --------------------------------------------------------------------------------------

REFERRER_KINDS = {
    K.FASTLEGE,
    K.KOMMUNE_HELSE,
    K.BARNEVERNSTJENESTE,
    K.LEGEVAKT,
    K.BUP,
    K.BUPA,
    K.DPS,
}
RECEIVER_KINDS = {K.BUP, K.BUPA, K.DPS, K.KOMMUNE_HELSE}


def test_a_barneverninstitusjon_is_sent_to_the_barnevernstjeneste() -> None:
    problem = referrer_problem(K.BARNEVERNINSTITUSJON)
    assert problem is not None
    assert problem.status == 403
    assert problem.code == "forbidden"
    assert "barnevernstjeneste" in problem.message
    assert problem.expression == "ServiceRequest.requester"


@pytest.mark.parametrize("kind", [*K, None, "", "sykehus"])
def test_who_may_refer(kind: str | None) -> None:
    problem = referrer_problem(kind)
    if kind in REFERRER_KINDS:
        assert problem is None
    else:
        assert problem is not None
        assert problem.status == 403
        assert problem.expression == "ServiceRequest.requester"


def test_an_unknown_referrer_kind_is_named_in_the_refusal() -> None:
    skole = referrer_problem(K.SKOLE)
    assert skole is not None and "skole" in skole.message and "fastlege" in skole.message
    unknown = referrer_problem(None)
    assert unknown is not None and "unknown" in unknown.message


@pytest.mark.parametrize("kind", [*K, None, "sykehus"])
def test_who_may_receive(kind: str | None) -> None:
    problem = receiver_problem(kind)
    if kind in RECEIVER_KINDS:
        assert problem is None
    else:
        assert problem is not None
        assert problem.status == 422
        assert problem.code == "business-rule"
        assert problem.expression == "ServiceRequest.performer"


# --------------------------------------------------------------------------------------
# 7. Deadline breaches
# --------------------------------------------------------------------------------------

DAY = date(2026, 3, 16)
YESTERDAY = DAY - timedelta(days=1)
TOMORROW = DAY + timedelta(days=1)
A = Breach.ASSESSMENT_OVERDUE
F = Breach.FRIST_BREACHED


def unassessed(status: TaskStatus, deadline: date, *recorded: Breach) -> TaskState:
    return replace(BASE, status=status, assessment_deadline=deadline, breaches=recorded)


def accepted(
    status: TaskStatus, frist: date, care: date | None = None, *recorded: Breach
) -> TaskState:
    return replace(
        BASE,
        status=status,
        assessment_deadline=date(2026, 1, 15),
        frist=frist,
        care_started=care,
        breaches=recorded,
    )


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (unassessed(S.RECEIVED, YESTERDAY), [A]),
        (unassessed(S.RECEIVED, date(2025, 12, 1)), [A]),
        (unassessed(S.RECEIVED, YESTERDAY, A), []),
        (unassessed(S.RECEIVED, DAY), []),
        (unassessed(S.RECEIVED, TOMORROW), []),
        (replace(BASE, status=S.RECEIVED), []),  # no deadline recorded
        (unassessed(S.ON_HOLD, YESTERDAY), [A]),  # on hold does not stop the clock
        (unassessed(S.REQUESTED, YESTERDAY), [A]),  # nobody marked it received
        (unassessed(S.REQUESTED, YESTERDAY, A), []),
        (unassessed(S.REQUESTED, DAY), []),
        (unassessed(S.REJECTED, YESTERDAY), []),
        (unassessed(S.CANCELLED, YESTERDAY), []),
        (accepted(S.ACCEPTED, YESTERDAY), [F]),
        (accepted(S.ACCEPTED, YESTERDAY, None, F), []),
        (accepted(S.ACCEPTED, YESTERDAY, None, A), [F]),
        (accepted(S.ACCEPTED, DAY), []),
        (accepted(S.ACCEPTED, TOMORROW), []),
        (accepted(S.ON_HOLD, YESTERDAY), [F]),
        (accepted(S.ON_HOLD, YESTERDAY, date(2026, 3, 1)), []),
        (accepted(S.IN_PROGRESS, YESTERDAY), []),
        (accepted(S.IN_PROGRESS, YESTERDAY, date(2026, 3, 1)), []),
        (accepted(S.COMPLETED, YESTERDAY), []),
        (accepted(S.CANCELLED, YESTERDAY), []),
    ],
)
def test_breaches_due(state: TaskState, expected: list[Breach]) -> None:
    assert breaches_due(state, DAY) == expected


@pytest.mark.parametrize("status", [S.REQUESTED, S.RECEIVED, S.IN_PROGRESS, S.ON_HOLD])
def test_a_frist_is_set_only_by_accepting(status: TaskStatus) -> None:
    before = task(status, frist=None)
    before = replace(before, frist=None)
    for to in (status, *(t for (f, t) in TRANSITIONS if f is status and t is not S.ACCEPTED)):
        after = replace(before, status=to, step=STEPS[to][0], frist=FRIST)
        problems = check_change(TaskChange(before, after, OWNER, TODAY))
        assert problems and problems[0].status == 422, (status, to)
        assert "accepting" in problems[0].message


def test_accepting_sets_the_frist() -> None:
    before = task(S.RECEIVED)
    after = replace(before, status=S.ACCEPTED, step=Step.RETT_TIL_HELSEHJELP, frist=FRIST)
    assert check_change(TaskChange(before, after, OWNER, TODAY)) == []


@pytest.mark.parametrize(
    ("receiver", "in_forlop", "roles", "expected"),
    [
        (K.BUP, True, [], [Completeness.MANGLER_FORLOPSKOORDINATOR_KOMMUNE,
                           Completeness.MANGLER_FORLOPSKOORDINATOR_BUP]),
        (K.BUP, True, ["forlopskoordinator-kommune"],
         [Completeness.MANGLER_FORLOPSKOORDINATOR_BUP]),
        (K.BUPA, True, ["forlopskoordinator-kommune", "forlopskoordinator-bup"], []),
        (K.BUP, False, [], []),
        (K.KOMMUNE_HELSE, True, [], []),
    ],
)  # fmt: skip
def test_a_referral_within_a_forlop_names_its_two_coordinators(
    receiver: str, in_forlop: bool, roles: list[str], expected: list[Completeness]
) -> None:
    assert [code for code, _ in missing_coordinators(receiver, in_forlop, roles)] == expected


# --------------------------------------------------------------------------------------
# 8. The referral clock: from the arrival at the receiver
# --------------------------------------------------------------------------------------

SUBMITTED = datetime(2026, 3, 2, 10, 30, tzinfo=NORWAY)
"""A Monday; the referral was submitted here then."""
SUBMITTED_DAY = SUBMITTED.date()
SUBMITTED_HERE = Arrival(SUBMITTED_DAY, SUBMITTED, ArrivalSource.BARNEBRO)
NHN = ArrivalSource.NHN_MELDING
MSG_ID = "urn:uuid:6f1c8d3e-2b7a-4c55-9e0f-0d1a2b3c4d5e"
SENT = replace(BASE, step=Step.SENDT, submitted=SUBMITTED, submitted_day=SUBMITTED_DAY,
               arrival=SUBMITTED_HERE)  # fmt: skip
"""A referral nobody has touched since it was submitted here."""


def arriving(
    day: date, at: datetime | None = None, source: str = NHN, ident: str | None = MSG_ID
) -> Arrival:
    return Arrival(day, at, source, ident)


EARLIER = arriving(date(2026, 2, 20), datetime(2026, 2, 20, 14, 5, tzinfo=NORWAY))
"""The NHN message that brought the same referral, a week before it was submitted here."""


@pytest.mark.parametrize(
    ("state", "start", "deadline"),
    [
        (SENT, SUBMITTED_DAY, date(2026, 3, 16)),
        (replace(SENT, status=S.RECEIVED), SUBMITTED_DAY, date(2026, 3, 16)),
        (replace(SENT, arrival=EARLIER), date(2026, 2, 20), date(2026, 3, 6)),
        # Before arrivals were recorded: the receipt's date stays, else the submission.
        (replace(SENT, arrival=None, ansiennitetsdato=date(2026, 3, 9)), date(2026, 3, 9),
         date(2026, 3, 23)),
        (replace(SENT, arrival=None), SUBMITTED_DAY, date(2026, 3, 16)),
        (replace(BASE, status=S.RECEIVED), None, None),
        # Submitted on a Saturday before Easter: the days count from the next working day.
        (replace(SENT, arrival=arriving(date(2026, 3, 28), None, ArrivalSource.PAPIR, None)),
         date(2026, 3, 28), date(2026, 4, 15)),
    ],
)  # fmt: skip
def test_the_clock_starts_at_the_arrival(
    state: TaskState, start: date | None, deadline: date | None
) -> None:
    assert clock_start(state) == start
    timed = dated(state)
    assert (timed.ansiennitetsdato, timed.assessment_deadline) == (start, deadline)


def test_a_deadline_given_is_kept() -> None:
    given = replace(SENT, ansiennitetsdato=SUBMITTED_DAY, assessment_deadline=date(2026, 3, 20))
    assert dated(given) == given
    # ... unless the receiver records an earlier arrival: it starts a new clock.
    earlier = replace(given, arrival=EARLIER)
    assert dated(earlier).assessment_deadline == date(2026, 3, 6)


@pytest.mark.parametrize(
    ("state", "day", "expected"),
    [
        (SENT, date(2026, 3, 16), []),  # the deadline day is still in time
        (SENT, date(2026, 3, 17), [A]),  # nobody received it: overdue all the same
        (replace(SENT, status=S.RECEIVED), date(2026, 3, 17), [A]),
        (replace(SENT, breaches=(A,)), date(2026, 3, 30), []),  # once
        (replace(SENT, arrival=EARLIER), date(2026, 3, 9), [A]),
        (replace(SENT, arrival=None), date(2026, 3, 17), [A]),  # an undated older Task
        (replace(SENT, status=S.CANCELLED), date(2026, 3, 17), []),
    ],
)
def test_an_untouched_referral_becomes_overdue_once(
    state: TaskState, day: date, expected: list[Breach]
) -> None:
    assert breaches_due(state, day) == expected


def recording(
    arrival: Arrival | None,
    before: TaskState = SENT,
    actor: Actor = OWNER,
    day: date = SUBMITTED_DAY,
) -> list[int]:
    change = TaskChange(before, replace(before, arrival=arrival), actor, day)
    return statuses(check_change(change))


RECORDED = replace(SENT, arrival=EARLIER)


@pytest.mark.parametrize(
    ("arrival", "before", "actor", "expected"),
    [
        (EARLIER, SENT, OWNER, []),
        (SUBMITTED_HERE, SENT, OWNER, []),  # unchanged
        (arriving(date(2026, 2, 20), source=ArrivalSource.PAPIR, ident=None), SENT, OWNER, []),
        (arriving(SUBMITTED_DAY), SENT, OWNER, []),  # the day of the submission
        (arriving(SUBMITTED_DAY, SUBMITTED), SENT, OWNER, []),  # the submission itself
        (EARLIER, SENT, REQUESTER, [403]),
        (EARLIER, SENT, OUTSIDER, [403]),
        # Recorded once, it does not move; the same record again is no change.
        (EARLIER, RECORDED, OWNER, []),
        (replace(EARLIER, at=datetime(2026, 2, 20, 13, 5, tzinfo=UTC)), RECORDED, OWNER, []),
        (arriving(date(2026, 2, 19)), RECORDED, OWNER, [409]),
        (replace(EARLIER, identifier="urn:uuid:other"), RECORDED, OWNER, [409]),
        (SUBMITTED_HERE, RECORDED, OWNER, [409]),
        (None, RECORDED, OWNER, [409]),
        # What it must say.
        (arriving(date(2026, 2, 20), source=ArrivalSource.BARNEBRO), SENT, OWNER, [422]),
        (arriving(date(2026, 2, 20), source="telefon"), SENT, OWNER, [422]),
        (arriving(date(2026, 2, 20), ident=None), SENT, OWNER, [422]),
        # Never later than the submission, never in the future.
        (arriving(SUBMITTED_DAY, SUBMITTED + timedelta(minutes=1)), SENT, OWNER, [422]),
        (arriving(date(2026, 3, 3)), SENT, OWNER, [422]),
        (arriving(date(2026, 3, 3)), replace(SENT, submitted=None, submitted_day=None,
                                             arrival=None), OWNER, [422]),
        # Never months before the submission: 90 days is the earliest.
        (arriving(SUBMITTED_DAY - timedelta(days=90), source=ArrivalSource.PAPIR, ident=None),
         SENT, OWNER, []),
        (arriving(SUBMITTED_DAY - timedelta(days=91), source=ArrivalSource.PAPIR, ident=None),
         SENT, OWNER, [422]),
        (arriving(date(1990, 1, 1)), SENT, OWNER, [422]),
        # A closed referral's dates no longer change.
        (EARLIER, replace(SENT, status=S.CANCELLED, step=Step.TRUKKET), OWNER, [409]),
    ],
)  # fmt: skip
def test_recording_an_earlier_arrival(
    arrival: Arrival | None, before: TaskState, actor: Actor, expected: list[int]
) -> None:
    assert recording(arrival, before, actor) == expected


def test_an_arrival_in_the_future_says_so() -> None:
    undated = replace(SENT, submitted=None, submitted_day=None, arrival=None)
    change = TaskChange(undated, replace(undated, arrival=arriving(date(2026, 3, 3))), OWNER,
                        SUBMITTED_DAY)  # fmt: skip
    assert "future" in check_change(change)[0].message
    later = arriving(SUBMITTED_DAY, SUBMITTED + timedelta(minutes=1))
    change = TaskChange(SENT, replace(SENT, arrival=later), OWNER, SUBMITTED_DAY)
    assert "submitted here" in check_change(change)[0].message


def test_an_arrival_comes_with_a_move_or_alone() -> None:
    """Recording the arrival and receiving the referral in one change is one change."""
    after = replace(SENT, status=S.RECEIVED, step=Step.MOTTATT, arrival=EARLIER)
    assert check_change(TaskChange(SENT, after, OWNER, SUBMITTED_DAY)) == []
    after = replace(SENT, status=S.CANCELLED, step=Step.TRUKKET, arrival=EARLIER)
    assert statuses(check_change(TaskChange(SENT, after, REQUESTER, SUBMITTED_DAY))) == [403]
