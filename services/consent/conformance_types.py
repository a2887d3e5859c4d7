"""The conformance resource types the consent service serves read-only, like the code
systems: StructureDefinition, ValueSet, SearchParameter and OperationDefinition, each
generated from the code (`shared.fhir.conformance`), written at start-up and never over
the FHIR API. They hold nothing about a patient, so every registered caller reads them."""

from __future__ import annotations

from services.consent.code_systems import CODE_SYSTEM_WRITER
from shared.fhir.definitions import Change, EventSpec, ResourceDefinition
from shared.fhir.search_params import ParamType, SearchParam

TOKEN, STRING = ParamType.TOKEN, ParamType.STRING
CANONICAL = (
    SearchParam("url", TOKEN, ("url",), "The canonical URL"),
    SearchParam("name", STRING, ("name",), "The computer-friendly name"),
    SearchParam("title", STRING, ("title",), "The name for people"),
    SearchParam("status", TOKEN, ("status",), "Always active"),
    SearchParam("version", TOKEN, ("version",), "The software version that made it"),
)


class _Generated(ResourceDefinition):
    written_by = CODE_SYSTEM_WRITER

    def events(self, change: Change) -> list[EventSpec]:
        return []  # they change only with the code, which says so itself


class StructureDefinitionDefinition(_Generated):
    resource_type = "StructureDefinition"
    documentation = (
        "barnebro's profile of each resource type it serves (on no-basis where it exists)"
        " and each extension the project defines"
    )
    search_params = (
        *CANONICAL,
        SearchParam("type", TOKEN, ("type",), "The type constrained (Extension for one)"),
        SearchParam("base", TOKEN, ("baseDefinition",), "The definition constrained"),
        SearchParam("derivation", TOKEN, ("derivation",), "Always constraint"),
        SearchParam("kind", TOKEN, ("kind",), "resource or complex-type"),
    )


class ValueSetDefinition(_Generated):
    resource_type = "ValueSet"
    documentation = "Every code of each project code system"
    search_params = (
        *CANONICAL,
        SearchParam("reference", TOKEN, ("compose.include.system",), "The code system"),
    )


class SearchParameterDefinition(_Generated):
    resource_type = "SearchParameter"
    documentation = "Each search parameter barnebro declares for a type"
    search_params = (
        *CANONICAL,
        SearchParam("code", TOKEN, ("code",), "The parameter as used in a search"),
        SearchParam("base", TOKEN, ("base",), "The type it searches"),
        SearchParam("type", TOKEN, ("type",), "token, string, reference or date"),
    )


class OperationDefinitionDefinition(_Generated):
    resource_type = "OperationDefinition"
    documentation = "Each operation barnebro defines"
    search_params = (
        *CANONICAL,
        SearchParam("code", TOKEN, ("code",), "The operation's name, without $"),
        SearchParam("base", TOKEN, ("resource",), "The type it acts on"),
        SearchParam("kind", TOKEN, ("kind",), "Always operation"),
    )


def conformance_type_definitions() -> list[ResourceDefinition]:
    return [
        StructureDefinitionDefinition(),
        ValueSetDefinition(),
        SearchParameterDefinition(),
        OperationDefinitionDefinition(),
    ]
