"""The one clock of barnebro: instants in UTC as FHIR text, calendar days in Norway.

Every time a rule or a record needs comes from here, so there is one place to read how
time is told (ages, consent periods and deadlines count Norwegian calendar days) and one
to replace in a test. Domain rules take the day as an argument; only the edges ask.

A stack run with the test clock (`shared.test_clock`, `barnebro up --clock`) tells time
moved by an offset that every process follows; `moved` sets it and wakes what waits on
it (the periodic jobs), so a deadline or a birthday shows up at once. Without it the
offset is always zero. Token lifetimes, webhook signatures, retry timers and monotonic
timers keep real time: they concern the machines, not the records.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from shared.fhir.search_params import format_instant

NORWAY = ZoneInfo("Europe/Oslo")

_offset = timedelta(0)
_listeners: list[Callable[[], None]] = []


def now() -> datetime:
    """The current instant (UTC), as the records are stamped."""
    return datetime.now(UTC) + _offset


def now_instant() -> str:
    """The current instant as FHIR instant text (UTC, fixed width, so it sorts)."""
    return format_instant(now())


def today() -> date:
    """The date in Norway: ages and consent periods are Norwegian calendar days."""
    return now().astimezone(NORWAY).date()


def seconds_since(instant: str) -> float:
    """How long ago an instant written by `now_instant` was (for lags and ages in metrics)."""
    return (now() - datetime.fromisoformat(instant)).total_seconds()


def offset() -> timedelta:
    """How far this process's clock is moved from real time (zero but in a test stack)."""
    return _offset


def moved(to: timedelta) -> None:
    """Move this process's clock to `to` from real time and tell the listeners."""
    global _offset
    changed, _offset = to != _offset, to
    if changed:
        for listener in list(_listeners):
            listener()


def on_moved(listener: Callable[[], None]) -> Callable[[], None]:
    """Call `listener` whenever the clock is moved; returns what stops it."""
    _listeners.append(listener)
    return lambda: _listeners.remove(listener) if listener in _listeners else None
