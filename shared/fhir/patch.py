"""JSON Patch (RFC 6902) for `PATCH /fhir/{type}/{id}`: reading the patch document and
applying it to a resource as the caller sees it (a FHIRPath Patch is turned into JSON
Patch operations, `shared.fhir.fhirpath_patch`).

What is written afterwards is decided by the update path every PUT takes
(`shared.fhir.writes.patch`); this module only turns (resource, patch) into the resource a
client would have sent with PUT. A patch document that is not one is a 400; a patch that
does not apply to the resource (a `test` that fails, a path that is not there) is a 422,
as FHIR asks for a patch that cannot be processed; a patch that changes what the server
keeps (`id`, `resourceType`, `meta.versionId`, `meta.lastUpdated`) is a 400.

A patch is applied operation by operation within a budget, so that a small one cannot
make a large document (`copy` doubles what it copies each time): what copy and move take
may together be a quarter of a request body (`BARNEBRO_MAX_BODY_BYTES`), no operation may
nest the resource deeper than a body may be nested, and the patched resource may be no
larger than a body (as no stored resource may be, `shared.store.stored.too_large`). Each
limit is checked before the operation that would pass it (413 or 400 `too-costly`). The
errors are this module's own words: jsonpatch's texts are Python reprs.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import jsonpatch
import jsonpointer
import orjson

from shared.fhir.errors import FhirError, error
from shared.fhir.fhirpath_patch import as_json_operation, parse_fhirpath_patch
from shared.fhir.resources import MAX_DEPTH, check_body, height

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
Step = Callable[[Any], dict[str, Any] | None]
"""One operation of a patch: given the document as patched so far, the JSON Patch
operation to apply to it (None for none)."""
MISSING = object()
COPY_SHARE = 4
"""What copy and move take may together be 1/COPY_SHARE of the body limit: it bounds the
work of the worst patch (deep copies cost far more than reading the same bytes) to about
that of reading the largest body."""


def parse_json_patch(body: bytes) -> list[dict[str, Any]]:
    """The patch document, checked operation by operation (400 naming the first wrong
    one)."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise error(400, "invalid", f"The JSON Patch is not valid JSON: {exc}") from exc
    check_body(document, body)
    if not isinstance(document, list) or not document:
        raise error(400, "invalid", "A JSON Patch is a non-empty JSON array of operations")
    if len(document) > MAX_OPERATIONS:
        raise error(400, "too-costly", f"A JSON Patch has at most {MAX_OPERATIONS} operations")
    for index, operation in enumerate(document):
        _check_operation(index, operation)
    return document


def _check_operation(index: int, operation: Any) -> None:
    where = f"JSON Patch operation {index}"
    if not isinstance(operation, dict):
        raise error(400, "invalid", f"{where} is not an object")
    op = operation.get("op")
    if not isinstance(op, str) or op not in OPERATIONS:
        raise error(
            400, "invalid", f"{where}: op {_shown(op)} is not one of {', '.join(OPERATIONS)}"
        )
    for member in OPERATIONS[op]:
        if member not in operation:
            raise error(400, "invalid", f'{where} ({op}) needs "{member}"')
        if member in ("path", "from"):
            pointer = operation[member]
            if not isinstance(pointer, str) or not _is_pointer(pointer):
                message = f"{where}: {member} {_shown(pointer)} is no JSON Pointer"
                raise error(400, "invalid", message)


def _is_pointer(text: str) -> bool:
    try:
        jsonpointer.JsonPointer(text)
    except jsonpointer.JsonPointerException:
        return False
    return True


def _shown(value: Any) -> str:
    """A value of the caller's as JSON in a message (cut short: it is for recognising)."""
    try:
        text = orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        text = "(a value)"
    return text if len(text) <= 60 else f"{text[:57]}..."


def patcher(
    resource_type: str, body: bytes, fhirpath: bool, limit: int
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The patch in `body` (a FHIRPath Patch when `fhirpath`, else a JSON Patch), checked
    now (400 for one that is not a patch), as the function that applies it within the
    budget of a body of at most `limit` bytes."""
    steps: list[Step]
    if fhirpath:
        operations = parse_fhirpath_patch(resource_type, body, MAX_OPERATIONS)
        steps = [partial(as_json_operation, op) for op in operations]
    else:
        steps = [partial(_given, op) for op in parse_json_patch(body)]
    return lambda resource: apply_patch(resource, steps, limit)


def _given(operation: dict[str, Any], document: Any) -> dict[str, Any]:
    return operation


def apply_patch(resource: dict[str, Any], steps: Sequence[Step], limit: int) -> dict[str, Any]:
    """`resource` with the patch applied, operation by operation within the budget (the
    argument is left as it is)."""
    document: Any = copy.deepcopy(resource)
    budget = limit // COPY_SHARE
    for index, step in enumerate(steps):
        operation = step(document)
        if operation is None:
            continue
        budget -= _charge(document, operation, index, budget)
        try:
            document = jsonpatch.apply_patch(document, [operation], in_place=True)
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
            raise _not_applied(document, operation, index, exc) from exc
        except (TypeError, ValueError, KeyError, IndexError) as exc:
            raise _not_applied(document, operation, index, exc) from exc
    if not isinstance(document, dict):
        raise error(422, "processing", "The JSON Patch does not leave a resource")
    if len(orjson.dumps(document)) > limit:
        raise error(
            413,
            "too-costly",
            f"The patched resource would be over {limit} bytes, the most a body may have",
        )
    for path in SERVER_KEPT:
        if _at(document, path) != _at(resource, path) and not (
            path[0] == "meta" and _at(document, path) is None
        ):
            raise error(
                400,
                "invalid",
                f"A patch may not change {'.'.join(path)}: the server keeps it",
                ".".join(path),
            )
    return document


def _charge(document: Any, operation: dict[str, Any], index: int, budget: int) -> int:
    """The bytes the operation takes from the budget of copy and move (refused when over
    what is left), once it is checked not to nest the document deeper than a body may."""
    op = operation["op"]
    if op in ("add", "replace"):
        value, charged = operation["value"], False  # in the body: bounded with it
    elif op in ("copy", "move"):
        value, charged = _resolved(document, operation["from"]), True
        if value is MISSING:
            return 0  # the operation fails, and says so
    else:
        return 0
    size = len(orjson.dumps(value)) if charged else 0
    if size > budget:
        raise error(
            413,
            "too-costly",
            f"JSON Patch operation {index} ({op}) is too costly: what a patch copies and moves"
            f" may together be at most 1/{COPY_SHARE} of the largest request body",
        )
    if operation["path"].count("/") + height(value) > MAX_DEPTH:
        raise error(
            400,
            "too-costly",
            f"JSON Patch operation {index} ({op}) would nest the resource deeper than"
            f" {MAX_DEPTH} levels",
        )
    return size


def _resolved(document: Any, pointer: str) -> Any:
    """The value at `pointer`, or MISSING (also for `-`, the place past a list's end)."""
    try:
        value = jsonpointer.resolve_pointer(document, pointer, MISSING)
    except (jsonpointer.JsonPointerException, TypeError, ValueError, KeyError, IndexError):
        return MISSING
    return MISSING if isinstance(value, jsonpointer.EndOfList) else value


def _not_applied(document: Any, operation: dict[str, Any], index: int, exc: Exception) -> FhirError:
    """Our words for why an operation does not apply (never jsonpatch's, which show the
    values as Python reprs)."""
    op, path = operation["op"], operation["path"]
    where = f"JSON Patch operation {index} ({op})"
    place = path or 'the root ("")'
    if isinstance(exc, jsonpatch.JsonPatchTestFailed):
        if _resolved(document, path) is MISSING:
            reason = f"JSON Patch test failed: nothing is at {place} ({where})"
        else:
            reason = f"JSON Patch test failed at {place}: the value is not the tested one ({where})"
    elif op in ("copy", "move") and _resolved(document, operation["from"]) is MISSING:
        reason = f"{where} does not apply: nothing is at from {operation['from'] or '(root)'}"
    elif op == "move" and path.startswith(f"{operation['from']}/"):
        reason = f"{where} does not apply: a value cannot be moved into itself"
    elif op == "remove" and not path:
        reason = f"{where} does not apply: the whole resource cannot be removed"
    elif op in ("remove", "replace") or _resolved(document, path.rpartition("/")[0]) is MISSING:
        reason = f"{where} does not apply: nothing is at {place}"
    else:
        reason = f"{where} does not apply: {place} is no place in the resource to put a value"
    return error(422, "processing", reason)


def _at(resource: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = resource
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value
