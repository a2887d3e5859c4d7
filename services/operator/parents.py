"""Parental responsibility from the population register (Folkeregisteret).

Each row is one `foreldreansvar` as the register states it: the child
(`ansvarssubjekt`), the holder (`ansvarlig`), the kind of responsibility (`ansvar`:
felles, mor, far, medmor, andre, ukjent — the no-basis parental-responsibility codes),
from when (`gyldighetstidspunkt`) and, once it has ended, until when
(`opphoerstidspunkt`), with the holder's name (`navn`: `fornavn`, `mellomnavn`,
`etternavn`) where known. JSON (an array, or one object per line). A row becomes the
holder's `RelatedPerson` for the child, found again by the child and the holder's number,
so an import run twice changes nothing, and an ended row ends the responsibility
(`period.end`, `active: false`) everywhere at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import orjson

from services.operator.organisations import RowError
from shared.codes import PARENTAL_RESPONSIBILITY_CODES, PARENTAL_RESPONSIBILITY_SYSTEM
from shared.identifiers import (
    DNR_SYSTEM,
    FNR_SYSTEM,
    InvalidIdentifier,
    parse_person_number,
)


@dataclass(frozen=True)
class ResponsibilityRow:
    child: str
    holder: str
    holder_system: str
    responsibility: str
    start: date | None
    end: date | None
    given: tuple[str, ...] = ()
    family: str | None = None

    def active_on(self, day: date) -> bool:
        return self.end is None or self.end >= day

    def resource(self, patient_id: str, day: date) -> dict[str, Any]:
        coding = {"system": PARENTAL_RESPONSIBILITY_SYSTEM, "code": self.responsibility}
        resource: dict[str, Any] = {
            "resourceType": "RelatedPerson",
            "active": self.active_on(day),
            "identifier": [{"system": self.holder_system, "value": self.holder}],
            "patient": {"reference": f"Patient/{patient_id}"},
            "relationship": [{"coding": [coding]}],
        }
        period = {
            **({"start": self.start.isoformat()} if self.start else {}),
            **({"end": self.end.isoformat()} if self.end else {}),
        }
        if period:
            resource["period"] = period
        if self.family or self.given:
            name: dict[str, Any] = {}
            if self.family:
                name["family"] = self.family
            if self.given:
                name["given"] = list(self.given)
            resource["name"] = [name]
        return resource


def person_system(number: str) -> str:
    """The identifier system of a fødselsnummer or D-nummer, from its digits."""
    problem = None
    for system in (FNR_SYSTEM, DNR_SYSTEM):
        try:
            parse_person_number(number, system)
        except InvalidIdentifier as exc:
            problem = problem or exc
            continue
        return system
    raise RowError(f"{number} is not a fødselsnummer or D-nummer: {problem}")


def _date(value: Any, name: str) -> date | None:
    if value in (None, ""):
        return None
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError as exc:
        raise RowError(f"{name} must be a date or date-time, not {value!r}") from exc


def responsibility_row(row: dict[str, Any]) -> ResponsibilityRow:
    child, holder = row.get("ansvarssubjekt"), row.get("ansvarlig")
    responsibility = row.get("ansvar")
    if not isinstance(child, str) or not isinstance(holder, str):
        raise RowError("ansvarssubjekt (the child) and ansvarlig (the holder) are required")
    if responsibility not in PARENTAL_RESPONSIBILITY_CODES:
        raise RowError(f"ansvar must be one of {', '.join(sorted(PARENTAL_RESPONSIBILITY_CODES))}")
    person_system(child)  # the child is found by its number, whatever its kind
    found = row.get("navn")
    name: dict[str, Any] = found if isinstance(found, dict) else {}
    given = tuple(str(name[k]) for k in ("fornavn", "mellomnavn") if name.get(k))
    start = _date(row.get("gyldighetstidspunkt"), "gyldighetstidspunkt")
    end = _date(row.get("opphoerstidspunkt"), "opphoerstidspunkt")
    if start and end and end < start:
        raise RowError("opphoerstidspunkt is before gyldighetstidspunkt")
    return ResponsibilityRow(
        child, holder, person_system(holder), str(responsibility), start, end, given,
        str(name["etternavn"]) if name.get("etternavn") else None,
    )  # fmt: skip


def read_responsibilities(data: bytes) -> list[dict[str, Any]]:
    """The rows of a register file: a JSON array, or one JSON object per line."""
    text = data.decode("utf-8-sig").strip()
    if text.startswith("["):
        parsed = orjson.loads(text)
    else:
        parsed = [orjson.loads(line) for line in text.splitlines() if line.strip()]
    if not isinstance(parsed, list) or not all(isinstance(r, dict) for r in parsed):
        raise RowError("a register file is a JSON array of objects, or one object per line")
    return parsed
