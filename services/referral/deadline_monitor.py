"""Watching the legal deadlines of open referrals.

Once an interval (and at start) the monitor finds Tasks whose assessment deadline or
frist has passed without the step it guards, and marks each with the breach (extension
referral-deadline-breach, searchable as `deadline-breach`). The mark and its event
(`assessment-overdue`, `frist-breached`) are one write in one transaction, and a Task
already marked is never marked again (`shared.due_marks`): each breach is raised exactly
once per referral, whatever restarts, retries or other instances happen meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

from services.referral.domain.deadlines import NOT_STARTED, UNASSESSED, breaches_due
from services.referral.domain.vocabulary import BREACH_EXT
from services.referral.records import add_extension, breach_coding, task_state
from shared.clock import now_instant, today
from shared.due_marks import DueMarker
from shared.fhir.service import FhirService

MONITOR_CLIENT = "barnebro-referral-deadlines"


def _searches(day: date) -> list[list[tuple[str, str]]]:
    return [
        [("status", ",".join(UNASSESSED)), ("assessment-deadline", f"lt{day}")],
        [("status", ",".join(NOT_STARTED)), ("frist", f"lt{day}")],
    ]


def _mark(task: dict[str, Any], day: date) -> int:
    due = breaches_due(task_state(task), day)
    for breach in due:
        add_extension(task, BREACH_EXT, "valueCoding", breach_coding(breach))
    if due:
        task["lastModified"] = now_instant()
    return len(due)


class DeadlineMonitor(DueMarker):
    def __init__(
        self,
        fhir: FhirService,
        base_url: str,
        interval: float,
        clock: Callable[[], date] = today,
    ) -> None:
        super().__init__(
            fhir,
            "Task",
            _searches,
            _mark,
            base_url=base_url,
            client_id=MONITOR_CLIENT,
            interval=interval,
            name="the referral deadline monitor",
            clock=clock,
        )
