"""Warning ahead of time that a consent's authority ends.

A consent given on a child's behalf holds only until its grantors' authority ends
(`authority-valid-until`: the day before the 16th birthday, the last day of the care
order its holder consented under, ...). At start and every `BARNEBRO_CONSENT_SWEEP_SECONDS`
(with the consent sweep) the open consents whose authority ends within
`BARNEBRO_CONSENT_WARNING_DAYS` days are found, and for each an event
`consent.Consent.authority-ending` is published, so the care team can ask the youth or
the new holder in good time.

Each warning is sent once per consent and last valid day, whatever restarts or other
instances: it is noted in `consent_authority_warnings` in the same transaction as its
event goes into the outbox, under the child's lock, and a warning already noted is not
sent again. A consent whose last valid day moves (a care order's end changed) is warned
again for the new day. The event names no more than the consent's other events do (its
status, purpose and data categories); the day is on the Consent for those who may read it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date, timedelta

from services.consent.handlers import OPEN_STATUSES, SERVICE_CALLER, ConsentHandlers, service_update
from services.consent.records import from_fhir
from shared.events import DomainEvent, EventAccess
from shared.periodic import Periodic
from shared.store.database import Database

log = logging.getLogger(__name__)

EVENT = "authority-ending"
SCHEMA = """CREATE TABLE IF NOT EXISTS consent_authority_warnings (
    consent TEXT NOT NULL, valid_until TEXT NOT NULL, PRIMARY KEY (consent, valid_until))"""


async def create_table(db: Database) -> None:
    async with db.transaction() as conn:
        await conn.execute(SCHEMA)


class AuthorityWarnings:
    def __init__(self, handlers: ConsentHandlers, days: int, interval: float) -> None:
        self._handlers = handlers
        self.days = days
        self._periodic = Periodic(
            "the consent authority warnings",
            self.warn,
            interval,
            "warned that the authority of %d consents ends soon",
        )

    @property
    def clock(self) -> Callable[[], date]:
        return self._handlers.clock

    async def start(self) -> None:
        await create_table(self._handlers.fhir.db)
        await self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()

    async def warn(self) -> int:
        """Warn of every open consent whose authority ends within `days` days (from today,
        inclusive) that has not been warned of for that day yet; how many were warned."""
        first = self.clock()
        last = first + timedelta(days=self.days)
        criteria = [
            ("status", "active,proposed"),
            ("valid-until", f"ge{first.isoformat()}"),
            ("valid-until", f"le{last.isoformat()}"),
        ]
        found = {
            stored.res_id: stored.access.patient or ""
            async for stored in self._handlers.fhir.matches("Consent", criteria)
        }
        warned = 0
        for consent, patient in sorted(found.items()):
            warned += await self._warn_one(consent, patient, first, last)
        return warned

    async def _warn_one(self, consent: str, patient: str, first: date, last: date) -> int:
        fhir = self._handlers.fhir
        async with fhir.unit_of_work(service_update("Consent", consent)) as uow:
            await uow.lock_patient(patient)
            stored = await uow.read("Consent", consent)
            if stored is None or stored.deleted:
                return 0
            record = from_fhir(stored.json())
            until = record.valid_until
            if record.status not in OPEN_STATUSES or until is None or not first <= until <= last:
                return 0
            noted = await uow.conn.execute(
                "INSERT INTO consent_authority_warnings (consent, valid_until) VALUES (?, ?)"
                " ON CONFLICT DO NOTHING",
                consent,
                until.isoformat(),
            )
            if not noted:
                return 0
            access = stored.access
            await uow.add_event(
                DomainEvent(
                    type=f"{fhir.name}.Consent.{EVENT}",
                    source=fhir.name,
                    resource_type="Consent",
                    resource_id=consent,
                    version_id=str(stored.version),
                    patient=patient or None,
                    data={
                        "actor": SERVICE_CALLER.model_dump(exclude_defaults=True),
                        "status": record.status.value,
                        "purpose": record.purpose.value,
                        "categories": record.categories,
                    },
                    access=EventAccess(
                        category=access.category, author=access.author, parties=list(access.parties)
                    ),
                )
            )
        return 1
