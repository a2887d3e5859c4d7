"""FHIR NDJSON (the format of FHIR Bulk Data: one resource per line), read in chunks and
put in an order in which every resource comes after those of the same import it refers to.

Reading and ordering are pure, so that the importer's only job is talking to the server.
A line that is not a JSON object with a `resourceType` is a problem of that line, never
of the file: the importer reports it and goes on.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from shared.fhir.references import reference_target
from shared.fhir.resources import ID_PATTERN


@dataclass(frozen=True)
class Line:
    """One line of an NDJSON file: where it is, and the resource or why there is none."""

    where: str
    resource: dict[str, Any] | None
    problem: str = ""

    @property
    def key(self) -> str | None:
        """`Type/id` the source system gave the resource, if it gave one."""
        if self.resource is None:
            return None
        res_id = self.resource.get("id")
        if isinstance(res_id, str) and ID_PATTERN.fullmatch(res_id):
            return f"{self.resource['resourceType']}/{res_id}"
        return None


def _line(where: str, text: bytes) -> Line:
    try:
        resource = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return Line(where, None, f"not JSON: {exc}")
    if not isinstance(resource, dict):
        return Line(where, None, "not a JSON object")
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str) or not resource_type.isalpha():
        return Line(where, None, "no resourceType")
    return Line(where, resource)


def read_chunks(path: Path, size: int) -> Iterator[list[Line]]:
    """The file's non-blank lines, `size` at a time (a million-line file is never held
    whole)."""
    chunk: list[Line] = []
    with path.open("rb") as lines:
        for number, text in enumerate(lines, start=1):
            if not text.strip():
                continue
            chunk.append(_line(f"{path.name}:{number}", text))
            if len(chunk) >= size:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


def references(node: Any) -> set[str]:
    """Every literal reference in a resource, as `Type/id` (versions dropped)."""
    found: set[str] = set()
    if isinstance(node, dict):
        for name, value in node.items():
            if name == "reference" and isinstance(value, str):
                target = reference_target(value)
                if target is not None:
                    found.add("/".join(target))
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
                target = reference_target(value)
                value = ids.get("/".join(target), value) if target else value
                rewritten[name] = value
            else:
                rewritten[name] = rewrite(value, ids)
        return rewritten
    if isinstance(node, list):
        return [rewrite(item, ids) for item in node]
    return node


@dataclass
class Ordered:
    """A chunk in the order it can be written: `levels[n]` refers only to resources of
    earlier levels, of earlier chunks, or outside the import; `cyclic` cannot be ordered."""

    levels: list[list[Line]] = field(default_factory=list)
    cyclic: list[Line] = field(default_factory=list)


def in_dependency_order(chunk: list[Line]) -> Ordered:
    """Level the chunk's resources by their references to each other (Kahn's algorithm,
    one level per round): resources of one level can be written in parallel."""
    keyed = {line.key: line for line in chunk if line.key is not None}
    waiting: dict[int, set[str]] = {}
    for index, line in enumerate(chunk):
        own = {line.key} if line.key else set()
        waiting[index] = (references(line.resource) & keyed.keys()) - own
    ordered = Ordered()
    placed: set[str] = set()
    while waiting:
        ready = [index for index, needs in waiting.items() if needs <= placed]
        if not ready:
            ordered.cyclic = [chunk[index] for index in sorted(waiting)]
            break
        ordered.levels.append([chunk[index] for index in ready])
        for index in ready:
            del waiting[index]
            if chunk[index].key:
                placed.add(str(chunk[index].key))
    return ordered
