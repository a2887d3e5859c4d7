"""Reading FHIR references: relative (`Patient/1`), absolute (`https://…/Patient/1`) and
versioned (`Patient/1/_history/2`) forms all name the same resource."""

from __future__ import annotations

from typing import Any


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
