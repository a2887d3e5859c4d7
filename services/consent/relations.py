"""Which organisations have a relation to a child: they wrote, or are named on, a record
about it in some service.

The directory releases a child's record (Patient, its parents) only to organisations
with a relation to the child, so the relation must be known wherever a decision is made:
it is part of the child's access state (`PatientAccessState.related`), mirrored by every
service. This consumer follows every service's domain events from the start of the
stream (so children recorded before it first ran get theirs), keeps the pairs
(child, organisasjonsnummer) in `consent_relations` (`relation_table`), and publishes a
child's state again when it gains one. A relation is never taken back: the record it rests on stays.

What counts is `shared.access.relations.related_orgs`, the same rule by which a writing
service tells the directory of a new relation at once.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from services.consent.relation_table import add_relations, create_table
from shared.access.relations import related_orgs
from shared.config import Settings
from shared.events import DomainEvent, readable_events
from shared.transport.consumer import DurableConsumer

if TYPE_CHECKING:
    from services.consent.handlers import ConsentHandlers

log = logging.getLogger(__name__)

KNOWN_PAIRS_LIMIT = 500_000
"""Pairs remembered as recorded (about 100 bytes each); past this the memory starts again."""


def relations_of(event: DomainEvent) -> set[str]:
    """The organisations an event shows to have a record about its patient."""
    if not event.patient:
        return set()
    access = event.access
    return related_orgs(
        event.resource_type,
        access.category if access else None,
        access.author if access else None,
        access.parties if access else (),
        event.data.get("actor"),
    )


class RelationWatch:
    def __init__(self, handlers: ConsentHandlers, nc: NATS, settings: Settings) -> None:
        self.handlers = handlers
        self.consumer = DurableConsumer(
            nc,
            stream=settings.stream_name,
            durable="consent-relation-watch",
            subject=f"{settings.nats_prefix}.events.>",
            handler=self.on_events,
            dead_letters=settings.nats_prefix,
        )
        self._known: set[tuple[str, str]] = set()
        """Pairs this instance has seen recorded. A relation is never taken back, so an
        event that shows only known pairs needs no transaction: most events are about
        children and organisations already related (every change of a referral)."""

    async def start(self) -> None:
        await create_table(self.handlers.fhir.db)
        await self.consumer.start()

    async def stop(self) -> None:
        await self.consumer.stop()

    async def on_events(self, messages: list[Msg]) -> None:
        pairs: dict[tuple[str, str], None] = {}
        for event in readable_events(message.data for message in messages):
            for orgnr in relations_of(event):
                pair = (str(event.patient), orgnr)
                if pair not in self._known:
                    pairs[pair] = None
        if not pairs:
            return
        async with self.handlers.fhir.db.transaction() as conn:
            gained = await add_relations(conn, pairs)
        if any((message.metadata.num_delivered or 1) > 1 for message in messages):
            # Handed over again: its relations may be recorded already by a try whose
            # republishing failed, so none shows as gained; republish all its children.
            gained = list(dict.fromkeys(patient for patient, _ in pairs))
        await self.handlers.republish_all(gained)
        # Remembered only now: a batch whose republishing failed comes again, unknown.
        if len(self._known) + len(pairs) > KNOWN_PAIRS_LIMIT:
            self._known.clear()
        self._known.update(pairs)
