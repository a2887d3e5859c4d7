"""Plans whose consent is gone: off `active`, marked, and the care team told, once.

An individual plan rests on a consent for purpose individuell-plan, a forløp plan on
nasjonalt-forlop. When the consent service withdraws, expires or ends such a consent
(events `consent.Consent.withdrawn | expired | authority-changed`), the watch looks at
the child's open plans of those kinds against the mirrored consent view: a plan that no
longer has an active consent for its purpose goes on hold if it was active, and says that
`samtykke` is missing (`domain.lifecycle.consent_lost`); the new version raises
`CarePlan.consent-lost` through the outbox, in the transaction that stores it.

The consumer is durable and shared by every instance of the service (each event is
handled by one, and a restart continues where it stopped). Handling is idempotent: each
plan is changed under the patient's lock, and only when its stored version still lacks
the change, so a redelivered event, two instances, or a client that saved the plan first
change nothing more. The consent view and the event stream are separate channels: an
event whose consent the view still shows as granting today is not handled yet (the view
is behind), but retried until the view has it.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import date
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from services.careplan.domain.lifecycle import CONSENT_PURPOSES, consent_lost
from services.careplan.domain.vocabulary import CHANGED_BY_EXT
from services.careplan.records import category_of, missing_of, set_extension, set_missing
from shared.access.decision import purpose_consents
from shared.access.view import ConsentView
from shared.clock import now_instant, today
from shared.config import Settings
from shared.events import DomainEvent, readable_events
from shared.fhir.service import FhirService
from shared.transport.consumer import DurableConsumer
from shared.transport.wire import Caller, FhirRequest

log = logging.getLogger(__name__)

WATCH_CLIENT = "barnebro-careplan-consents"
ENDINGS = frozenset({"withdrawn", "expired", "authority-changed"})
"""The consent events after which a plan may have lost its consent."""
PURPOSES = frozenset(CONSENT_PURPOSES.values())


class ViewBehind(Exception):
    """The consent view does not show the change the event announces yet."""


def ended_consents(events: list[DomainEvent]) -> dict[str, set[str]]:
    """patient → the consents that ended (`Consent/<id>`, as a grant names its consent),
    among events about a plan's consent purpose."""
    found: dict[str, set[str]] = {}
    for event in events:
        name = event.type.rsplit(".", 1)[-1]
        if (
            event.resource_type == "Consent"
            and event.patient
            and name in ENDINGS
            and event.data.get("purpose") in PURPOSES
        ):
            found.setdefault(event.patient, set()).add(f"Consent/{event.resource_id}")
    return found


def without_consent(plan: dict[str, Any], day: date, reason: str) -> bool:
    """Apply the loss of its consent to a plan (status, markers, who changed it and why);
    False when nothing changes."""
    loss = consent_lost(str(plan.get("status")), missing_of(plan))
    if loss is None:
        return False
    plan["status"] = loss.status
    set_missing(plan, loss.missing)
    set_extension(
        plan,
        CHANGED_BY_EXT,
        "extension",
        [
            {"url": "at", "valueDateTime": now_instant()},
            {"url": "system", "valueString": "barnebro"},
            {"url": "reason", "valueString": reason},
        ],
    )
    return True


class ConsentWatch:
    def __init__(self, fhir: FhirService, view: ConsentView, nc: NATS, settings: Settings) -> None:
        self.fhir = fhir
        self.view = view
        self.clock = today
        self._request = FhirRequest(
            interaction="update",
            resource_type="CarePlan",
            base_url=settings.base_url,
            caller=Caller(credential="service", client_id=WATCH_CLIENT),
        )
        self.consumer = DurableConsumer(
            nc,
            stream=settings.stream_name,
            durable="careplan-consent-watch",
            subject=f"{settings.nats_prefix}.events.consent.Consent.>",
            handler=self.on_consent_events,
            dead_letters=settings.nats_prefix,
        )

    async def start(self) -> None:
        await self.consumer.start()

    async def stop(self) -> None:
        await self.consumer.stop()

    async def on_consent_events(self, messages: list[Msg]) -> None:
        ended = ended_consents(list(readable_events(m.data for m in messages)))
        for patient, consents in ended.items():
            await self.reassess(patient, consents)

    async def reassess(self, patient: str, ended: Collection[str] = ()) -> int:
        """Take the consent's loss into the child's plans that rest on one; `ended`: the
        consents an event said ended. Returns how many plans changed."""
        self.view.ready()
        state = self.view.state(patient)
        day = self.clock()
        if state is not None and any(
            g.consent in ended and g.covers_day(day) for g in state.grants
        ):
            raise ViewBehind(f"the consent view of {patient} does not show the ending yet")
        changed = 0
        async with self.fhir.unit_of_work(self._request) as uow:
            await uow.lock_patient(patient)
            for stored in await uow.of_patient("CarePlan", patient):
                purpose = CONSENT_PURPOSES.get(category_of(stored.json()) or "")
                if purpose is None or purpose_consents(state, purpose, day):
                    continue
                current = await uow.read_for_update("CarePlan", stored.res_id)
                if current is None or current.deleted:
                    continue
                plan = current.json()
                reason = f"The consent {purpose} is no longer in force"
                if without_consent(plan, day, reason):
                    await uow.save(plan, previous=current)
                    changed += 1
        if changed:
            log.info("%d plans of %s lost their consent", changed, patient)
        return changed
