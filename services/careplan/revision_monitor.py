"""Watching the revision dates of plans.

A plan's next revision date (extension careplan-next-revision) that has passed is marked
on the plan (extension careplan-revision-due, searchable as `revision-due`) with the event
`revision-due`, once per revision date: revising the plan sets a new date, which can fall
due in its turn (`shared.due_marks`).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from services.careplan.domain.vocabulary import NEXT_REVISION_EXT, REVISION_DUE_EXT
from services.careplan.records import a_date, extension_value, set_extension
from shared.due_marks import DueMarker
from shared.fhir.service import FhirService

MONITOR_CLIENT = "barnebro-careplan-revisions"


def _searches(day: date) -> list[list[tuple[str, str]]]:
    return [[("status", "active"), ("next-revision", f"lt{day}")]]


def _mark(plan: dict[str, Any], day: date) -> int:
    if plan.get("status") != "active":
        return 0
    revision = extension_value(plan, NEXT_REVISION_EXT, "valueDate")
    when = a_date(revision)
    if (
        when is None
        or when >= day
        or extension_value(plan, REVISION_DUE_EXT, "valueDate") == revision
    ):
        return 0
    set_extension(plan, REVISION_DUE_EXT, "valueDate", revision)
    return 1


class RevisionMonitor(DueMarker):
    def __init__(self, fhir: FhirService, base_url: str, interval: float) -> None:
        super().__init__(
            fhir,
            "CarePlan",
            _searches,
            _mark,
            base_url=base_url,
            client_id=MONITOR_CLIENT,
            interval=interval,
            name="the plan revision monitor",
        )
