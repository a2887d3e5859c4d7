"""A note names only its real author: no writer credits its words to someone else.

An Annotation's `authorReference` is what a receiving EPJ shows as who wrote a note, so a
note that names another organisation or person is a forgery, whatever the server's own
`statement-provenance` says. Every note a client adds or changes (a plan's notes and its
activities' progress notes, a Goal's, a care team's, a referral's and its Task's, any
Annotation anywhere) may leave `authorReference` out or name the writer itself, by
identifier: its organisasjonsnummer or its own HPR number. A literal reference, or a
display alone, ties the note to no one the server can check, so it is refused too. A note
sent back exactly as stored (its provenance aside) is kept, whoever wrote it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import orjson

from shared.fhir.statements import PROVENANCE_EXT
from shared.identifiers import HPR_SYSTEM, ORGNR_SYSTEM
from shared.rules import Problem
from shared.transport.wire import Caller


def foreign_authors(
    resource: dict[str, Any], before: dict[str, Any] | None, caller: Caller
) -> list[Problem]:
    """A 422 for each new or changed note of `resource` (replacing `before`) whose
    `authorReference` does not name `caller`; none for a barnebro service's own writes."""
    if caller.credential == "service":
        return []
    kept = Counter(_key(note) for _, note in _notes(before or {}, ""))
    problems = []
    for path, note in _notes(resource, str(resource.get("resourceType") or "")):
        key = _key(note)
        if kept[key] > 0:
            kept[key] -= 1
        elif not _names_writer(note.get("authorReference"), caller):
            problems.append(
                Problem(
                    422,
                    "business-rule",
                    f"{path}.authorReference names someone other than the writer: a note's"
                    " author is who writes it, so leave authorReference out (the server"
                    " records who wrote each statement) or name your own organisation"
                    f" ({ORGNR_SYSTEM}|{caller.orgnr}) or your own HPR number by"
                    " Reference.identifier, without a literal reference",
                    f"{path}.authorReference",
                )
            )
    return problems


def _notes(node: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every Annotation with an `authorReference` (the only element of that name in R4)
    in `node`, with its FHIRPath."""
    if isinstance(node, list):
        for index, item in enumerate(node):
            yield from _notes(item, f"{path}[{index}]")
    elif isinstance(node, dict):
        if "authorReference" in node:
            yield path, node
        for name, value in node.items():
            if isinstance(value, dict | list):
                yield from _notes(value, f"{path}.{name}" if path else name)


def _key(note: dict[str, Any]) -> bytes:
    """A note as the client wrote it: without the provenance the server stamps on it."""
    extensions = [e for e in note.get("extension") or [] if e.get("url") != PROVENANCE_EXT]
    plain = {k: v for k, v in note.items() if k != "extension"}
    if extensions:
        plain["extension"] = extensions
    return orjson.dumps(plain, option=orjson.OPT_SORT_KEYS)


def _names_writer(reference: Any, caller: Caller) -> bool:
    if not isinstance(reference, dict) or "reference" in reference:
        return False
    identifier = reference.get("identifier")
    if not isinstance(identifier, dict):
        return False
    system, value, kind = identifier.get("system"), identifier.get("value"), reference.get("type")
    if system == ORGNR_SYSTEM and caller.orgnr and value == caller.orgnr:
        return kind in (None, "Organization")
    if system == HPR_SYSTEM and caller.hpr and value == caller.hpr:
        return kind in (None, "Practitioner")
    return False
