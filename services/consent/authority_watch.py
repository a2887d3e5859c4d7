"""Keeping consents in step with who may consent, as the directory and the calendar change.

Two triggers make the consent service judge a child's open consents again
(`ConsentHandlers.reassess`) and publish the child's new access state:
- directory events about the child (any change to the Patient or a RelatedPerson: a care
  order started or ended, parental responsibility changed, the birth date corrected); the
  consumer starts from the beginning of the stream, so children registered before the
  consent service first ran get their state too;
- the calendar: once an hour (and at start) the consents whose grantors' authority has
  ended (`valid-until` before today: the child turned 15, 16 or 18) are found.
A consent whose grantors lost their authority ends (`authority-changed`), and its event
tells the care team that the youth (or the new holder) must now decide. Decisions do not
wait for this: the access state already ends such a grant on its last valid day.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from pydantic import ValidationError

from services.consent.handlers import ConsentHandlers
from shared.config import Settings
from shared.events import DomainEvent
from shared.fhir.search_query import parse_search
from shared.transport.consumer import DurableConsumer

log = logging.getLogger(__name__)

DIRECTORY_TYPES = ("Patient", "RelatedPerson")
RETRY_SECONDS = 60.0


class AuthorityWatch:
    def __init__(
        self, handlers: ConsentHandlers, nc: NATS, settings: Settings, sweep_interval: float
    ) -> None:
        self._handlers = handlers
        self._sweep_interval = sweep_interval
        self.consumer = DurableConsumer(
            nc,
            stream=settings.stream_name,
            durable="consent-authority-watch",
            subject=f"{settings.nats_prefix}.events.directory.>",
            handler=self.on_directory_events,
        )
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.consumer.start()
        self._sweeper = asyncio.create_task(self._sweep_periodically())

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await self.consumer.stop()

    async def on_directory_events(self, messages: list[Msg]) -> None:
        patients: list[str] = []
        for message in messages:
            try:
                event = DomainEvent.model_validate_json(message.data)
            except ValidationError:
                continue
            if event.resource_type in DIRECTORY_TYPES and event.patient:
                patients.append(event.patient)
        # Every child gets an access state, consents or not: it is also what lets the
        # holders of parental responsibility see their child's information.
        for patient in dict.fromkeys(patients):
            await self._handlers.reassess(patient)

    async def sweep(self) -> int:
        """Reassess every child with an open consent whose authority has run out."""
        fhir = self._handlers.fhir
        day = self._handlers.clock().isoformat()
        criteria = [("status", "active,proposed"), ("valid-until", f"lt{day}"), ("_count", "1000")]
        patients: set[str] = set()
        cursor: str | None = None
        while True:
            paging = [("_cursor", cursor)] if cursor else []
            query = parse_search("Consent", [*criteria, *paging], fhir.search_params)
            async with fhir.db.reader() as conn:
                page = await fhir.store.search(conn, query)
            patients |= {s.access.patient for s in page.resources if s.access.patient}
            cursor = page.next_cursor
            if cursor is None:
                break
        for patient in sorted(patients):
            await self._handlers.reassess(patient)
        return len(patients)

    async def _sweep_periodically(self) -> None:
        while True:
            delay = self._sweep_interval
            try:
                count = await self.sweep()
                if count:
                    log.info("reassessed the consents of %d children after a birthday", count)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the consent sweep failed; it runs again within a minute")
                delay = min(delay, RETRY_SECONDS)
            await asyncio.sleep(delay)
