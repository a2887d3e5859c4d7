"""Which elements of a directory record name another registered record, and of what type.

Every service follows the references the directory stores: the referral service tells a
child's GP of a discharge, the permission table reads whom a role or a service belongs
to, an integrator follows a child's managing organisation. A reference to nothing (a
mistyped id, a deleted record, another server's URL) would be followed to nothing,
silently. So a literal reference in these elements names a record registered here, not
deleted, by a relative reference (`Type/id`); the directory's definitions look each one up
(`services.directory.resources`). A reference by identifier alone is checked where the
identifier is resolved (an organisasjonsnummer, a HER-id).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import Any

from shared.family import is_care_order

ORGANISATION = ("Organization",)
PRACTITIONERS = ("Organization", "Practitioner", "PractitionerRole")

NAMED_RECORDS: Mapping[str, tuple[tuple[str, tuple[str, ...]], ...]] = MappingProxyType(
    {
        "Patient": (
            ("managingOrganization", ORGANISATION),
            ("contact.organization", ORGANISATION),
            ("generalPractitioner", PRACTITIONERS),
        ),
        "Organization": (("partOf", ORGANISATION),),
        "PractitionerRole": (
            ("practitioner", ("Practitioner",)),
            ("organization", ORGANISATION),
            ("healthcareService", ("HealthcareService",)),
        ),
        "HealthcareService": (("providedBy", ORGANISATION),),
    }
)
"""Type → (element path, the types it may name) for each element that names a record.
`RelatedPerson.patient` is checked with its own rule, under the child's lock."""

OWN_RULE: Mapping[str, Callable[[Any], bool]] = MappingProxyType({"contact": is_care_order})
"""Items of an element that a rule of their own checks: a care order names a registered
barnevernstjeneste while it is open, and is history once ended (its holder may since have
left the register, and no one but the holder could change the order)."""


def named_references(
    resource_type: str, resource: dict[str, Any]
) -> Iterator[tuple[str, str, tuple[str, ...]]]:
    """(where, the literal reference, the types it may name) for each literal reference
    in `NAMED_RECORDS`' elements of a resource."""
    for path, types in NAMED_RECORDS.get(resource_type, ()):
        for where, element in _elements(resource, path.split("."), resource_type):
            text = element.get("reference") if isinstance(element, dict) else None
            if isinstance(text, str):
                yield where, text, types


def _elements(node: Any, names: list[str], where: str) -> Iterator[tuple[str, Any]]:
    if not names:
        yield where, node
        return
    value = node.get(names[0]) if isinstance(node, dict) else None
    if isinstance(value, list):
        own_rule = OWN_RULE.get(names[0])
        for index, item in enumerate(value):
            if own_rule is None or not own_rule(item):
                yield from _elements(item, names[1:], f"{where}.{names[0]}[{index}]")
    elif value is not None:
        yield from _elements(value, names[1:], f"{where}.{names[0]}")
