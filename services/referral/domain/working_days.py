"""Norwegian working days: the calendar the referral deadlines are counted in.

pbrl §2-2 gives the specialist service 10 *virkedager* (working days) to assess a
referral. A working day is Monday to Friday that is not a public holiday: the fixed days
(1 January, 1 and 17 May, 25 and 26 December, lov om 1. og 17. mai som høgtidsdager) and
the church holidays of helligdagsloven that move with Easter (skjærtorsdag, langfredag,
2. påskedag, Kristi himmelfartsdag, 2. pinsedag; påskedag and pinsedag are Sundays).
Christmas Eve and New Year's Eve are ordinary working days in law.
"""

from __future__ import annotations

from datetime import date, timedelta
from functools import cache

from dateutil.easter import EASTER_WESTERN, easter

FIXED_HOLIDAYS: dict[tuple[int, int], str] = {
    (1, 1): "første nyttårsdag",
    (5, 1): "offentlig høytidsdag (1. mai)",
    (5, 17): "grunnlovsdag (17. mai)",
    (12, 25): "første juledag",
    (12, 26): "andre juledag",
}
EASTER_HOLIDAYS: dict[int, str] = {
    -3: "skjærtorsdag",
    -2: "langfredag",
    0: "første påskedag",
    1: "andre påskedag",
    39: "Kristi himmelfartsdag",
    49: "første pinsedag",
    50: "andre pinsedag",
}
"""Days from Easter Sunday to each holiday that moves with it."""


@cache
def public_holidays(year: int) -> dict[date, str]:
    """Norway's public holidays in `year`, with their names."""
    days = {date(year, month, day): name for (month, day), name in FIXED_HOLIDAYS.items()}
    sunday = easter(year, EASTER_WESTERN)
    for offset, name in EASTER_HOLIDAYS.items():
        days[sunday + timedelta(days=offset)] = name
    return days


def is_working_day(day: date) -> bool:
    return day.weekday() < 5 and day not in public_holidays(day.year)


def add_working_days(start: date, count: int) -> date:
    """The `count`-th working day after `start` (`start` itself does not count)."""
    if count < 0:
        raise ValueError("count must not be negative")
    day = start
    while count:
        day += timedelta(days=1)
        if is_working_day(day):
            count -= 1
    return day


def working_days_between(start: date, end: date) -> int:
    """Working days after `start` up to and including `end` (0 when `end` <= `start`)."""
    count, day = 0, start
    while day < end:
        day += timedelta(days=1)
        count += is_working_day(day)
    return count
