"""Reading FHIR references: relative (`Patient/1`), absolute (`https://…/Patient/1`) and
versioned (`Patient/1/_history/2`) forms all name the same resource."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from shared.fhir.errors import FhirError, Issue


def reference_target(reference: Any) -> tuple[str, str] | None:
    """(type, id) that a reference string or Reference element points to, if literal."""
    text = reference.get("reference") if isinstance(reference, dict) else reference
    if not isinstance(text, str) or "/" not in text or text.startswith(("#", "urn:")):
        return None
    parts = text.rstrip("/").split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) < 2 or not parts[-2] or not parts[-1]:
        return None
    return parts[-2], parts[-1]


def names_bundle_entry(reference: str) -> bool:
    """Whether a reference is a `urn:uuid:` one, in any spelling: it names an entry of the
    transaction Bundle it is sent in, and nothing else."""
    return reference.strip().lower().startswith("urn:uuid:")


def _unresolved_entry_references(node: Any, where: str) -> Iterator[Issue]:
    if isinstance(node, dict):
        for name, value in node.items():
            if name == "reference" and isinstance(value, str):
                if names_bundle_entry(value):
                    yield Issue(
                        "invalid",
                        f"The reference {value} names an entry of a transaction Bundle: sent"
                        " alone, or naming no entry of its Bundle, it names nothing",
                        expression=(f"{where}.reference",),
                    )
            else:
                yield from _unresolved_entry_references(value, f"{where}.{name}")
    elif isinstance(node, list):
        for item in node:
            yield from _unresolved_entry_references(item, where)


def refuse_unresolved_entry_references(resource: dict[str, Any], resource_type: str) -> None:
    """A write stores no `urn:uuid:` reference: one names an entry of the transaction
    Bundle it is sent in, and is replaced by that entry's id before the write; one left
    over (sent alone, in a batch, or naming no entry) names nothing (422)."""
    issues = list(_unresolved_entry_references(resource, resource_type))
    if issues:
        raise FhirError(422, issues)
