"""Who said what in a plan: every statement keeps its provenance.

Each activity and note of a plan, and each Goal, carries who wrote it (organisation,
practitioner), in which role and under which legal regime, and when (extension
statement-provenance), set by the server. The regime is the writer's, not the plan's: a
barnevernstjeneste writes under barnevern law, health personnel under health law, also in
a plan of the other regime. A statement copied unchanged into a new version keeps its
original provenance; a changed one gets the changer's. So a suspicion recorded by
barnevern stays barnevern's suspicion wherever the plan travels (the Gutt 8 case).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson

from services.careplan.domain.vocabulary import PROVENANCE_EXT
from shared.clock import now_instant
from shared.fhir.statements import kind_regime
from shared.identifiers import HPR_SYSTEM, ORGNR_SYSTEM
from shared.transport.wire import Caller


def _without_provenance(statement: dict[str, Any]) -> bytes:
    kept = [e for e in statement.get("extension") or [] if e.get("url") != PROVENANCE_EXT]
    return orjson.dumps({**statement, "extension": kept}, option=orjson.OPT_SORT_KEYS)


def _provenance(statement: dict[str, Any]) -> dict[str, Any] | None:
    return next(
        (e for e in statement.get("extension") or [] if e.get("url") == PROVENANCE_EXT), None
    )


def provenance_of(caller: Caller, regime: str | None) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"url": "at", "valueDateTime": now_instant()}]
    if caller.orgnr:
        by = {"system": ORGNR_SYSTEM, "value": caller.orgnr}
        parts.append({"url": "organization", "valueIdentifier": by})
    if caller.hpr:
        parts.append({"url": "practitioner", "valueIdentifier": {"system": HPR_SYSTEM,
                                                                 "value": caller.hpr}})  # fmt: skip
    parts += [{"url": "role", "valueCode": role} for role in caller.roles]
    if regime:
        parts.append({"url": "regime", "valueCode": regime})
    return {"url": PROVENANCE_EXT, "extension": parts}


def changed(statements: list[Any], earlier: list[Any]) -> list[dict[str, Any]]:
    """The statements that are new or changed since `earlier` (their provenance aside); a
    copy of an earlier statement is new (each earlier one stands for one statement)."""
    known = Counter(_without_provenance(s) for s in earlier if isinstance(s, dict))
    fresh = []
    for statement in statements:
        if not isinstance(statement, dict):
            continue
        key = _without_provenance(statement)
        if known[key] > 0:
            known[key] -= 1
        else:
            fresh.append(statement)
    return fresh


def stamp(
    statements: list[Any],
    earlier: list[Any],
    caller: Caller,
    quoted: dict[int, dict[str, Any]] | None = None,
) -> None:
    """Give each statement its provenance: the stored one when it is unchanged; for a new
    or changed one, the origin its quotation proved (`quoted`, by position in
    `statements`, from `quotations.Quotations`) or else the caller's, under the caller's
    regime. A client's own provenance extension is never taken."""
    known: dict[bytes, list[dict[str, Any]]] = {}
    for before in earlier:  # each earlier statement lends its provenance to one statement
        stored = _provenance(before) if isinstance(before, dict) else None
        if stored is not None:
            known.setdefault(_without_provenance(before), []).append(stored)
    fresh = provenance_of(caller, kind_regime(caller.org_kind))
    for position, statement in enumerate(statements):
        if not isinstance(statement, dict):
            continue
        carried = known.get(_without_provenance(statement))
        origin = (carried.pop(0) if carried else None) or (quoted or {}).get(position) or fresh
        kept = [e for e in statement.get("extension") or [] if e.get("url") != PROVENANCE_EXT]
        statement["extension"] = [*kept, origin]
