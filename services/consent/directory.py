"""What the consent service reads from other services over NATS: mostly the directory.

The child's birth date, the holders of parental responsibility (RelatedPerson with a
no-basis parental-responsibility code) and the care orders recorded on the Patient become
`ChildFacts`; an organisation's kind is read from `Organization.type`. Each answer is
read fresh: who may consent must follow the directory at once when it changes.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from services.consent.domain.model import CareOrderFact, ChildFacts
from shared.clock import today
from shared.directory_client import DirectoryClient, service_caller
from shared.family import care_orders, parental_responsibility
from shared.fhir.errors import error
from shared.fhir.references import reference_target
from shared.transport.forwarding import Forwarder
from shared.transport.wire import Caller

CONSENT_SERVICE_CALLER = service_caller("consent", "Patient", "RelatedPerson", "Organization")
FULL_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
NO_RESPONSIBILITY = frozenset({"ukjent"})


def _date(text: Any) -> date | None:
    if isinstance(text, str) and FULL_DATE.match(text):
        return date.fromisoformat(text[:10])
    return None


def child_facts(patient: dict[str, Any], related: list[dict[str, Any]]) -> ChildFacts:
    """The facts of a Patient and its RelatedPersons (directory JSON). Parental
    responsibility the register says has ended (`RelatedPerson.period.end`, or
    `active: false`) is no longer held."""
    birth = patient.get("birthDate")
    with_responsibility: list[str] = []
    without: list[str] = []
    day = today().isoformat()
    for person in related:
        ended = (person.get("period") or {}).get("end")
        if person.get("active") is False or (isinstance(ended, str) and ended[:10] < day):
            continue
        reference = f"RelatedPerson/{person['id']}"
        codes = set(parental_responsibility(person)) - NO_RESPONSIBILITY
        (with_responsibility if codes else without).append(reference)
    orders = []
    for order in care_orders(patient):
        start = _date(order.start)
        if start is not None:
            orders.append(CareOrderFact(order.organization, start, _date(order.end)))
    return ChildFacts(
        patient=f"Patient/{patient['id']}",
        birth_date=_date(birth),
        birth_date_confirmed=isinstance(birth, str) and FULL_DATE.fullmatch(birth) is not None,
        parents_with_responsibility=tuple(sorted(with_responsibility)),
        parents_without_responsibility=tuple(sorted(without)),
        care_orders=tuple(orders),
    )


class DirectoryReader(DirectoryClient):
    """The directory as the consent service reads it: the child's facts."""

    def __init__(self, forwarder: Forwarder, prefix: str, base_url: str) -> None:
        super().__init__(forwarder, prefix, base_url, CONSENT_SERVICE_CALLER)

    async def registered(self, patient_id: str) -> bool:
        """Whether the directory holds the child's record (not deleted)."""
        return await self.read("Patient", patient_id) is not None

    async def child_facts(self, patient_id: str) -> ChildFacts:
        patient = await self.read("Patient", patient_id)
        if patient is None:
            raise error(
                422,
                "business-rule",
                f"Patient/{patient_id} is not registered in the directory",
                "patient",
            )
        related = await self.search(
            "RelatedPerson", [("patient", f"Patient/{patient_id}"), ("_count", "100")]
        )
        return child_facts(patient, related)

    async def version_about(self, caller: Caller, reference: str, patient_id: str) -> int | None:
        """The version of `reference` that `caller` reads now (asked of the service that
        owns it, so its own consent step decides and audits), if it may read it and it is
        about the patient; None otherwise."""
        res_type, _, res_id = reference.partition("/")
        status, resource = await self.ask(
            self.request(caller, interaction="read", resource_type=res_type, id=res_id)
        )
        if status != 200 or not isinstance(resource, dict):
            return None
        version = str((resource.get("meta") or {}).get("versionId") or "")
        if not version.isdigit():
            return None
        for element in ("subject", "patient", "for"):
            target = reference_target(resource.get(element))
            if target is not None:
                return int(version) if target == ("Patient", patient_id) else None
        return None
