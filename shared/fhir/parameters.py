"""The input of a FHIR operation: a `Parameters` resource, read once for every operation.

Each parameter is a name with exactly one `value[x]`; anything else in the body, a
parameter without a name or value, one that carries a resource or parts beside its
value, or (when the operation says what it takes) one it does not take, is the client's
error (400), so an operation's own code sees only names and values. FHIR R4's inv-1 says
a parameter carries exactly one of a value[x], a resource or parts (`carried`): one that
carried two would leave the operation to whichever of them it read. What an operation
takes and answers is declared once (`OperationParameter`): its handler reads the names
it accepts from the declaration, and its OperationDefinition (`shared.fhir.conformance`)
lists it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from shared.fhir.errors import error
from shared.fhir.resources import parse_json, validate_resource


@dataclass(frozen=True)
class OperationParameter:
    """One parameter of an operation as its OperationDefinition states it: `type` is the
    FHIR type of its value (`string`, `code`, `date`, `Reference`, `Identifier`) or, for
    the `return` of an operation, the resource type answered."""

    name: str
    type: str
    documentation: str
    min: int = 0
    max: str = "1"
    use: Literal["in", "out"] = "in"


def accepted(declared: Sequence[OperationParameter]) -> tuple[str, ...]:
    """The names an operation takes, from its declaration."""
    return tuple(parameter.name for parameter in declared if parameter.use == "in")


def operation_parameters(
    body: bytes,
    operation: str,
    known: Collection[str] | None = None,
    *,
    declared: Sequence[OperationParameter] | None = None,
) -> dict[str, Any]:
    """Name → value of the Parameters an operation was given (`parameter_values`)."""
    return parameter_values(parse_json(body), operation, known, declared=declared)


def parameter_values(
    data: dict[str, Any],
    operation: str,
    known: Collection[str] | None = None,
    *,
    declared: Sequence[OperationParameter] | None = None,
) -> dict[str, Any]:
    """Name → value of a parsed Parameters resource that is valid R4 (no element R4 does
    not have, no value of the wrong JSON type), each of whose parameters is a name with
    one value[x]; with `declared`, only the parameters it declares, each as the type it
    declares (`valueString` for a `string`)."""
    if data.get("resourceType") != "Parameters":
        raise error(400, "invalid", f"{operation} takes a Parameters resource")
    given = data.get("parameter") or []
    if not isinstance(given, list):
        raise error(400, "invalid", f"{operation}: Parameters.parameter is a list")
    types = {p.name: f"value{p.type[:1].upper()}{p.type[1:]}" for p in declared or ()}
    if declared is not None:
        known = accepted(declared)
    found: dict[str, Any] = {}
    for parameter in given:
        name = parameter.get("name") if isinstance(parameter, dict) else None
        values = [(k, v) for k, v in parameter.items() if k.startswith("value")] if name else []
        if not isinstance(name, str) or len(values) != 1 or len(carried(parameter)) != 1:
            raise error(400, "invalid", f"Each parameter of {operation} needs a name and one value")
        if name in found:
            raise error(400, "invalid", f"{operation} takes {name} once")
        if name in types and values[0][0] != types[name]:
            raise error(400, "invalid", f"{operation} takes {name} as {types[name]}")
        found[name] = values[0][1]
    if known is not None and set(found) - set(known):
        unknown = ", ".join(sorted(set(found) - set(known)))
        takes = ", ".join(sorted(known)) or "no parameters"
        raise error(400, "invalid", f"{operation} takes {takes}; not {unknown}")
    validate_resource(data, "Parameters")  # R4's elements only, each of its JSON type
    return found


def carried(parameter: dict[str, Any]) -> list[str]:
    """What a parameter carries: its value[x], resource and part elements (inv-1: one)."""
    return [k for k in parameter if k.startswith("value") or k in ("resource", "part")]


def malformed(parameters: Any, where: str = "Parameters.parameter") -> list[str]:
    """Where (FHIRPath) a parameter, or a part of one, is not a named parameter that carries
    exactly one thing: not an object, without a name, with parts that are not a list."""
    if not isinstance(parameters, list):
        return [where]
    found: list[str] = []
    for index, parameter in enumerate(parameters):
        here = f"{where}[{index}]"
        if not isinstance(parameter, dict) or not isinstance(parameter.get("name"), str):
            found.append(here)
            continue
        if len(carried(parameter)) != 1:
            found.append(here)
        if "part" in parameter:
            found += malformed(parameter["part"], f"{here}.part")
    return found
