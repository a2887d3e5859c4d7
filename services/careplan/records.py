"""Reading the care plan service's FHIR resources as the rules' facts.

CarePlan → `PlanFacts` (with what its Goals and CareTeam add), CareTeam →
`Participant`s. Organisations are named by organisasjonsnummer (Reference.identifier); a
participant acts for `onBehalfOf`, or is itself the organisation.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from services.careplan.domain.model import Activity, Participant
from services.careplan.domain.vocabulary import (
    CATEGORY_SYSTEM,
    EXTENT_EXT,
    MISSING_POINT_EXT,
    PHASE_SYSTEM,
    POINT_SYSTEM,
    REGIME_EXT,
    SUBSTITUTE_EXT,
    Point,
    Regime,
)
from shared.codes import ROLE_SYSTEM
from shared.fhir.elements import a_date, extension_value, orgnr_of, set_extension
from shared.fhir.references import reference_target


def reference_text(reference: Any) -> str:
    """A stable name for a Reference: `Type/id`, or `system|value` of its identifier."""
    target = reference_target(reference)
    if target is not None:
        return "/".join(target)
    identifier = reference.get("identifier") if isinstance(reference, dict) else None
    if isinstance(identifier, dict):
        return f"{identifier.get('system')}|{identifier.get('value')}"
    return ""


def category_of(plan: dict[str, Any]) -> str | None:
    codes = [
        coding.get("code")
        for concept in plan.get("category") or []
        for coding in concept.get("coding") or []
        if coding.get("system") == CATEGORY_SYSTEM
    ]
    return str(codes[0]) if len(codes) == 1 else None


def regime_of(plan: dict[str, Any]) -> str | None:
    value = extension_value(plan, REGIME_EXT, "valueCode")
    return value if value in set(Regime) else None


def missing_of(plan: dict[str, Any]) -> tuple[Point, ...]:
    """The points a plan's markers (extension individuell-plan-missing) say it lacks."""
    codes = {
        (e.get("valueCoding") or {}).get("code")
        for e in plan.get("extension") or []
        if e.get("url") == MISSING_POINT_EXT
    }
    return tuple(point for point in Point if point.value in codes)


def set_missing(plan: dict[str, Any], missing: tuple[Point, ...] | list[Point]) -> None:
    """Replace a plan's markers with one per point it lacks."""
    plan["extension"] = [
        e for e in plan.get("extension") or [] if e.get("url") != MISSING_POINT_EXT
    ] + [
        {"url": MISSING_POINT_EXT, "valueCoding": {"system": POINT_SYSTEM, "code": point.value}}
        for point in missing
    ]
    if not plan["extension"]:
        del plan["extension"]


def activities(plan: dict[str, Any]) -> tuple[Activity, ...]:
    found = []
    for activity in plan.get("activity") or []:
        detail = activity.get("detail") or {}
        performers = detail.get("performer") or []
        found.append(
            Activity(
                description=str(detail.get("description") or ""),
                performer=reference_text(performers[0]) if performers else None,
                extent=extension_value(detail, EXTENT_EXT, "valueString"),
            )
        )
    return tuple(found)


def participants(team: dict[str, Any]) -> list[Participant]:
    found = []
    for entry in team.get("participant") or []:
        roles = [
            str(coding.get("code"))
            for concept in entry.get("role") or []
            for coding in concept.get("coding") or []
            if coding.get("system") == ROLE_SYSTEM
        ]
        member = entry.get("member") or {}
        period = entry.get("period") or {}
        found.append(
            Participant(
                member=reference_text(member),
                role=roles[0] if roles else "",
                orgnr=orgnr_of(entry.get("onBehalfOf")) or orgnr_of(member),
                kind=None,
                start=a_date(period.get("start")),
                end=a_date(period.get("end")),
                substitute_for=extension_value(entry, SUBSTITUTE_EXT, "valueString"),
            )
        )
    return found


def phases(plan: dict[str, Any]) -> list[tuple[str, date | None]]:
    """The nasjonalt forløp phases among a plan's activities: (code, start)."""
    found = []
    for activity in plan.get("activity") or []:
        detail = activity.get("detail") or {}
        for coding in (detail.get("code") or {}).get("coding") or []:
            if coding.get("system") == PHASE_SYSTEM:
                start = (detail.get("scheduledPeriod") or {}).get("start")
                found.append((str(coding.get("code")), a_date(start)))
    return found


__all__ = ["a_date", "extension_value", "orgnr_of", "set_extension"]
