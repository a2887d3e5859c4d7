"""Reading and writing the elements services keep on FHIR resources: extensions, and
references to organisations and patients.

Plain functions over resource JSON, shared by every service's records module.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import date
from typing import Any

from shared.fhir.errors import error
from shared.fhir.references import reference_target
from shared.identifiers import HERID_SYSTEM, ORGNR_SYSTEM


def extensions(element: dict[str, Any], url: str) -> list[dict[str, Any]]:
    """The extensions of an element with this url."""
    return [
        e for e in element.get("extension") or [] if isinstance(e, dict) and e.get("url") == url
    ]


def extension_value(element: dict[str, Any], url: str, key: str) -> Any:
    """The `key` (e.g. `valueDate`) of the first extension with this url."""
    for ext in extensions(element, url):
        if key in ext:
            return ext[key]
    return None


def set_extension(element: dict[str, Any], url: str, key: str, value: Any) -> None:
    """Replace the extensions with `url` by one holding `value` (none when None)."""
    kept = [e for e in element.get("extension") or [] if e.get("url") != url]
    if value is not None:
        kept.append({"url": url, key: value})
    if kept:
        element["extension"] = kept
    else:
        element.pop("extension", None)


def add_extension(element: dict[str, Any], url: str, key: str, value: Any) -> None:
    element.setdefault("extension", []).append({"url": url, key: value})


def keep_server_extensions(
    resource: dict[str, Any], stored: dict[str, Any] | None, urls: Collection[str]
) -> None:
    """Extensions only the server writes: drop the client's, restore the stored ones, so
    an update based on an older version (or a forged one) cannot set or undo them."""
    kept = [e for e in resource.get("extension") or [] if e.get("url") not in urls]
    kept += [e for e in (stored or {}).get("extension") or [] if e.get("url") in urls]
    if kept:
        resource["extension"] = kept
    else:
        resource.pop("extension", None)


def names_same(given: Any, stored: Any) -> bool:
    """Whether a client's Reference names what the stored one does (by its reference, its
    identifier or both)."""
    if not isinstance(given, dict) or not isinstance(stored, dict):
        return False
    return all(given.get(k) in (None, stored.get(k)) for k in ("reference", "identifier")) and (
        "reference" in given or "identifier" in given
    )


def keep_unchanged(
    resource: dict[str, Any],
    before: dict[str, Any],
    elements: Collection[str],
    *,
    same_reference: bool = False,
) -> None:
    """Elements fixed when the resource was created: taken from `before` when left out (or,
    with `same_reference`, given as a Reference naming the same thing), refused (422) when
    changed."""
    resource_type = before.get("resourceType", "")
    for element in elements:
        if (element not in resource and element in before) or (
            same_reference and names_same(resource.get(element), before.get(element))
        ):
            resource[element] = before[element]
        elif resource.get(element) != before.get(element):
            raise error(
                422,
                "business-rule",
                f"{resource_type}.{element} is set when the resource is created and does not"
                " change",
                f"{resource_type}.{element}",
            )


def orgnr_of(reference: Any) -> str | None:
    """The organisasjonsnummer (nine digits) a Reference names by identifier."""
    identifier = reference.get("identifier") if isinstance(reference, dict) else None
    if isinstance(identifier, dict) and identifier.get("system") == ORGNR_SYSTEM:
        value = identifier.get("value")
        if isinstance(value, str) and len(value) == 9 and value.isdigit():
            return value
    return None


def her_id_of(reference: Any) -> str | None:
    """The HER-id (NHN's address register) a Reference names by identifier, as given."""
    identifier = reference.get("identifier") if isinstance(reference, dict) else None
    if isinstance(identifier, dict) and identifier.get("system") == HERID_SYSTEM:
        return str(identifier.get("value") or "")
    return None


def organisation_reference(orgnr: str, display: str | None = None) -> dict[str, Any]:
    reference: dict[str, Any] = {
        "type": "Organization",
        "identifier": {"system": ORGNR_SYSTEM, "value": orgnr},
    }
    if display:
        reference["display"] = display
    return reference


def patient_id(reference: Any) -> str | None:
    """The id of the Patient a Reference points to."""
    target = reference_target(reference)
    return target[1] if target and target[0] == "Patient" else None


def a_date(value: Any) -> date | None:
    """The calendar day a FHIR date or dateTime starts on; None if it has none."""
    if isinstance(value, str) and len(value) >= 10:
        try:
            return date.fromisoformat(value[:10])
        except ValueError:
            return None
    return None
