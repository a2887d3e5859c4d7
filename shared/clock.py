"""The one clock of barnebro: instants in UTC as FHIR text, calendar days in Norway.

Every time a rule or a record needs comes from here, so there is one place to read how
time is told (ages, consent periods and deadlines count Norwegian calendar days) and one
to replace in a test. Domain rules take the day as an argument; only the edges ask.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from shared.fhir.search_params import format_instant

NORWAY = ZoneInfo("Europe/Oslo")


def now_instant() -> str:
    """The current instant as FHIR instant text (UTC, fixed width, so it sorts)."""
    return format_instant(datetime.now(UTC))


def today() -> date:
    """The date in Norway: ages and consent periods are Norwegian calendar days."""
    return datetime.now(NORWAY).date()


def seconds_since(instant: str) -> float:
    """How long ago an instant written by `now_instant` was (for lags and ages in metrics)."""
    return (datetime.now(UTC) - datetime.fromisoformat(instant)).total_seconds()
