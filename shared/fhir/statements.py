"""Statements and their provenance, as every service and the gateway read them.

A statement is an element that says something about a child: a plan's note or activity,
a Goal and its notes, a care team's reasons and notes, a referral's reason or note. The
care plan service stamps each with who made it (extension `statement-provenance`:
organisation, practitioner, roles, regime, time, and for a quotation its source and who
quoted it); a referral's statements are its requester's. `kind_regime` is the law an
organisation kind writes under.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from shared.access.permissions import ACTOR_KINDS, Actor
from shared.fhir.extensions import STATEMENT_PROVENANCE

PROVENANCE_EXT = STATEMENT_PROVENANCE.url
HELSE, BARNEVERN = "helse", "barnevern"


def kind_regime(kind: str | None) -> str | None:
    """The law an organisation of `kind` writes under: health personnel under health law,
    barnevern (the service, its institutions, Bufetat) under barnevern law; None for
    others (schools, NAV ...), whose statements carry no regime of these two."""
    if kind in ACTOR_KINDS[Actor.HEALTH]:
        return HELSE
    if kind in ACTOR_KINDS[Actor.BARNEVERNSTJENESTE] | ACTOR_KINDS[Actor.BARNEVERN]:
        return BARNEVERN
    return None


def statements(resource: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each statement of a resource with its FHIRPath (`CarePlan.note[0]`; a Goal is a
    statement itself, its description, and its notes are others)."""
    resource_type = str(resource.get("resourceType") or "")
    if resource_type == "Goal":
        yield "Goal", resource
    elements = {
        "CarePlan": ("note", "activity"),
        "Goal": ("note",),
        "CareTeam": ("reasonCode", "note"),
        "ServiceRequest": ("reasonCode", "note"),
    }
    for element in elements.get(resource_type, ()):
        for index, node in enumerate(resource.get(element) or []):
            if isinstance(node, dict):
                yield f"{resource_type}.{element}[{index}]", node


def stamp_of(statement: dict[str, Any]) -> dict[str, Any]:
    """The parts of a statement's provenance by name (an Identifier's value, a Reference's
    reference); {} when it carries none."""
    found: dict[str, Any] = {}
    for extension in statement.get("extension") or []:
        if extension.get("url") != PROVENANCE_EXT:
            continue
        for part in extension.get("extension") or []:
            value = next((v for k, v in part.items() if k.startswith("value")), None)
            if isinstance(value, dict):
                value = value.get("value") or value.get("reference")
            if part.get("url") == "role":
                found.setdefault("role", []).append(value)
            else:
                found[str(part.get("url"))] = value
    return found
