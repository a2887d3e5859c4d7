"""Quoting another record in a plan, with an origin the server can prove.

A plan's note, activity or Goal often repeats what another record says: BUP's treatment
plan quotes barnevern's referral ("kan være grunn til å tro at barnet er utsatt for vold
av far"; DOMAIN §9, Gutt 8). Stamped as BUP's own, the suspicion would turn into BUP's
statement under health law. A writer therefore says what it quotes (extension
`statement-quotation` on the statement: `source`, a reference to the record, and
optionally `element`, e.g. `note[0]`), and the server checks the claim before it believes
it: the source is read **as the writer** from the service that holds it (so that
service's consent step decides and audits the read), and the statement's text must stand
in the source's text. The statement's provenance then names the original author,
practitioner, roles, regime and time (the source element's own provenance where it has
one, otherwise the organisation that wrote the source), and who quoted it, when and from
which version. A source the writer may not read answers exactly as one that does not
exist, and a text not in the source is refused: a client cannot forge an origin.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from services.careplan.domain.vocabulary import PROVENANCE_EXT, QUOTATION_EXT
from services.careplan.provenance import changed
from shared.access.state import PatientAccessState
from shared.clock import now_instant
from shared.directory_client import DirectoryClient
from shared.fhir.elements import orgnr_of, patient_id
from shared.fhir.errors import error
from shared.fhir.references import reference_target
from shared.fhir.statements import kind_regime
from shared.identifiers import HPR_SYSTEM, ORGNR_SYSTEM
from shared.transport.wire import Caller

QUOTABLE_TYPES = frozenset({"ServiceRequest", "CarePlan", "Goal", "DocumentReference"})
"""Records a statement may quote: each is read from the service that holds it."""


def quotation_of(statement: dict[str, Any]) -> tuple[str, str | None] | None:
    """The (source reference, element) a statement says it quotes, if any."""
    quotation = next(
        (e for e in statement.get("extension") or [] if e.get("url") == QUOTATION_EXT), None
    )
    if quotation is None:
        return None
    parts = {p.get("url"): p for p in quotation.get("extension") or []}
    source = (parts.get("source") or {}).get("valueReference") or {}
    element = (parts.get("element") or {}).get("valueString")
    return str(source.get("reference") or ""), element if isinstance(element, str) else None


def statement_text(statement: dict[str, Any]) -> str:
    """The words of a statement: a note's text, an activity's description, a Goal's."""
    detail = statement.get("detail") or {}
    description = statement.get("description")
    if isinstance(description, dict):
        description = description.get("text")
    for text in (statement.get("text"), detail.get("description"), description):
        if isinstance(text, str) and text.strip():
            return text
    return ""


def source_statements(source: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], str]]:
    """Each statement-bearing element of a record: (its path, the element, its text)."""
    for index, note in enumerate(source.get("note") or []):
        yield f"note[{index}]", note, str(note.get("text") or "")
    for index, reason in enumerate(source.get("reasonCode") or []):
        yield f"reasonCode[{index}]", reason, str(reason.get("text") or "")
    for index, activity in enumerate(source.get("activity") or []):
        detail = activity.get("detail") or {}
        yield f"activity[{index}]", activity, str(detail.get("description") or "")
    description = source.get("description")
    if isinstance(description, dict):
        yield "description", source, str(description.get("text") or "")
    elif isinstance(description, str):
        yield "description", source, description


def _words(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().casefold()


def found_in(source: dict[str, Any], element: str | None, text: str) -> dict[str, Any] | None:
    """The source element whose text contains `text` (only `element`, when named)."""
    wanted = _words(text)
    if not wanted:
        return None
    for path, node, words in source_statements(source):
        if (element is None or path == element) and wanted in _words(words):
            return node
    return None


def _author_orgnr(source: dict[str, Any]) -> str | None:
    """The organisation that wrote a record without statement provenance of its own."""
    for key in ("requester", "author", "custodian"):
        value = source.get(key)
        for reference in value if isinstance(value, list) else [value]:
            orgnr = orgnr_of(reference)
            if orgnr is not None:
                return orgnr
    return None


class Quotations:
    """Checks a statement's quotation and gives the provenance it proves."""

    def __init__(
        self, directory: DirectoryClient, state: PatientAccessState | None, category: str | None
    ) -> None:
        self.directory = directory
        self.state = state
        self.category = category
        """The data category of the record being written (what its readers see)."""

    async def origin(
        self, statement: dict[str, Any], caller: Caller, where: str, patient: str | None
    ) -> dict[str, Any] | None:
        """The provenance a quoting statement gets, or None when it quotes nothing; a
        422 (naming `where`) when the quotation cannot be proven. The source must be about
        the same child (`patient`, a Patient id): a quotation never carries one child's
        information into another's record."""
        quoted = quotation_of(statement)
        if quoted is None:
            return None
        reference, element = quoted
        source = await self._read_as(caller, reference, where)
        if patient is None or patient_id(source.get("subject")) != patient:
            raise error(
                422,
                "business-rule",
                f"{where}: {reference} is not about the same child; a quotation's source is a"
                " record about the child this one is about",
                where,
            )
        node = found_in(source, element, statement_text(statement))
        if node is None:
            raise error(
                422,
                "business-rule",
                f"{where}: the quoted text is not in {reference}"
                + (f" ({element})" if element else "")
                + "; a quotation repeats the source's words",
                where,
            )
        version = (source.get("meta") or {}).get("versionId")
        cited = f"{source['resourceType']}/{source['id']}" + (
            f"/_history/{version}" if version else ""
        )
        own = next((e for e in node.get("extension") or [] if e.get("url") == PROVENANCE_EXT), None)
        parts = [p for p in (own or {}).get("extension") or [] if _original(p)]
        if not parts:
            parts = await self._author_parts(source)
        self._refuse_if_kept_from_parents(parts, caller, reference, where)
        parts += [
            {"url": "source", "valueReference": {"reference": cited}},
            {"url": "quotedAt", "valueDateTime": now_instant()},
        ]
        if caller.orgnr:
            by = {"system": ORGNR_SYSTEM, "value": caller.orgnr}
            parts.append({"url": "quotedBy", "valueIdentifier": by})
        if caller.hpr:
            person = {"system": HPR_SYSTEM, "value": caller.hpr}
            parts.append({"url": "quotedByPractitioner", "valueIdentifier": person})
        return {"url": PROVENANCE_EXT, "extension": parts}

    def _refuse_if_kept_from_parents(
        self, parts: list[dict[str, Any]], caller: Caller, reference: str, where: str
    ) -> None:
        """What a child of 12-15 keeps from its parents stays where the child's consent
        keeps it: quoted into any record outside the mark (another organisation's, or one
        of a category the consent does not name), the parents and those their consents name
        could read it (pbrl §3-4 second ledd)."""
        author = next(
            (p["valueIdentifier"].get("value") for p in parts if p.get("url") == "organization"),
            None,
        )
        marks = [
            h for h in (self.state.hidden_from_parents if self.state else []) if author in h.orgs
        ]
        inside = any(caller.orgnr in h.orgs and self.category in h.categories for h in marks)
        if marks and not inside:
            raise error(
                422,
                "business-rule",
                f"{where}: {reference} is kept from the child's parents (pbrl §3-4 andre ledd);"
                " it is quoted only into records the child's consent keeps from them (its"
                " organisations, its categories)",
                where,
            )

    async def _read_as(self, caller: Caller, reference: str, where: str) -> dict[str, Any]:
        """The source as the writer may read it; a 422 alike for a source that is not
        there and one the writer may not read."""
        plain, _, version = reference.partition("/_history/")
        target = reference_target({"reference": plain})
        unreadable = error(
            422,
            "business-rule",
            f"{where}: {reference} is not a record this organisation may read; a quotation"
            " names a source its writer can read",
            where,
        )
        if target is None or target[0] not in QUOTABLE_TYPES:
            raise unreadable
        res_type, res_id = target
        if version and not version.isdigit():
            raise unreadable
        asked = self.directory.request(
            caller,  # its own scopes: a token that may not read the type may not quote it
            interaction="vread" if version else "read",
            resource_type=res_type,
            id=res_id,
            version=version or None,
        )
        status, source = await self.directory.ask(asked)
        if status != 200 or not isinstance(source, dict):
            raise unreadable
        return source

    async def _author_parts(self, source: dict[str, Any]) -> list[dict[str, Any]]:
        orgnr = _author_orgnr(source)
        parts: list[dict[str, Any]] = []
        when = source.get("authoredOn") or (source.get("meta") or {}).get("lastUpdated")
        if when:
            parts.append({"url": "at", "valueDateTime": when})
        if orgnr:
            by = {"system": ORGNR_SYSTEM, "value": orgnr}
            parts.append({"url": "organization", "valueIdentifier": by})
            regime = kind_regime(await self.directory.organisation_kind(orgnr))
            if regime:
                parts.append({"url": "regime", "valueCode": regime})
        return parts


def _original(part: dict[str, Any]) -> bool:
    """The parts of a provenance that say who first made a statement (not who quoted it)."""
    return part.get("url") in ("at", "organization", "practitioner", "role", "regime")


async def quoted_origins(
    directory: DirectoryClient,
    statements: list[Any],
    earlier: list[Any],
    caller: Caller,
    where: str,
    patient: str | None,
    state: PatientAccessState | None,
    category: str | None,
) -> dict[int, dict[str, Any]]:
    """The proven origin of each new or changed statement that quotes a source, by its
    position in `statements` (for `provenance.stamp`); `where` names the element list
    (`CarePlan.note`) or the resource (`Goal`) in a refusal."""
    if not any(isinstance(s, dict) and quotation_of(s) is not None for s in statements):
        return {}  # the usual write: nothing to prove, nothing to compare
    fresh = {id(statement) for statement in changed(statements, earlier)}
    quotations = Quotations(directory, state, category)
    origins: dict[int, dict[str, Any]] = {}
    for position, statement in enumerate(statements):
        if id(statement) not in fresh:
            continue
        path = f"{where}[{position}]" if "." in where else where
        origin = await quotations.origin(statement, caller, path, patient)
        if origin is not None:
            origins[position] = origin
    return origins


def refuse_quotations(statements: list[Any], where: str) -> None:
    """A record that does not prove quotations carries none: a 422 for a statement that
    claims one (what its writer writes there is the writer's own)."""
    for position, statement in enumerate(statements):
        if isinstance(statement, dict) and quotation_of(statement) is not None:
            raise error(
                422,
                "business-rule",
                f"{where}[{position}]: a quotation is recorded on a plan's notes and"
                " activities and on a Goal; here a statement is its writer's own",
                f"{where}[{position}]",
            )
