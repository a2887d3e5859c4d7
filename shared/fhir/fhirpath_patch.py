"""FHIRPath Patch (a Parameters resource of `operation`s), for the simple cases, turned into
the JSON Patch that makes the same change, so that both kinds of patch are applied alike
(`shared.fhir.patch`).

Supported: the operation types add, insert, delete, replace and move, on paths that are
plain element paths from the resource (`Patient.name[0].given`: element names and
zero-based indexes; no functions, filters or choice elements), with a `value[x]` value (a
primitive or a data type). Anything else, such as `where()` in a path or a value given as
parts, is a 400 that says so, as is an operation whose parts repeat or do not belong to
its type (a `value` on a delete): what it asks would otherwise be a guess. A path is
checked against the R4B model before anything is read; whether it is there is the
resource's matter (a 422 when it does not apply).
"""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import BaseModel

from shared.fhir.errors import error
from shared.fhir.parameters import carried
from shared.fhir.resources import check_body, model_class
from shared.fhir.subsets import model_of

SEGMENT = re.compile(r"([A-Za-z][A-Za-z0-9]*)(?:\[(\d+)\])?")
TYPES = ("add", "insert", "delete", "replace", "move")
NEEDS = {
    "add": ("path", "name", "value"),
    "insert": ("path", "value", "index"),
    "delete": ("path",),
    "replace": ("path", "value"),
    "move": ("path", "source", "destination"),
}
UNSUPPORTED = (
    "FHIRPath Patch is supported for add, insert, delete, replace and move on plain element"
    " paths (Type.element[index].element) with a value[x]; use a JSON Patch"
    " (application/json-patch+json) for anything else"
)


@dataclass(frozen=True)
class Operation:
    type: str
    pointer: str
    """The JSON Pointer of `path`."""
    name: str | None = None
    is_list: bool = False
    """For add: whether `name` repeats."""
    value: Any = None
    index: int | None = None
    source: int | None = None
    destination: int | None = None


def parse_fhirpath_patch(resource_type: str, body: bytes, most: int) -> list[Operation]:
    """The operations of the patch in `body` (at most `most`), checked against the model."""
    try:
        parameters = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise error(400, "invalid", f"The FHIRPath Patch is not valid JSON: {exc}") from exc
    check_body(parameters, body)
    if not isinstance(parameters, dict) or parameters.get("resourceType") != "Parameters":
        raise error(
            400,
            "invalid",
            "A FHIRPath Patch is a Parameters resource; a JSON Patch is sent as"
            " application/json-patch+json. A part of the resource to merge (a merge patch, as"
            " fhirpy's patch() sends) is not supported",
        )
    operations = parameters.get("parameter")
    if not isinstance(operations, list) or not operations:
        raise error(400, "invalid", "A FHIRPath Patch has at least one operation parameter")
    if len(operations) > most:
        raise error(400, "too-costly", f"A FHIRPath Patch has at most {most} operations")
    return [_operation(resource_type, index, p) for index, p in enumerate(operations)]


def _operation(resource_type: str, index: int, parameter: Any) -> Operation:
    where = f"Parameters.parameter[{index}]"
    if not isinstance(parameter, dict) or parameter.get("name") != "operation":
        raise error(400, "invalid", f"{where} is not an operation", where)
    if len(carried(parameter)) != 1:
        raise error(
            400, "invalid", f"{where}: an operation carries its parts and nothing else", where
        )
    named = _parts(parameter.get("part"), where)
    kind = named.get("type", {}).get("valueCode")
    if not isinstance(kind, str):
        raise error(400, "invalid", f"{where} names no type (a part type with a valueCode)", where)
    if kind not in TYPES:
        raise error(400, "not-supported", f"{where}: type {kind!r}: {UNSUPPORTED}", where)
    for needed in NEEDS[kind]:
        if needed not in named:
            raise error(400, "invalid", f"{where}: {kind} needs the part {needed!r}", where)
    for extra in sorted(set(named) - {"type", *NEEDS[kind]}):
        raise error(400, "invalid", f"{where}: {kind} has no part {extra!r}", where)
    path = named["path"].get("valueString")
    segments = _segments(resource_type, path, where)
    model, is_list = _walk(resource_type, segments, where)
    pointer = "".join(f"/{n}" + (f"/{i}" if i is not None else "") for n, i in segments)
    name = named.get("name", {}).get("valueString") if kind == "add" else None
    if kind == "add":
        if not isinstance(name, str) or not SEGMENT.fullmatch(name) or model is None:
            raise error(400, "invalid", f"{where}: add names an element of {path}", where)
        _, is_list = _walk_field(model, name, f"{path}.{name}", where)
    if kind in ("insert", "move") and not is_list:
        raise error(400, "invalid", f"{where}: {kind} needs a path to a repeating element", where)
    return Operation(
        kind,
        pointer,
        name=name,
        is_list=is_list,
        value=_value(named.get("value"), where),
        index=_index(named, "index", where),
        source=_index(named, "source", where),
        destination=_index(named, "destination", where),
    )


def _segments(resource_type: str, path: Any, where: str) -> list[tuple[str, int | None]]:
    if not isinstance(path, str) or path.split(".")[0] != resource_type:
        raise error(400, "invalid", f"{where}: the path starts with {resource_type}", where)
    segments = []
    for text in path.split(".")[1:]:
        found = SEGMENT.fullmatch(text)
        if found is None:
            raise error(400, "not-supported", f"{where}: path {path!r}: {UNSUPPORTED}", where)
        segments.append((found.group(1), int(found.group(2)) if found.group(2) else None))
    return segments


def _walk(
    resource_type: str, segments: list[tuple[str, int | None]], where: str
) -> tuple[type[BaseModel] | None, bool]:
    """The model the path ends in (None for a primitive) and whether its last step repeats
    (and names no index)."""
    model: type[BaseModel] | None = model_class(resource_type)
    repeats = False
    path = resource_type
    for name, index in segments:
        path += f".{name}"
        if model is None:
            raise error(400, "invalid", f"{where}: {path} is inside a primitive", where)
        model, repeats = _walk_field(model, name, path, where)
        if index is not None and not repeats:
            raise error(400, "invalid", f"{where}: {path} does not repeat", where)
        repeats = repeats and index is None
    return model, repeats


def _walk_field(
    model: type[BaseModel], name: str, path: str, where: str
) -> tuple[type[BaseModel] | None, bool]:
    fields = {field.alias or key: field for key, field in model.model_fields.items()}
    field = fields.get(name)
    if field is None:
        raise error(400, "invalid", f"{where}: {path} is not an element", where)
    repeats = any(typing.get_origin(arg) is list for arg in typing.get_args(field.annotation))
    return model_of(field.annotation), repeats or typing.get_origin(field.annotation) is list


def _parts(parts: Any, where: str) -> dict[str, dict[str, Any]]:
    """An operation's parts by name: each once, since a part given twice would leave the
    operation to whichever is read (a `type` of replace and one of delete)."""
    if not isinstance(parts, list) or not all(
        isinstance(p, dict) and isinstance(p.get("name"), str) for p in parts
    ):
        raise error(400, "invalid", f"{where}: an operation is a list of named parts", where)
    named: dict[str, dict[str, Any]] = {}
    for part in parts:
        if part["name"] in named:
            raise error(400, "invalid", f"{where}: the part {part['name']!r} is given twice", where)
        if len(carried(part)) != 1:
            raise error(
                400, "invalid", f"{where}: the part {part['name']!r} carries one value[x]", where
            )
        named[part["name"]] = part
    return named


def _value(part: Any, where: str) -> Any:
    if part is None:
        return None
    values = [v for k, v in part.items() if k.startswith("value")]
    if "part" in part or len(values) != 1:
        raise error(400, "not-supported", f"{where}: the value must be one value[x]; {UNSUPPORTED}")
    return values[0]


def _index(named: dict[Any, Any], name: str, where: str) -> int | None:
    if name not in named:
        return None
    value = named[name].get("valueInteger")
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise error(400, "invalid", f"{where}: {name} is a valueInteger of 0 or more", where)
    return value


def as_json_operation(op: Operation, document: Any) -> dict[str, Any] | None:
    """The JSON Patch operation that does what `op` does to `document`, the resource as
    the operations before it left it (whether an element that repeats is there yet
    decides how an add is written); None for a delete of what is not there."""
    if op.type == "add":
        target = f"{op.pointer}/{op.name}"
        if op.is_list and _present(document, target):
            return {"op": "add", "path": f"{target}/-", "value": op.value}
        if op.is_list:
            return {"op": "add", "path": target, "value": [op.value]}
        return {"op": "add", "path": target, "value": op.value}
    if op.type == "insert":
        if op.index == 0 and not _present(document, op.pointer):
            return {"op": "add", "path": op.pointer, "value": [op.value]}
        return {"op": "add", "path": f"{op.pointer}/{op.index}", "value": op.value}
    if op.type == "delete":  # deleting what is not there: no change
        return {"op": "remove", "path": op.pointer} if _present(document, op.pointer) else None
    if op.type == "replace":
        return {"op": "replace", "path": op.pointer, "value": op.value}
    return {"op": "move", "from": f"{op.pointer}/{op.source}",
            "path": f"{op.pointer}/{op.destination}"}  # fmt: skip


def _present(document: Any, pointer: str) -> bool:
    """Whether something other than null is at `pointer`."""
    node: Any = document
    try:
        for key in pointer.strip("/").split("/"):
            node = node[int(key)] if isinstance(node, list) else node[key]
    except (KeyError, IndexError, ValueError, TypeError):
        return False
    return node is not None
