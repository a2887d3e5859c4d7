"""Keeping consents in step with who may consent, as the directory and the calendar change.

Two triggers make the consent service judge a child's open consents again
(`ConsentHandlers.reassess`) and publish the child's new access state:
- directory events about the child (any change to the Patient or a RelatedPerson: a care
  order started or ended, parental responsibility changed, the birth date corrected); the
  consumer starts from the beginning of the stream, so children registered before the
  consent service first ran get their state too;
- the calendar: once an hour (and at start, and at once after a test-clock move) the open
  consents whose grantors' authority has ended (`valid-until` before today: the child
  turned 15, 16 or 18) or whose own period has ended (`end` before today, Norwegian
  calendar days) are found, so a consent past its end reads `inactive` (`expired`, with
  its event) from the first sweep after that day, as the access state already treats it.
A consent whose grantors lost their authority ends (`authority-changed`), and its event
tells the care team that the youth (or the new holder) must now decide. Decisions do not
wait for this: the access state already ends such a grant on its last valid day.
"""

from __future__ import annotations

import logging

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from services.consent.handlers import ConsentHandlers
from shared.config import Settings
from shared.events import readable_events
from shared.periodic import Periodic
from shared.transport.consumer import DurableConsumer

log = logging.getLogger(__name__)

DIRECTORY_TYPES = ("Patient", "RelatedPerson")


class AuthorityWatch:
    def __init__(
        self, handlers: ConsentHandlers, nc: NATS, settings: Settings, sweep_interval: float
    ) -> None:
        self._handlers = handlers
        self.consumer = DurableConsumer(
            nc,
            stream=settings.stream_name,
            durable="consent-authority-watch",
            subject=f"{settings.nats_prefix}.events.directory.>",
            handler=self.on_directory_events,
            dead_letters=settings.nats_prefix,
        )
        self._sweeper = Periodic(
            "the consent sweep",
            self.sweep,
            sweep_interval,
            "reassessed the consents of %d children after an authority or a consent ended",
        )

    async def start(self) -> None:
        await self.consumer.start()
        await self._sweeper.start()

    async def stop(self) -> None:
        await self._sweeper.stop()
        await self.consumer.stop()

    async def on_directory_events(self, messages: list[Msg]) -> None:
        patients: list[str] = []
        for event in readable_events(message.data for message in messages):
            if event.resource_type in DIRECTORY_TYPES and event.patient:
                patients.append(event.patient)
        # Every child gets an access state, consents or not: it is also what lets the
        # holders of parental responsibility see their child's information.
        await self._handlers.reassess_all(dict.fromkeys(patients))

    async def sweep(self) -> int:
        """Reassess every child with an open consent whose authority or period has run
        out."""
        fhir = self._handlers.fhir
        day = self._handlers.clock().isoformat()
        open_consents = ("status", "active,proposed")
        patients: set[str] = set()
        for ended in (("valid-until", f"lt{day}"), ("period", f"eb{day}")):
            async for stored in fhir.matches("Consent", [open_consents, ended]):
                if stored.access.patient:
                    patients.add(stored.access.patient)
        await self._handlers.reassess_all(sorted(patients))
        return len(patients)
