"""Watching the legal deadlines of open referrals.

Once an interval (and at start) the monitor finds Tasks whose assessment deadline or
frist has passed without the step it guards, and marks each with the breach (extension
referral-deadline-breach, searchable as `deadline-breach`). The mark and its event
(`assessment-overdue`, `frist-breached`) are one write in one transaction, and a Task
already marked is never marked again: each breach is raised exactly once per referral,
whatever restarts, retries or other instances of the service happen meanwhile.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date

from services.referral.context import now, today
from services.referral.domain.deadlines import NOT_STARTED, UNASSESSED, breaches_due
from services.referral.domain.vocabulary import BREACH_EXT
from services.referral.records import add_extension, breach_coding, task_state
from shared.fhir.errors import FhirError
from shared.fhir.interactions import FhirService
from shared.periodic import Periodic
from shared.store.outbox import lock_patient
from shared.transport.wire import Caller, FhirRequest

log = logging.getLogger(__name__)

MONITOR_CLIENT = "barnebro-referral-deadlines"


class DeadlineMonitor:
    def __init__(
        self,
        fhir: FhirService,
        base_url: str,
        interval: float,
        clock: Callable[[], date] = today,
    ) -> None:
        self.fhir = fhir
        self.clock = clock
        self._request = FhirRequest(
            interaction="update", base_url=base_url, caller=Caller(client_id=MONITOR_CLIENT)
        )
        self._periodic = Periodic(
            "the referral deadline monitor", self.scan, interval, "marked %d deadline breaches"
        )

    async def start(self) -> None:
        await self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()

    async def scan(self, day: date | None = None) -> int:
        """Mark every breach that has happened by `day` (today); returns how many."""
        day = day or self.clock()
        searches = (
            [("status", ",".join(UNASSESSED)), ("assessment-deadline", f"lt{day}")],
            [("status", ",".join(NOT_STARTED)), ("frist", f"lt{day}")],
        )
        candidates: dict[str, str] = {}
        for criteria in searches:
            async for stored in self.fhir.matches("Task", criteria):
                candidates[stored.res_id] = stored.access.patient or ""
        marked = 0
        for res_id, patient in sorted(candidates.items()):
            try:
                marked += await self._mark(res_id, patient, day)
            except FhirError as exc:  # e.g. a collision with a write: the next scan retries
                log.warning("could not mark the deadlines of Task/%s: %s", res_id, exc)
        return marked

    async def _mark(self, res_id: str, patient: str, day: date) -> int:
        async with self.fhir.db.transaction() as conn:
            await lock_patient(conn, patient)
            stored = await self.fhir.store.read_for_update(conn, "Task", res_id)
            if stored is None or stored.deleted:
                return 0
            task = stored.json()
            due = breaches_due(task_state(task), day)
            if not due:
                return 0
            for breach in due:
                add_extension(task, BREACH_EXT, "valueCoding", breach_coding(breach))
            task["lastModified"] = now()
            await self.fhir.save(conn, self._request, task, previous=stored)
        self.fhir.notify_commit()
        return len(due)
