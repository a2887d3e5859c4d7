"""Parsing and validating FHIR R4 resources (models from fhir.resources.R4B).

Validation happens once, where a resource enters the system; afterwards the JSON is stored
and served as bytes. Validation problems are reported with the FHIRPath location of each
problem, so an integrator can find the offending element.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, time
from decimal import Decimal
from functools import lru_cache
from typing import Any

import orjson
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.resource import Resource
from pydantic import BaseModel, ValidationError

from shared.fhir.errors import FhirError, Issue, error
from shared.identifiers import lookalike_system

FHIR_JSON = "application/fhir+json; charset=utf-8"
ID_PATTERN = re.compile(r"[A-Za-z0-9\-.]{1,64}")
"""The FHIR id datatype."""


def version_number(text: str | None) -> int | None:
    """A versionId as the integer the store uses, or None if it cannot be one."""
    if text is None or not (text.isascii() and text.isdigit()) or len(text) > 9:
        return None
    return int(text)


@lru_cache(maxsize=512)
def model_class(resource_type: str) -> type[Resource] | None:
    """The R4B model of a resource type; None when it names none."""
    if not resource_type.isalpha() or not resource_type[:1].isupper():
        return None
    try:
        cls = get_fhir_model_class(resource_type)
    except (ValueError, KeyError, ImportError, AttributeError):
        return None
    if isinstance(cls, type) and issubclass(cls, Resource):
        return cls
    return None


def is_resource_type(name: str) -> bool:
    """Whether `name` is a resource type of FHIR R4."""
    return model_class(name) is not None


def parse_json(body: bytes) -> dict[str, Any]:
    """Parse a request body as a JSON object, or fail with 400."""
    if not body:
        raise error(400, "structure", "The request has no body; a FHIR resource is expected")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise error(400, "structure", f"The body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise error(400, "structure", "The body must be a JSON object (a FHIR resource)")
    check_body(data, body)
    return data


MAX_DEPTH = 64
WRAPPER_DEPTH = 3
"""The levels a batch or transaction Bundle (`entry`, its item, `resource`) or a
Parameters body (`parameter`, its item, `resource`) adds above the resources it carries."""
WRAPPERS = {"Bundle": ("batch", "transaction"), "Parameters": None}


def check_body(data: Any, body: bytes) -> None:
    """What no JSON body may carry, whatever it holds (a resource, a patch): nesting
    deeper than MAX_DEPTH, which would exhaust the recursion of whatever reads it next, and
    a NUL character, which no database stores in text. A resource sent in a batch or
    transaction, or as a parameter, may nest as deep as it may on its own."""
    limit = MAX_DEPTH + WRAPPER_DEPTH if _wraps_resources(data) else MAX_DEPTH
    if height(data) > limit:
        raise error(400, "too-costly", f"The body is nested deeper than {MAX_DEPTH} levels")
    if b"\\u0000" in body:
        raise error(400, "invalid", "The body contains a NUL character (\\u0000)")


def _wraps_resources(data: Any) -> bool:
    resource_type = data.get("resourceType") if isinstance(data, dict) else None
    if not isinstance(resource_type, str) or resource_type not in WRAPPERS:
        return False
    types = WRAPPERS[resource_type]
    return types is None or data.get("type") in types


def height(data: Any) -> int:
    """How many levels JSON nests (a scalar is one; counted without recursion)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(node, dict):
            stack.extend((child, depth + 1) for child in node.values())
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node)
    return deepest


def fhirpath_of(resource_type: str, location: tuple[int | str, ...]) -> str:
    """Turn a pydantic error location into a FHIRPath expression."""
    path = resource_type
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part != "__root__":
            path += f".{part}"
    return path


def validation_issues(resource_type: str, exc: ValidationError) -> list[Issue]:
    issues = []
    for problem in exc.errors():
        message = str(problem["msg"])
        if problem["type"] == "extra_forbidden":
            message = "Unknown element"
        issues.append(
            Issue("invalid", message, expression=(fhirpath_of(resource_type, problem["loc"]),))
        )
    return issues


def validate_resource(data: dict[str, Any], expected_type: str | None = None) -> str:
    """Validate a resource against the R4 model; return its resource type.

    Wrong or missing resourceType is a 400; content that breaks the model is a 422 with
    one issue per problem.
    """
    resource_type = data.get("resourceType")
    if not isinstance(resource_type, str) or not resource_type:
        raise error(400, "structure", "The resource has no resourceType", "resourceType")
    if expected_type is not None and resource_type != expected_type:
        raise error(
            400,
            "invalid",
            f"resourceType is {resource_type!r} but the URL is for {expected_type!r}",
            "resourceType",
        )
    cls = model_class(resource_type)
    if cls is None:
        raise error(400, "not-supported", f"{resource_type!r} is not a FHIR R4 resource type")
    try:
        model = cls.model_validate(data)
    except ValidationError as exc:
        raise FhirError(422, validation_issues(resource_type, exc)) from exc
    except ValueError as exc:
        raise error(422, "invalid", f"Invalid {resource_type}: {exc}", resource_type) from exc
    except (TypeError, AttributeError) as exc:
        # The model's own validators assume the JSON type they check (a url that is a
        # number): the client sent a value of the wrong type, not a server fault.
        raise error(
            422,
            "structure",
            f"Invalid {resource_type}: a value has the wrong JSON type for its element",
            resource_type,
        ) from exc
    problems = list(element_mismatches(data, model, resource_type))
    problems += _contained_parties(data, resource_type)
    problems += _subsetted(data, resource_type)
    problems += list(_misspelt_systems(data, resource_type))
    if problems:
        raise FhirError(422, problems)
    return resource_type


CONTAINED_PARTIES = frozenset(
    {"Organization", "Patient", "Practitioner", "PractitionerRole", "RelatedPerson", "CareTeam"}
)
"""Who a record names decides who sees it and who may act on it, so a party is named by
reference to its registered record, never as a contained resource the client invents (a
contained one would escape every check made of the registered organisation or person)."""


SUBSETTED_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"


def _subsetted(data: dict[str, Any], resource_type: str) -> list[Issue]:
    """A resource tagged SUBSETTED is a part of one (`_summary`, `_elements`, a look-up):
    written back, it would silently drop all the rest (FHIR R4 search.html#summary). Any
    coding that reads as the tag (whatever its system or case, in `meta.tag` or
    `meta.security`) is refused: stored, it would mark the whole resource as a part."""
    meta = data.get("meta") or {}
    where = [
        f"{resource_type}.meta.{element}"
        for element in ("tag", "security")
        if any(
            isinstance(coding, dict) and str(coding.get("code") or "").casefold() == "subsetted"
            for coding in meta.get(element) or []
        )
    ]
    if not where:
        return []
    return [
        Issue(
            "business-rule",
            f"This {resource_type} is tagged SUBSETTED: it is a part of the resource (from"
            " _summary, _elements or a look-up), and writing it would drop the rest. Read the"
            " whole resource and send that",
            expression=tuple(where),
        )
    ]


def _contained_parties(data: dict[str, Any], resource_type: str) -> list[Issue]:
    return [
        Issue(
            "business-rule",
            f"A contained {item.get('resourceType')} cannot name a party: reference the"
            " registered one instead",
            expression=(f"{resource_type}.contained[{index}]",),
        )
        for index, item in enumerate(data.get("contained") or [])
        if isinstance(item, dict) and item.get("resourceType") in CONTAINED_PARTIES
    ]


@lru_cache(maxsize=2048)
def _json_names(cls: type[BaseModel]) -> dict[str, str]:
    """JSON element name → attribute name of a model (`class` → `class_fhir`)."""
    return {(field.alias or name): name for name, field in cls.model_fields.items()}


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float | Decimal):
        return "number"
    if isinstance(value, str | bytes | date | time):  # datetime is a date; base64Binary bytes
        return "string"
    return "array" if isinstance(value, list) else "object"


@lru_cache(maxsize=2048)
def _bound_codes(cls: type[BaseModel]) -> dict[str, tuple[str, ...]]:
    """JSON element name → its codes, for each `code` element of a model whose required
    binding the model lists in full (`enum_values`; a list ending in `+` is partial and
    is not checked)."""
    bound: dict[str, tuple[str, ...]] = {}
    for name, field in cls.model_fields.items():
        extra = field.json_schema_extra
        codes = extra.get("enum_values") if isinstance(extra, dict) else None
        if isinstance(codes, list) and codes and "+" not in codes:
            bound[field.alias or name] = tuple(str(code) for code in codes)
    return bound


def element_mismatches(given: Any, parsed: Any, path: str) -> Iterator[Issue]:
    """What the model accepts but FHIR does not, walking the validated model alongside the
    client's JSON:
    - a primitive whose JSON type is wrong although the model coerced it (a boolean sent
      as "true", a date sent as a number): FHIR JSON requires the exact type, and storing
      the coerced value would silently change what the client sent;
    - a code outside its element's required binding (`CarePlan.status` "paused"): every
      rule that reads the element would meet a value it does not know."""
    if isinstance(given, dict) and isinstance(parsed, BaseModel):
        names = _json_names(type(parsed))
        bound = _bound_codes(type(parsed))
        for key, value in given.items():
            if key in bound:
                yield from _unknown_codes(value, bound[key], f"{path}.{key}")
            attribute = names.get(key)
            if attribute is not None:
                child = getattr(parsed, attribute, None)
                if child is not None:
                    yield from element_mismatches(value, child, f"{path}.{key}")
    elif isinstance(given, list) and isinstance(parsed, list):
        for index, (value, other) in enumerate(zip(given, parsed, strict=False)):
            yield from element_mismatches(value, other, f"{path}[{index}]")
    elif _json_kind(given) != _json_kind(parsed):
        yield Issue(
            "invalid",
            f"Expected a JSON {_json_kind(parsed)}, got {_json_kind(given)}",
            expression=(path,),
        )


def _unknown_codes(value: Any, codes: tuple[str, ...], path: str) -> Iterator[Issue]:
    listed = value if isinstance(value, list) else [value]
    for index, code in enumerate(listed):
        if isinstance(code, str) and code not in codes:
            where = f"{path}[{index}]" if isinstance(value, list) else path
            yield Issue(
                "code-invalid",
                f"{where}: {code!r} is not one of the codes its required binding allows:"
                f" {' | '.join(codes)}",
                expression=(where,),
            )


def _misspelt_systems(value: Any, path: str) -> Iterator[Issue]:
    """Every `system` (an identifier's, a reference's identifier's) that misspells a
    Norwegian identifier system: what it names would escape the rules for its real one."""
    if isinstance(value, dict):
        system = value.get("system")
        if isinstance(system, str) and (exact := lookalike_system(system)) is not None:
            yield Issue(
                "value",
                f"Identifier system {system!r} is written {exact}",
                expression=(f"{path}.system",),
            )
        for key, item in value.items():
            if key != "resourceType":
                yield from _misspelt_systems(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _misspelt_systems(item, f"{path}[{index}]")
