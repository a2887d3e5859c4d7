"""What a resource type's profile declares beyond the FHIR model, and where profiles live.

A service's `ResourceDefinition` carries a `ProfileRules` (the elements every stored
resource has, the codes an element is fixed to, the project code systems an element is
bound to, the identifier systems it uses), declaring only what the type's rules enforce;
`shared.fhir.conformance` turns it, the type's extensions (`shared.fhir.extensions`) and
its base into a StructureDefinition at `profile_url`.
Every resource the store saves names that profile in `meta.profile`.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.codes import NO_BASIS_PROFILE, STRUCTURE_DEFINITION_BASE
from shared.fhir.errors import error

CORE_PROFILE = "http://hl7.org/fhir/StructureDefinition/{}"
NO_BASIS_TYPES = frozenset(
    {"Patient", "Practitioner", "PractitionerRole", "Organization", "RelatedPerson"}
)
"""The types the HL7 Norway no-basis IG (hl7.fhir.no.basis) profiles; the others are
based on the core definition."""
NO_BASIS_PACKAGE = ("hl7.fhir.no.basis", "2.2.0")
CORE_PACKAGE = ("hl7.fhir.r4.core", "4.0.1")


@dataclass(frozen=True)
class ProfileRules:
    """What every resource of a type has, as the type's rules make sure."""

    required: tuple[str, ...] = ()
    """Elements (dotted paths from the resource) that every stored resource has: a write
    without one is refused."""
    fixed: tuple[tuple[str, str], ...] = ()
    """(element path, code): a `code` element every stored resource has with that value."""
    bindings: tuple[tuple[str, str], ...] = ()
    """(element path, project code system URL): the element (a Coding, or a
    CodeableConcept with at least one coding) takes its code from that system (required
    binding to its ValueSet)."""
    identifier_systems: tuple[str, ...] = ()
    """The identifier systems the type's rules key on (a person number, an orgnr)."""

    def fixed_value(self, path: str) -> str:
        """The code `path` is fixed to (for the code that sets it)."""
        return dict(self.fixed)[path]


def profile_url(resource_type: str) -> str:
    """The canonical URL of barnebro's profile of `resource_type`."""
    return f"{STRUCTURE_DEFINITION_BASE}/barnebro-{resource_type}"


def base_definition(resource_type: str) -> str:
    """The profile barnebro's profile of `resource_type` constrains."""
    template = NO_BASIS_PROFILE if resource_type in NO_BASIS_TYPES else CORE_PROFILE
    return template.format(resource_type)


def with_profile(meta: dict[str, object], resource_type: str) -> dict[str, object]:
    """`meta` naming barnebro's profile of `resource_type` first (others kept after it)."""
    own = profile_url(resource_type)
    given = meta.get("profile")
    others = [p for p in given if p != own] if isinstance(given, list) else []
    return {**meta, "profile": [own, *others]}


def refuse_other_profile(resource_type: str, profile: str) -> None:
    """`$validate` checks a resource against barnebro's profile of its type, which its
    `profile` parameter may name; any other profile would be a validation it does not do."""
    own = profile_url(resource_type)
    if profile != own:
        raise error(
            400,
            "not-supported",
            f"$validate checks {resource_type} against its profile {own} only"
            f" (got profile {profile})",
            "profile",
        )
