"""FHIR NDJSON (the format of FHIR Bulk Data: one resource per line), read in chunks and
put in an order in which every resource comes after those of the same import it refers to.

Reading and ordering are pure, so that the importer's only job is talking to the server.
A line that is not a resource the import can write (not a JSON object with a
`resourceType`, an `id` that is not a FHIR id, longer than the server takes) is a problem
of that line, never of the file: the importer reports it and goes on.

Only relative references (`Type/id`, `Type/id/_history/n`) name resources of the import:
an absolute one names a resource on another server, whatever its id, and is left alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from shared.fhir.resources import ID_PATTERN

MAX_LINE_BYTES = 900_000
"""The gateway's default body limit (BARNEBRO_MAX_BODY_BYTES): a longer resource cannot
be written, so it is not read whole either."""
RESOURCE_KEY = re.compile(r"([A-Z][A-Za-z]{1,63})/([A-Za-z0-9\-.]{1,64})")
"""`Type/id`: how the import names a resource, the source's or the server's."""
RELATIVE_REFERENCE = re.compile(RESOURCE_KEY.pattern + r"(?:/_history/[^/]+)?")


@dataclass(frozen=True)
class Line:
    """One line of an NDJSON file: where it is, and the resource or why there is none."""

    where: str
    resource: dict[str, Any] | None
    problem: str = ""
    position: tuple[int, int] = (0, 0)
    """(file, line), for reporting in the files' order."""

    @property
    def key(self) -> str | None:
        """`Type/id` the source system gave the resource, if it gave one."""
        if self.resource is None or "id" not in self.resource:
            return None
        return f"{self.resource['resourceType']}/{self.resource['id']}"


def _parsed(text: bytes) -> tuple[dict[str, Any] | None, str]:
    try:
        resource = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return None, f"not JSON ({str(exc).split(':')[0]})"
    if not isinstance(resource, dict):
        return None, "not a JSON object"
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str) or not resource_type.isalpha():
        return None, "no resourceType"
    res_id = resource.get("id", "")
    if "id" in resource and not (isinstance(res_id, str) and ID_PATTERN.fullmatch(res_id)):
        shown = orjson.dumps(res_id).decode()[:80]
        return None, f"its id {shown} is not a FHIR id (1-64 of A-Z a-z 0-9 - .)"
    return resource, ""


def _lines(file: BinaryIO) -> Iterator[tuple[int, bytes | None]]:
    """(line number, text), None as the text of a line longer than MAX_LINE_BYTES, whose
    rest is skipped unread."""
    number = 0
    while text := file.readline(MAX_LINE_BYTES + 1):
        number += 1
        if len(text) > MAX_LINE_BYTES and not text.endswith(b"\n"):
            while (rest := file.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                pass
            yield number, None
        else:
            yield number, text


def read_chunks(path: Path, size: int, file_index: int = 0) -> Iterator[list[Line]]:
    """The file's non-blank lines, `size` at a time (a million-line file is never held
    whole)."""
    chunk: list[Line] = []
    with path.open("rb") as file:
        for number, text in _lines(file):
            where, position = f"{path.name}:{number}", (file_index, number)
            if text is None:
                problem = f"longer than {MAX_LINE_BYTES} bytes, more than one request takes"
                chunk.append(Line(where, None, problem, position))
            elif text.strip():
                resource, problem = _parsed(text)
                chunk.append(Line(where, resource, problem, position))
            if len(chunk) >= size:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


def _relative(reference: str) -> str | None:
    match = RELATIVE_REFERENCE.fullmatch(reference)
    return f"{match[1]}/{match[2]}" if match else None


def references(node: Any) -> set[str]:
    """Every relative reference in a resource, as `Type/id` (versions dropped)."""
    found: set[str] = set()
    if isinstance(node, dict):
        for name, value in node.items():
            if name == "reference" and isinstance(value, str):
                target = _relative(value)
                if target is not None:
                    found.add(target)
            else:
                found |= references(value)
    elif isinstance(node, list):
        for item in node:
            found |= references(item)
    return found


def rewrite(node: Any, ids: dict[str, str]) -> Any:
    """The resource with its references to imported resources pointing at the ids the
    server gave them; other references are left as they are."""
    if isinstance(node, dict):
        rewritten = {}
        for name, value in node.items():
            if name == "reference" and isinstance(value, str):
                target = _relative(value)
                rewritten[name] = ids.get(target, value) if target else value
            else:
                rewritten[name] = rewrite(value, ids)
        return rewritten
    if isinstance(node, list):
        return [rewrite(item, ids) for item in node]
    return node


def keys_in(paths: list[Path]) -> set[str]:
    """Every `Type/id` the files hold: a reference to one of them that is not written yet
    when its resource is sent points forward, and is refused rather than sent unchanged."""
    found: set[str] = set()
    for index, path in enumerate(paths):
        for chunk in read_chunks(path, 10_000, index):
            found.update(line.key for line in chunk if line.key is not None)
    return found


@dataclass
class Ordered:
    """A chunk in the order it can be written: `levels[n]` refers only to resources of
    earlier levels, of earlier chunks, or outside the import; `refused` cannot be
    ordered, each with the reason."""

    levels: list[list[Line]] = field(default_factory=list)
    refused: list[tuple[Line, str]] = field(default_factory=list)


def in_dependency_order(chunk: list[Line]) -> Ordered:
    """Level the chunk's resources by their references to each other (Kahn's algorithm,
    one level per round): resources of one level can be written in parallel."""
    ordered = Ordered()
    keyed = {line.key: line for line in chunk if line.key is not None}
    waiting: dict[int, set[str]] = {}
    for index, line in enumerate(chunk):
        needs = references(line.resource) & keyed.keys()
        if line.key in needs:
            reason = "it refers to itself, and its id is not kept: the reference cannot be"
            ordered.refused.append((line, reason + " written"))
        else:
            waiting[index] = needs
    # What refers to a refused resource is refused by the importer, by name, in its level.
    placed: set[str] = {str(line.key) for line, _ in ordered.refused}
    while waiting:
        ready = [index for index, needs in waiting.items() if needs <= placed]
        if not ready:
            reason = "its references lead into a cycle among the import's resources"
            ordered.refused += [(chunk[index], reason) for index in sorted(waiting)]
            break
        ordered.levels.append([chunk[index] for index in ready])
        for index in ready:
            del waiting[index]
            if chunk[index].key:
                placed.add(str(chunk[index].key))
    return ordered
