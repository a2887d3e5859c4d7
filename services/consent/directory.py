"""What the consent service reads from other services over NATS: mostly the directory.

The child's birth date, the holders of parental responsibility (RelatedPerson with a
no-basis parental-responsibility code) and the care orders recorded on the Patient become
`ChildFacts`; an organisation's kind is read from `Organization.type`. Each answer is
read fresh for each unit of work (asked once in it, `one_answer_per_question`): who may
consent must follow the directory at once when it changes.

For a complaint, the same facts as they stood at an earlier instant
(`child_facts_as_of`) come from the directory's version history of the Patient and of
each RelatedPerson (`GET <type>/<id>/_history`): the version current at that instant.
What the history cannot show is a RelatedPerson deleted since then, or one that named
another child now: the register ends parental responsibility with `period.end` or
`active: false`, which the history keeps.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from services.consent.domain.model import CareOrderFact, ChildFacts
from shared.clock import today
from shared.directory_client import DirectoryClient, service_caller
from shared.family import care_orders, parental_responsibility
from shared.fhir.errors import FhirError, error
from shared.fhir.references import reference_target
from shared.fhir.resources import is_resource_type
from shared.transport.forwarding import Sender
from shared.transport.wire import Caller

CONSENT_SERVICE_CALLER = service_caller("consent", "Patient", "RelatedPerson", "Organization")
FULL_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
NO_RESPONSIBILITY = frozenset({"ukjent"})


def _date(text: Any) -> date | None:
    if isinstance(text, str) and FULL_DATE.match(text):
        return date.fromisoformat(text[:10])
    return None


def child_facts(
    patient: dict[str, Any], related: list[dict[str, Any]], day: date | None = None
) -> ChildFacts:
    """The facts of a Patient and its RelatedPersons (directory JSON) on `day` (today).
    Parental responsibility the register says has ended (`RelatedPerson.period.end`
    before that day, or `active: false`) is no longer held."""
    birth = patient.get("birthDate")
    with_responsibility: list[str] = []
    without: list[str] = []
    ends: list[tuple[str, date]] = []
    on = (day or today()).isoformat()
    for person in related:
        ended = (person.get("period") or {}).get("end")
        if person.get("active") is False or (isinstance(ended, str) and ended[:10] < on):
            continue
        reference = f"RelatedPerson/{person['id']}"
        codes = set(parental_responsibility(person)) - NO_RESPONSIBILITY
        (with_responsibility if codes else without).append(reference)
        last_day = _date(ended) if codes and isinstance(ended, str) else None
        if last_day is not None:
            ends.append((reference, last_day))
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
        responsibility_ends=tuple(sorted(ends)),
    )


def version_at(entries: list[dict[str, Any]], instant: str) -> dict[str, Any] | None:
    """The resource as it stood at `instant` (FHIR instant text, UTC) among the entries of
    a history Bundle: the newest version written at or before it; None when it did not
    exist yet or was deleted then."""
    newest: tuple[str, dict[str, Any]] | None = None
    for entry in entries:
        written = str((entry.get("response") or {}).get("lastModified") or "")
        if written and written <= instant and (newest is None or written > newest[0]):
            newest = (written, entry)
    if newest is None:
        return None
    resource = newest[1].get("resource")
    return resource if isinstance(resource, dict) else None


class ChildNotRegistered(FhirError):
    """The directory does not hold the child's record (never did, or it was deleted)."""

    @classmethod
    def of(cls, patient_id: str) -> ChildNotRegistered:
        message = f"Patient/{patient_id} is not registered in the directory"
        found = error(422, "business-rule", message, "patient")
        return cls(found.status, found.issues)


class DirectoryReader(DirectoryClient):
    """The directory as the consent service reads it: the child's facts."""

    def __init__(self, forwarder: Sender, prefix: str, base_url: str) -> None:
        super().__init__(forwarder, prefix, base_url, CONSENT_SERVICE_CALLER)

    async def care_order_holders(self, child: ChildFacts, day: date) -> list[str]:
        """organisasjonsnummer of the holders of the child's care orders not ended by
        `day` (the access state lists them: the directory releases the child to them)."""
        holders = [
            await self.orgnr_of(order.organization)
            for order in child.care_orders
            if order.end is None or order.end >= day
        ]
        return [orgnr for orgnr in holders if orgnr]

    async def care_order_ends(self, child: ChildFacts, day: date) -> dict[str, date]:
        """The last day of each holder's care orders not ended by `day`, for holders whose
        every such order has an end (the decisions stop counting them after it)."""
        ends: dict[str, date | None] = {}
        for order in child.care_orders:
            if order.end is not None and order.end < day:
                continue
            orgnr = await self.orgnr_of(order.organization)
            if not orgnr:
                continue
            known = ends.get(orgnr, order.end)
            ends[orgnr] = None if known is None or order.end is None else max(known, order.end)
        return {orgnr: end for orgnr, end in ends.items() if end is not None}

    async def registered(self, patient_id: str) -> bool:
        """Whether the directory holds the child's record (not deleted)."""
        return await self.read("Patient", patient_id) is not None

    async def child_facts(self, patient_id: str) -> ChildFacts:
        """The child's facts from one search: the Patient and, included, every
        RelatedPerson that names it (one request and one audit record per look and unit
        of work, and a child is looked at whenever its record, its parents or its
        consents change)."""
        params = [("_id", patient_id), ("_revinclude", "RelatedPerson:patient")]
        status, bundle = await self.ask(
            self.request(interaction="search", resource_type="Patient", params=params)
        )
        if status != 200 or not isinstance(bundle, dict):
            raise error(503, "transient", "The directory could not read the child's record")
        found: dict[str, list[dict[str, Any]]] = {}
        for entry in bundle.get("entry") or []:
            resource, mode = entry.get("resource") or {}, (entry.get("search") or {}).get("mode")
            found.setdefault(f"{mode} {resource.get('resourceType')}", []).append(resource)
        warnings = found.get("outcome OperationOutcome", [])
        if any(i.get("code") == "too-costly" for w in warnings for i in w.get("issue") or []):
            raise error(503, "transient", "The directory left some of the child's people out")
        patient = next(
            (p for p in found.get("match Patient", []) if p.get("id") == patient_id), None
        )
        if patient is None:
            raise ChildNotRegistered.of(patient_id)
        about_child = ("Patient", patient_id)
        related = [
            person
            for person in found.get("include RelatedPerson", [])
            if reference_target(person.get("patient")) == about_child
        ]
        return child_facts(patient, related)

    async def versions(self, resource_type: str, res_id: str) -> list[dict[str, Any]]:
        """Every entry of a directory resource's history (newest first); none when the
        directory never held it."""
        entries: list[dict[str, Any]] = []
        params = [("_count", "1000")]
        while True:
            status, bundle = await self.ask(
                self.request(
                    interaction="history-instance",
                    resource_type=resource_type,
                    id=res_id,
                    params=params,
                )
            )
            if status == 404:
                return entries
            if status != 200 or not isinstance(bundle, dict):
                raise error(503, "transient", f"The directory could not read {resource_type}")
            entries += bundle.get("entry") or []
            following = [
                link["url"] for link in bundle.get("link") or [] if link.get("relation") == "next"
            ]
            if not following:
                return entries
            cursor = dict(parse_qsl(urlsplit(following[0]).query)).get("_cursor")
            if cursor is None:
                return entries
            params = [("_count", "1000"), ("_cursor", cursor)]

    async def child_facts_as_of(self, patient_id: str, instant: str, day: date) -> ChildFacts:
        """The child's facts as the directory held them at `instant` (FHIR instant text,
        UTC), on `day` (the Norwegian calendar day of that instant)."""
        patient = version_at(await self.versions("Patient", patient_id), instant)
        if patient is None:
            raise error(
                422,
                "business-rule",
                f"Patient/{patient_id} was not registered in the directory at {instant}",
                "as_of",
            )
        now = await self.search(
            "RelatedPerson", [("patient", f"Patient/{patient_id}"), ("_count", "100")]
        )
        related = []
        for person in now:
            then = version_at(await self.versions("RelatedPerson", str(person["id"])), instant)
            if then is not None and reference_target(then.get("patient")) == (
                "Patient",
                patient_id,
            ):
                related.append(then)
        return child_facts(patient, related, day)

    async def version_about(self, caller: Caller, reference: str, patient_id: str) -> int | None:
        """The version of `reference` that `caller` reads now (asked of the service that
        owns it, so its own consent step decides and audits), if it may read it and it is
        about the patient; None otherwise."""
        res_type, _, res_id = reference.partition("/")
        if not is_resource_type(res_type):  # no service to ask: nothing the caller holds
            return None
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
