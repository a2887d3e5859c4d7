"""The project's code systems as FHIR CodeSystem resources, generated from the code's own
declarations (`shared.codes.CodedEnum`): every concept with its code, display and
definition, at the canonical URL that stored resources use as `system`.

The consent service stores them at start-up (`services.consent.code_systems`) and serves
them read-only at `/fhir/CodeSystem`, so `GET /fhir/CodeSystem?url=<system>` resolves a
system a resource names.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from shared.codes import (
    CONTACT_RELATIONSHIP_SYSTEM,
    DATA_CATEGORY_SYSTEM,
    ORGANISATION_KIND_SYSTEM,
    ROLE_SYSTEM,
    CareRole,
    CodedEnum,
    ContactRelationship,
    DataCategory,
    OrganisationKind,
)
from shared.version import software_version

PUBLISHER = "barnebro"


@dataclass(frozen=True)
class CodeSystemSource:
    """A code system of the project: its canonical URL, its title and its codes."""

    url: str
    title: str
    codes: type[CodedEnum]

    @property
    def id(self) -> str:
        """The resource id: the last segment of the URL (`consent-purpose`)."""
        return self.url.rstrip("/").rsplit("/", 1)[-1]

    @property
    def name(self) -> str:
        """A computer-friendly name (`ConsentPurpose`)."""
        return "".join(part.capitalize() for part in self.id.split("-"))


SHARED_CODE_SYSTEMS = (
    CodeSystemSource(DATA_CATEGORY_SYSTEM, "Data categories", DataCategory),
    CodeSystemSource(ORGANISATION_KIND_SYSTEM, "Organisation kinds", OrganisationKind),
    CodeSystemSource(ROLE_SYSTEM, "Care roles", CareRole),
    CodeSystemSource(CONTACT_RELATIONSHIP_SYSTEM, "Contact relationships", ContactRelationship),
)
"""The code systems declared in `shared.codes`; a service adds its own."""


def code_system_resource(source: CodeSystemSource) -> dict[str, Any]:
    """The FHIR R4 CodeSystem of `source`: active, complete, every concept with its
    display and definition."""
    concepts = [
        {"code": code.value, "display": code.display, "definition": code.definition}
        for code in source.codes
    ]
    return {
        "resourceType": "CodeSystem",
        "id": source.id,
        "url": source.url,
        "version": software_version(),
        "name": source.name,
        "title": source.title,
        "status": "active",
        "experimental": False,
        "publisher": PUBLISHER,
        "description": inspect.getdoc(source.codes) or source.title,
        "caseSensitive": True,
        "content": "complete",
        "count": len(concepts),
        "concept": [{k: v for k, v in concept.items() if v} for concept in concepts],
    }
