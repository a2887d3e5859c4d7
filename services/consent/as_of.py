"""A child's consent situation as it stood at an earlier instant, to answer a complaint.

A child or a parent who complains to Statsforvalteren must learn who could see what,
when, and on which basis. `situation_at` rebuilds what barnebro knew at that instant and
hands it to the same pure rules as today's answers:
- the child's directory facts as the directory held them then (the versions of the
  Patient and its RelatedPersons current at that instant, `DirectoryReader.
  child_facts_as_of`);
- each of the child's Consent resources at the version current then (its stored
  history; one created later is left out), and the hpl §33 disclosures recorded by then;
- those turned into the access state with `access_state.patient_state`, as the state
  published after the last change before that instant was.

Approximated, and said so in the consent README: the organisations with a relation to
the child (`related`) are those known now (a relation is never taken back, so at most
some learnt later are counted; they matter only for a consent that names a care role).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime

from services.consent.access_state import patient_state
from services.consent.directory import DirectoryReader
from services.consent.disclosures import disclosed
from services.consent.domain.model import ChildFacts
from services.consent.records import ConsentRecord, from_fhir
from services.consent.relation_table import related
from shared import clock
from shared.access.state import Disclosure, PatientAccessState
from shared.clock import NORWAY
from shared.fhir.search_params import format_instant
from shared.fhir.service import FhirService
from shared.store.resource_store import StoredResource

AS_OF = "as_of"
INSTANT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})")
MAX_VERSIONS = 1000


def parse_as_of(text: str, now: datetime | None = None) -> datetime:
    """An `as_of` date-time: `YYYY-MM-DDThh:mm:ss[.ffffff]` with `Z` or an offset, not
    after `now`. ValueError says what is wrong."""
    if not INSTANT.fullmatch(text):
        raise ValueError(
            f"{text!r} is not a date-time with a time zone, such as 2026-03-01T12:00:00Z"
            " or 2026-03-01T13:00:00%2B01:00 (a + in a query string is written %2B)"
        )
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a valid date-time") from exc
    try:
        format_instant(moment)  # in UTC, as versions are stored
        day_of(moment)
    except OverflowError as exc:  # 0001-01-01T00:00:00+14:00 is before the year 1 in UTC
        raise ValueError(f"{text} is before the first date-time that can be compared") from exc
    if moment > (now or clock.now()):
        raise ValueError(f"{text} is in the future: a complaint is about what has happened")
    return moment


def day_of(moment: datetime) -> date:
    """The Norwegian calendar day of an instant (ages and periods count those)."""
    return moment.astimezone(NORWAY).date()


def version_current_at(versions: list[StoredResource], instant: str) -> StoredResource | None:
    """Among a resource's stored versions, the one current at `instant`; None when it
    did not exist yet or was deleted then."""
    earlier = [v for v in versions if v.last_updated <= instant]
    if not earlier:
        return None
    current = max(earlier, key=lambda v: v.version)
    return None if current.deleted else current


@dataclass(frozen=True)
class Situation:
    """What barnebro knew about a child at `instant`."""

    instant: str
    day: date
    child: ChildFacts
    consents: list[StoredResource]
    """Each consent at its version current at `instant`."""
    state: PatientAccessState

    @property
    def records(self) -> list[ConsentRecord]:
        return [from_fhir(v.json()) for v in self.consents]

    @property
    def versions(self) -> list[str]:
        """`Consent/<id>/_history/<version>` of each consent as it stood."""
        return [f"{v.reference}/_history/{v.version}" for v in self.consents]


async def child_at(directory: DirectoryReader, patient_id: str, moment: datetime) -> ChildFacts:
    """The child's directory facts at `moment`."""
    return await directory.child_facts_as_of(patient_id, format_instant(moment), day_of(moment))


async def situation_at(
    fhir: FhirService, directory: DirectoryReader, patient_id: str, moment: datetime
) -> Situation:
    """The child's facts, consents and access state as they stood at `moment`."""
    instant, day = format_instant(moment), day_of(moment)
    child = await child_at(directory, patient_id, moment)
    consents: list[StoredResource] = []
    disclosures: list[Disclosure] = []
    async with fhir.db.reader() as conn:

        async def as_it_stood(stored: StoredResource) -> StoredResource | None:
            versions, _ = await fhir.store.history(
                conn,
                stored.res_type,
                stored.res_id,
                since=None,
                count=MAX_VERSIONS,
                before_seq=None,
            )
            return version_current_at(versions, instant)

        for current in await fhir.store.of_patient(conn, "Consent", patient_id):
            then = await as_it_stood(current)
            if then is not None:
                consents.append(then)
        found = await fhir.store.carrying_all(
            conn, "AuditEvent", [("subtype", "hpl-33"), ("patient", f"Patient/{patient_id}")], 1000
        )
        for stored in found:  # each as it stood then: recorded by then, not yet closed
            then = await as_it_stood(stored)
            released = disclosed(then.json()) if then is not None else None
            if released is not None:
                disclosures.append(released)
        relations = await related(conn, patient_id)
    state = patient_state(
        patient_id,
        child,
        [from_fhir(v.json()) for v in consents],
        disclosures,
        related=relations,
        care_order_holders=await directory.care_order_holders(child, day),
        care_order_ends=await directory.care_order_ends(child, day),
    )
    return Situation(instant, day, child, consents, state)
