"""Marking resources whose date has passed, each mark exactly once.

A service's job (the referral deadlines, a plan's revision date) finds candidates by
search, then for each one, in its own transaction with the patient and then the row
locked, lets `mark` add what has become due to the resource and stores the new version
with its events. A resource already marked is left alone, so each mark and its event
happen once, whatever restarts, retries or other instances happen meanwhile.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date
from typing import Any

from shared.clock import today
from shared.fhir.errors import FhirError
from shared.fhir.service import FhirService
from shared.periodic import Periodic
from shared.transport.wire import Caller, FhirRequest

log = logging.getLogger(__name__)

Searches = Callable[[date], list[list[tuple[str, str]]]]
"""The searches that find candidates on a day."""
Mark = Callable[[dict[str, Any], date], int]
"""Adds to a resource what is due on a day; returns how many marks it added."""


class DueMarker:
    def __init__(
        self,
        fhir: FhirService,
        resource_type: str,
        searches: Searches,
        mark: Mark,
        *,
        base_url: str,
        client_id: str,
        interval: float,
        name: str,
        clock: Callable[[], date] = today,
    ) -> None:
        self.fhir = fhir
        self.clock = clock
        self._resource_type = resource_type
        self._searches = searches
        self._mark = mark
        self._request = FhirRequest(
            interaction="update",
            base_url=base_url,
            caller=Caller(credential="service", client_id=client_id),
        )
        self._periodic = Periodic(name, self.scan, interval, f"{name}: %d marks")

    async def start(self) -> None:
        await self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()

    async def scan(self, day: date | None = None) -> int:
        """Mark everything due by `day` (today); returns how many marks were added."""
        day = day or self.clock()
        candidates: dict[str, str] = {}
        for criteria in self._searches(day):
            async for stored in self.fhir.matches(self._resource_type, criteria):
                candidates[stored.res_id] = stored.access.patient or ""
        marked = 0
        for res_id, patient in sorted(candidates.items()):
            try:
                marked += await self._mark_one(res_id, patient, day)
            except FhirError as exc:  # e.g. a collision with a write: the next scan retries
                log.warning("could not mark %s/%s: %s", self._resource_type, res_id, exc)
        return marked

    async def _mark_one(self, res_id: str, patient: str, day: date) -> int:
        async with self.fhir.unit_of_work(self._request) as uow:
            stored = await uow.read_for_update(self._resource_type, res_id, patient=patient)
            if stored is None or stored.deleted:
                return 0
            resource = stored.json()
            added = self._mark(resource, day)
            if added:
                await uow.save(resource, previous=stored)
        return added
