"""How the directory records who has authority over a child: care orders and parental
responsibility.

A care order (omsorgsovertakelse) is a `Patient.contact` with relationship
`omsorgsovertakelse` (project CodeSystem), the barnevernstjeneste as `contact.organization`
and the period; parental responsibility is a RelatedPerson with a no-basis
parental-responsibility code. The directory validates them; the consent service reads
them to decide who may consent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.codes import (
    CARE_ORDER_CODE,
    CONTACT_RELATIONSHIP_SYSTEM,
    PARENTAL_RESPONSIBILITY_SYSTEM,
)


@dataclass(frozen=True)
class CareOrder:
    """A barnevernstjeneste has taken over care (omsorgsovertakelse) for a period."""

    organization: str
    start: str
    end: str | None

    def as_data(self) -> dict[str, Any]:
        return {"organization": self.organization, "start": self.start, "end": self.end}


def is_care_order(contact: dict[str, Any]) -> bool:
    return any(
        coding.get("system") == CONTACT_RELATIONSHIP_SYSTEM
        and coding.get("code") == CARE_ORDER_CODE
        for relationship in contact.get("relationship") or []
        for coding in relationship.get("coding") or []
    )


def indexed_care_orders(patient: dict[str, Any] | None) -> list[tuple[int, CareOrder]]:
    """The care orders recorded on a Patient, with the index of their `Patient.contact`."""
    orders = []
    for index, contact in enumerate((patient or {}).get("contact") or []):
        if not is_care_order(contact):
            continue
        organization = (contact.get("organization") or {}).get("reference")
        period = contact.get("period") or {}
        orders.append(
            (index, CareOrder(str(organization), str(period.get("start")), period.get("end")))
        )
    return orders


def care_orders(patient: dict[str, Any] | None) -> list[CareOrder]:
    """The care orders recorded on a Patient (as `Patient.contact` entries)."""
    return [order for _, order in indexed_care_orders(patient)]


def parental_responsibility(related_person: dict[str, Any] | None) -> list[str]:
    """The no-basis parental-responsibility codes on a RelatedPerson."""
    return sorted(
        coding["code"]
        for relationship in (related_person or {}).get("relationship") or []
        for coding in relationship.get("coding") or []
        if coding.get("system") == PARENTAL_RESPONSIBILITY_SYSTEM and "code" in coding
    )
