"""The conformance resources, generated from the code's own declarations: a profile
(StructureDefinition, constraint) per resource type from its `ResourceDefinition` and
`ProfileRules`, a StructureDefinition per extension (`shared.fhir.extensions`), a
ValueSet per code system (`shared.fhir.code_systems`), a SearchParameter per search
parameter and an OperationDefinition per operation of the project.

Nothing here is kept by hand: change a declaration and the published resources follow.
The consent service stores them at start-up and `barnebro package export` packs them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from shared.access.permissions import READING_OPERATIONS
from shared.codes import STRUCTURE_DEFINITION_BASE
from shared.fhir.code_systems import PUBLISHER, CodeSystemSource
from shared.fhir.definitions import ResourceDefinition
from shared.fhir.extensions import EXTENSIONS, ExtensionDeclaration
from shared.fhir.parameters import OperationParameter
from shared.fhir.profiles import base_definition, profile_url
from shared.fhir.search_params import SearchParam
from shared.version import software_version

CANONICAL_BASE = STRUCTURE_DEFINITION_BASE.rsplit("/", 1)[0]
OPERATION_BASE = f"{CANONICAL_BASE}/OperationDefinition/"
SEARCH_PARAMETER_BASE = f"{CANONICAL_BASE}/SearchParameter"
VALUE_SET_BASE = f"{CANONICAL_BASE}/ValueSet"
FHIR_VERSION = "4.0.1"


def _common(resource_type: str, rid: str, url: str, name: str, title: str) -> dict[str, Any]:
    return {
        "resourceType": resource_type,
        "id": rid,
        "url": url,
        "version": software_version(),
        "name": name,
        "title": title,
        "status": "active",
        "experimental": False,
        "publisher": PUBLISHER,
    }


def _pascal(text: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in text.replace("_", "-").split("-"))


def value_set_url(system: str) -> str:
    """The ValueSet holding every code of the project code system `system`."""
    return f"{VALUE_SET_BASE}/{system.rstrip('/').rsplit('/', 1)[-1]}"


def extension_definition(declaration: ExtensionDeclaration) -> dict[str, Any]:
    """The StructureDefinition of one extension: its contexts and its value or parts."""
    name = _pascal(declaration.slug)
    root = {"id": "Extension", "path": "Extension", "short": declaration.title}
    elements: list[dict[str, Any]] = [root]
    if declaration.value:
        elements += [
            {"id": "Extension.extension", "path": "Extension.extension", "max": "0"},
            {"id": "Extension.url", "path": "Extension.url", "fixedUri": declaration.url},
            {
                "id": "Extension.value[x]",
                "path": "Extension.value[x]",
                "min": 1,
                "type": [{"code": declaration.value}],
            },
        ]
    else:
        elements.append({"id": "Extension.extension", "path": "Extension.extension", "min": 1})
        for part, kind in declaration.parts:
            slice_id = f"Extension.extension:{part}"
            elements += [
                {"id": slice_id, "path": "Extension.extension", "sliceName": part},
                {"id": f"{slice_id}.url", "path": "Extension.extension.url", "fixedUri": part},
                {
                    "id": f"{slice_id}.value[x]",
                    "path": "Extension.extension.value[x]",
                    "type": [{"code": kind}],
                },
            ]
        elements += [
            {"id": "Extension.url", "path": "Extension.url", "fixedUri": declaration.url},
            {"id": "Extension.value[x]", "path": "Extension.value[x]", "max": "0"},
        ]
    return {
        **_common(
            "StructureDefinition", declaration.slug, declaration.url, name, declaration.title
        ),
        "description": declaration.title,
        "fhirVersion": FHIR_VERSION,
        "kind": "complex-type",
        "abstract": False,
        "context": [{"type": "element", "expression": where} for where in declaration.contexts],
        "type": "Extension",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Extension",
        "derivation": "constraint",
        "differential": {"element": elements},
    }


def extensions_of(resource_type: str) -> list[ExtensionDeclaration]:
    """The project extensions that may stand on `resource_type` or inside it."""
    return [
        declaration
        for declaration in EXTENSIONS
        if any(
            where == resource_type or where.startswith(f"{resource_type}.")
            for where in declaration.contexts
        )
    ]


def profile_definition(definition: ResourceDefinition) -> dict[str, Any]:
    """The profile of one resource type as barnebro uses it (a differential on its base)."""
    kind = definition.resource_type
    rules = definition.profile
    elements: list[dict[str, Any]] = [
        {"id": kind, "path": kind, "short": definition.documentation or kind}
    ]
    constrained: dict[str, dict[str, Any]] = {}

    def element(path: str) -> dict[str, Any]:
        if path not in constrained:
            constrained[path] = {"id": f"{kind}.{path}", "path": f"{kind}.{path}"}
            elements.append(constrained[path])
        return constrained[path]

    for path in rules.required:
        element(path)["min"] = 1
    for path, code in rules.fixed:
        element(path).update(min=1, fixedCode=code)
    for path, system in rules.bindings:
        binding = {"strength": "required", "valueSet": value_set_url(system)}
        element(path)["binding"] = binding
    if rules.identifier_systems:
        elements.append(
            {
                "id": f"{kind}.identifier.system",
                "path": f"{kind}.identifier.system",
                "short": "Systems barnebro keys on: " + ", ".join(rules.identifier_systems),
            }
        )
    for declaration in extensions_of(kind):
        where = next(w for w in declaration.contexts if w.split(".")[0] == kind)
        slug = declaration.slug
        elements.append(
            {
                "id": f"{where}.extension:{slug}",
                "path": f"{where}.extension",
                "sliceName": slug,
                "type": [{"code": "Extension", "profile": [declaration.url]}],
            }
        )
    return {
        **_common(
            "StructureDefinition",
            f"barnebro-{kind}",
            profile_url(kind),
            f"Barnebro{kind}",
            f"{kind} in barnebro",
        ),
        "description": definition.documentation or f"{kind} as barnebro stores it",
        "fhirVersion": FHIR_VERSION,
        "kind": "resource",
        "abstract": False,
        "type": kind,
        "baseDefinition": base_definition(kind),
        "derivation": "constraint",
        "differential": {"element": elements},
    }


def value_set(source: CodeSystemSource) -> dict[str, Any]:
    """Every code of a project code system, as a ValueSet."""
    return {
        **_common("ValueSet", source.id, value_set_url(source.url), source.name, source.title),
        "description": f"All codes of {source.url}",
        "immutable": False,
        "compose": {"include": [{"system": source.url}]},
    }


def search_parameter_url(resource_type: str, param: SearchParam) -> str:
    return f"{SEARCH_PARAMETER_BASE}/{resource_type}-{param.name}"


def _expression(resource_type: str, param: SearchParam) -> str | None:
    if param.paths:
        return " | ".join(f"{resource_type}.{path}" for path in param.paths)
    return None


def search_parameter(resource_type: str, param: SearchParam) -> dict[str, Any]:
    """One search parameter of a type, with its FHIRPath where it reads element paths
    (one computed in code, from an extension say, says so in its description)."""
    resource = {
        **_common(
            "SearchParameter",
            f"{resource_type}-{param.name.strip('_')}",
            search_parameter_url(resource_type, param),
            f"{resource_type}{_pascal(param.name)}",
            f"{resource_type} {param.name}",
        ),
        "description": param.documentation or param.name,
        "code": param.name,
        "base": [resource_type],
        "type": str(param.type),
    }
    del resource["title"]  # R4's SearchParameter has none
    expression = _expression(resource_type, param)
    if expression is not None:
        resource["expression"] = expression
    else:
        resource["description"] += " (computed by barnebro, not a plain element path)"
    if param.targets:
        resource["target"] = list(param.targets)
    return resource


@dataclass(frozen=True)
class OperationSource:
    resource_type: str
    name: str
    url: str
    parameters: tuple[OperationParameter, ...] = ()


def own_operations(definitions: Iterable[ResourceDefinition]) -> list[OperationSource]:
    """The operations the project defines (not those of other guides, like the
    subscriptions backport's), from each type's declaration."""
    return [
        OperationSource(
            definition.resource_type, name, url, definition.operation_parameters.get(name, ())
        )
        for definition in definitions
        for name, url in definition.operations
        if url.startswith(OPERATION_BASE)
    ]


def operation_definition(source: OperationSource) -> dict[str, Any]:
    """One operation: on an instance of its type (each handler acts on `Type/<id>`), with
    the parameters it takes and what it answers."""
    reads = (source.resource_type, f"${source.name}") in READING_OPERATIONS
    return {
        **_common(
            "OperationDefinition",
            source.name,
            source.url,
            _pascal(source.name),
            f"${source.name} on {source.resource_type}",
        ),
        "kind": "operation",
        "code": source.name,
        "affectsState": not reads,
        "resource": [source.resource_type],
        "system": False,
        "type": False,
        "instance": True,
        "parameter": [
            {
                "name": parameter.name,
                "use": parameter.use,
                "min": parameter.min,
                "max": parameter.max,
                "documentation": parameter.documentation,
                "type": parameter.type,
            }
            for parameter in source.parameters
        ],
    }


@dataclass(frozen=True)
class ConformanceResources:
    """Every conformance resource of the project, by resource type."""

    by_type: dict[str, list[dict[str, Any]]]

    def all(self) -> list[dict[str, Any]]:
        return [resource for resources in self.by_type.values() for resource in resources]


def conformance_resources(
    definitions: Sequence[ResourceDefinition], code_systems: Sequence[CodeSystemSource]
) -> ConformanceResources:
    """The profiles, extensions, value sets, search parameters and operation definitions
    of `definitions` and `code_systems`."""
    return ConformanceResources(
        {
            "StructureDefinition": [
                *(profile_definition(definition) for definition in definitions),
                *(extension_definition(declaration) for declaration in EXTENSIONS),
            ],
            "ValueSet": [value_set(source) for source in code_systems],
            "SearchParameter": [
                search_parameter(definition.resource_type, param)
                for definition in definitions
                for param in definition.search_params
            ],
            "OperationDefinition": [
                operation_definition(source) for source in own_operations(definitions)
            ],
        }
    )
