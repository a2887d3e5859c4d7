"""JSON Patch (RFC 6902) for `PATCH /fhir/{type}/{id}`: reading the patch document and
applying it to a resource as the caller sees it (a FHIRPath Patch is turned into a JSON
Patch first, `shared.fhir.fhirpath_patch`).

What is written afterwards is decided by the update path every PUT takes
(`shared.fhir.writes.patch`); this module only turns (resource, patch) into the resource a
client would have sent with PUT. A patch document that is not one is a 400; a patch that
does not apply to the resource (a `test` that fails, a path that is not there) is a 422,
as FHIR asks for a patch that cannot be processed; a patch that changes what the server
keeps (`id`, `resourceType`, `meta.versionId`, `meta.lastUpdated`) is a 400.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import jsonpatch
import jsonpointer
import orjson

from shared.fhir.errors import error
from shared.fhir.fhirpath_patch import as_json_patch, parse_fhirpath_patch

JSON_PATCH = "application/json-patch+json"
FHIRPATH_PATCH = "fhirpath"
"""`FhirRequest.patch_format` of a FHIRPath Patch (sent as application/fhir+json)."""
OPERATIONS = {
    "add": ("path", "value"),
    "remove": ("path",),
    "replace": ("path", "value"),
    "move": ("from", "path"),
    "copy": ("from", "path"),
    "test": ("path", "value"),
}
MAX_OPERATIONS = 1000
SERVER_KEPT = (("id",), ("resourceType",), ("meta", "versionId"), ("meta", "lastUpdated"))
"""What a patch must leave as it is: the server assigns them."""


def parse_json_patch(body: bytes) -> jsonpatch.JsonPatch:
    """The patch document, checked operation by operation (400 naming the first wrong
    one)."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise error(400, "invalid", f"The JSON Patch is not valid JSON: {exc}") from exc
    if not isinstance(document, list) or not document:
        raise error(400, "invalid", "A JSON Patch is a non-empty JSON array of operations")
    if len(document) > MAX_OPERATIONS:
        raise error(400, "too-costly", f"A JSON Patch has at most {MAX_OPERATIONS} operations")
    for index, operation in enumerate(document):
        _check_operation(index, operation)
    try:
        return jsonpatch.JsonPatch(document)
    except (jsonpatch.InvalidJsonPatch, jsonpointer.JsonPointerException) as exc:
        raise error(400, "invalid", f"The JSON Patch is not valid: {exc}") from exc


def _check_operation(index: int, operation: Any) -> None:
    where = f"JSON Patch operation {index}"
    if not isinstance(operation, dict):
        raise error(400, "invalid", f"{where} is not an object")
    op = operation.get("op")
    if op not in OPERATIONS:
        raise error(400, "invalid", f"{where}: op {op!r} is not one of {', '.join(OPERATIONS)}")
    for member in OPERATIONS[op]:
        if member not in operation:
            raise error(400, "invalid", f"{where} ({op}) needs {member!r}")
        if member in ("path", "from"):
            pointer = operation[member]
            if not isinstance(pointer, str) or (pointer and not pointer.startswith("/")):
                raise error(400, "invalid", f"{where}: {member} {pointer!r} is no JSON Pointer")


def patcher(
    resource_type: str, body: bytes, fhirpath: bool
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The patch in `body` (a FHIRPath Patch when `fhirpath`, else a JSON Patch), checked
    now (400 for one that is not a patch), as the function that applies it."""
    if not fhirpath:
        operations = parse_json_patch(body)
        return lambda resource: apply_json_patch(resource, operations)
    parsed = parse_fhirpath_patch(resource_type, body)
    return lambda resource: apply_json_patch(
        resource, jsonpatch.JsonPatch(as_json_patch(resource, parsed))
    )


def apply_json_patch(resource: dict[str, Any], patch: jsonpatch.JsonPatch) -> dict[str, Any]:
    """`resource` with the patch applied (the argument is left as it is)."""
    try:
        patched = patch.apply(copy.deepcopy(resource))
    except jsonpatch.JsonPatchTestFailed as exc:
        raise error(422, "processing", f"A JSON Patch test failed: {exc}") from exc
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
        raise error(422, "processing", f"The JSON Patch does not apply: {exc}") from exc
    except (TypeError, ValueError, KeyError, IndexError) as exc:
        raise error(422, "processing", f"The JSON Patch does not apply: {exc}") from exc
    if not isinstance(patched, dict):
        raise error(422, "processing", "The JSON Patch does not leave a resource")
    for path in SERVER_KEPT:
        if _at(patched, path) != _at(resource, path) and not (
            path[0] == "meta" and _at(patched, path) is None
        ):
            raise error(
                400,
                "invalid",
                f"A patch may not change {'.'.join(path)}: the server keeps it",
                ".".join(path),
            )
    return patched


def _at(resource: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = resource
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value
