"""Which dates a consent and its answers may carry.

A signature is dated the day it was given: not after today (the day itself is allowed)
and not before the child was born, and the same holds for the day the child was heard. A
consent covers a period of the child's life that can be foreseen: it does not start before
the child's birth, and neither starts nor ends more than `MAX_YEARS_AHEAD` years from
today (a decision that far ahead is no informed one, and dates near the calendar's end
break the date arithmetic the rules do). Without a known birth date only today's bounds
apply. Pure functions: the handlers pass the day and the child's birth date, and refuse
with the problems (`shared.rules.refuse`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from services.consent.domain.authority import birthday
from shared.rules import Problem

MAX_YEARS_AHEAD = 10


def consent_date_problems(
    *,
    start: date | None,
    end: date | None,
    signed: Sequence[date],
    heard: date | None,
    born: date | None,
    today: date,
) -> list[Problem]:
    """What is wrong with the dates of a new consent: its period, its signatures (`signed`,
    in order) and the day the child was heard."""
    problems: list[Problem] = []
    latest = birthday(today, MAX_YEARS_AHEAD)
    for name, day in (("start", start), ("end", end)):
        if day is None:
            continue
        if day > latest:
            problems.append(
                _problem(
                    f"{name} {day} is more than {MAX_YEARS_AHEAD} years ahead (after {latest}):"
                    " a consent covers a period that can be foreseen; record a new one later",
                    name,
                )
            )
        if born is not None and day < born:
            problems.append(_problem(f"{name} {day} is before the child was born ({born})", name))
    for index, day in enumerate(signed):
        problems += signature_date_problems(day, born, today, f"signatures[{index}].date")
    if heard is not None:
        problems += heard_date_problems(heard, born, today)
    return problems


def signature_date_problems(
    signed: date, born: date | None, today: date, where: str = "date"
) -> list[Problem]:
    """A signature dated after today or before the child was born."""
    return _given_on(signed, born, today, where, "a signature")


def heard_date_problems(
    heard: date, born: date | None, today: date, where: str = "child_view.date"
) -> list[Problem]:
    """The child heard after today or before it was born."""
    return _given_on(heard, born, today, where, "the child's view")


def _given_on(day: date, born: date | None, today: date, where: str, what: str) -> list[Problem]:
    if day > today:
        said = f"{where} {day} is after today ({today}): {what} is dated the day it was given"
        return [_problem(said, where)]
    if born is not None and day < born:
        return [_problem(f"{where} {day} is before the child was born ({born})", where)]
    return []


def _problem(message: str, where: str) -> Problem:
    return Problem(422, "invalid", message, where)
