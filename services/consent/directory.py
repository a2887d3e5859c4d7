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

import orjson

from services.consent.domain.model import CareOrderFact, ChildFacts
from shared.codes import organisation_kinds
from shared.family import care_orders, parental_responsibility
from shared.fhir.errors import error
from shared.fhir.references import reference_target
from shared.identifiers import ORGNR_SYSTEM
from shared.transport.forwarding import Forwarder
from shared.transport.wire import Caller, FhirRequest, request_subject

CONSENT_SERVICE_CALLER = Caller(
    client_id="barnebro-consent",
    scopes=["system/Patient.rs", "system/RelatedPerson.rs", "system/Organization.rs"],
)
FULL_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
NO_RESPONSIBILITY = frozenset({"ukjent"})


def _date(text: Any) -> date | None:
    if isinstance(text, str) and FULL_DATE.match(text):
        return date.fromisoformat(text[:10])
    return None


def child_facts(patient: dict[str, Any], related: list[dict[str, Any]]) -> ChildFacts:
    """The facts of a Patient and its RelatedPersons (directory JSON)."""
    birth = patient.get("birthDate")
    with_responsibility: list[str] = []
    without: list[str] = []
    for person in related:
        if person.get("active") is False:
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


class DirectoryReader:
    def __init__(self, forwarder: Forwarder, prefix: str, base_url: str) -> None:
        self._forwarder = forwarder
        self._prefix = prefix
        self._base_url = base_url

    async def _ask(self, request: FhirRequest) -> tuple[int, Any]:
        subject = request_subject(self._prefix, request.resource_type or "")
        response = await self._forwarder.send(subject, request, b"")
        return response.status, orjson.loads(response.body) if response.body else None

    def _request(self, caller: Caller = CONSENT_SERVICE_CALLER, **fields: Any) -> FhirRequest:
        return FhirRequest(base_url=self._base_url, caller=caller, **fields)

    async def child_facts(self, patient_id: str) -> ChildFacts:
        status, patient = await self._ask(
            self._request(interaction="read", resource_type="Patient", id=patient_id)
        )
        if status != 200:
            raise error(
                422,
                "business-rule",
                f"Patient/{patient_id} is not registered in the directory",
                "patient",
            )
        status, bundle = await self._ask(
            self._request(
                interaction="search",
                resource_type="RelatedPerson",
                params=[("patient", f"Patient/{patient_id}"), ("_count", "100")],
            )
        )
        if status != 200:
            raise error(503, "transient", "The directory could not list the child's parents")
        related = [
            entry["resource"]
            for entry in bundle.get("entry", [])
            if entry.get("search", {}).get("mode") == "match"
        ]
        return child_facts(patient, related)

    async def about_patient_as(self, caller: Caller, reference: str, patient_id: str) -> bool:
        """Whether `caller` may read `reference` (asked of the service that owns it, so
        its own consent step decides and audits) and it is about the patient."""
        res_type, _, res_id = reference.partition("/")
        status, resource = await self._ask(
            self._request(caller, interaction="read", resource_type=res_type, id=res_id)
        )
        if status != 200 or not isinstance(resource, dict):
            return False
        for element in ("subject", "patient", "for"):
            target = reference_target(resource.get(element))
            if target is not None:
                return target == ("Patient", patient_id)
        return False

    async def orgnr_of(self, reference: str) -> str | None:
        """The organisasjonsnummer of a registered Organization (`Organization/<id>`)."""
        res_type, _, res_id = reference.partition("/")
        if res_type != "Organization":
            return None
        status, organization = await self._ask(
            self._request(interaction="read", resource_type="Organization", id=res_id)
        )
        if status != 200 or not isinstance(organization, dict):
            return None
        return next(
            (
                str(i["value"])
                for i in organization.get("identifier") or []
                if i.get("system") == ORGNR_SYSTEM and i.get("value")
            ),
            None,
        )

    async def organisation_kind(self, orgnr: str) -> str | None:
        status, bundle = await self._ask(
            self._request(
                interaction="search",
                resource_type="Organization",
                params=[("identifier", f"{ORGNR_SYSTEM}|{orgnr}")],
            )
        )
        if status != 200:
            return None
        for entry in bundle.get("entry", []):
            kinds = organisation_kinds(entry.get("resource"))
            if kinds:
                return kinds[0]
        return None
