"""The register of organisations, read from a file shaped like the public registers.

Rows carry what Enhetsregisteret states (`organisasjonsnummer`, `navn`, the municipality
of the business address, `overordnetEnhet`), the organisation's HER-id from NHN's address
register (`herId`; several separated by commas, or a JSON array), and barnebro's own
classification (`kind`), which the operator decides. JSON (an array, or
Enhetsregisteret's `{"_embedded": {"enheter": [...]}}`) or CSV with a header and `;` or
`,` between fields. `aktiv: false` takes an organisation out of use without deleting it
(its kind is then no longer given to its tokens).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

import orjson

from shared.codes import (
    MUNICIPALITY_EXTENSION,
    ORGANISATION_KIND_SYSTEM,
    ORGANISATION_KINDS,
)
from shared.identifiers import (
    HERID_SYSTEM,
    KOMMUNENUMMER_SYSTEM,
    ORGNR_SYSTEM,
    InvalidIdentifier,
    validate_identifier,
)


class RowError(ValueError):
    """A row of a register file that cannot be used; the message says why."""


@dataclass(frozen=True)
class OrganisationRow:
    orgnr: str
    name: str
    kind: str
    kommunenummer: str | None = None
    her_ids: tuple[str, ...] | None = None
    """None: the row says nothing of HER-ids (no such field), and the stored ones stay."""
    parent: str | None = None
    active: bool = True

    def resource(
        self, parent_id: str | None = None, stored: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The Organization this row registers (`parent_id`: the parent's resource id;
        `stored`: the organisation as registered now, whose HER-ids a row without any
        keeps)."""
        her_ids = self.her_ids
        if her_ids is None:
            her_ids = tuple(
                str(i["value"])
                for i in (stored or {}).get("identifier") or []
                if i.get("system") == HERID_SYSTEM and i.get("value")
            )
        identifiers = [{"system": ORGNR_SYSTEM, "value": self.orgnr}]
        identifiers += [{"system": HERID_SYSTEM, "value": her_id} for her_id in her_ids]
        resource: dict[str, Any] = {
            "resourceType": "Organization",
            "active": self.active,
            "identifier": identifiers,
            "type": [{"coding": [{"system": ORGANISATION_KIND_SYSTEM, "code": self.kind}]}],
            "name": self.name,
        }
        if self.kommunenummer:
            coding = {"system": KOMMUNENUMMER_SYSTEM, "code": self.kommunenummer}
            resource["address"] = [
                {"extension": [{"url": MUNICIPALITY_EXTENSION, "valueCoding": coding}]}
            ]
        if parent_id:
            resource["partOf"] = {"reference": f"Organization/{parent_id}"}
        return resource


def _text(row: dict[str, Any], *names: str) -> str | None:
    for name in names:
        value: Any = row
        for part in name.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value not in (None, ""):
            return str(value).strip()
    return None


def _active(value: str | None) -> bool:
    if value is None:
        return True
    if value.lower() in ("true", "ja", "1", "yes"):
        return True
    if value.lower() in ("false", "nei", "0", "no"):
        return False
    raise RowError(f"aktiv must be true or false, not {value!r}")


_ABSENT = object()


def _her_ids(value: Any) -> tuple[str, ...] | None:
    """The HER-ids of a row: one, several separated by commas, or a JSON array; an empty
    value (`""`, `[]`, null) says it has none; None when the row has no such field."""
    if value is _ABSENT:
        return None
    values = value if isinstance(value, list) else str(value or "").split(",")
    return tuple(dict.fromkeys(str(v).strip() for v in values if str(v).strip()))


def organisation_row(row: dict[str, Any], *, check_digit: bool = True) -> OrganisationRow:
    orgnr = _text(row, "organisasjonsnummer")
    name = _text(row, "navn", "name")
    kind = _text(row, "kind", "type")
    if not orgnr or not name or not kind:
        raise RowError("organisasjonsnummer, navn and kind are required")
    if kind not in ORGANISATION_KINDS:
        raise RowError(f"kind {kind!r} is not one of {', '.join(sorted(ORGANISATION_KINDS))}")
    municipality = _text(
        row,
        "kommunenummer",
        "forretningsadresse.kommunenummer",
        "beliggenhetsadresse.kommunenummer",
    )
    her_ids = _her_ids(row.get("herId", row.get("her_id", _ABSENT)))
    parent = _text(row, "overordnetEnhet", "parent")
    try:
        validate_identifier(ORGNR_SYSTEM, orgnr, enforce_orgnr_check_digit=check_digit)
        if parent:
            validate_identifier(ORGNR_SYSTEM, parent, enforce_orgnr_check_digit=check_digit)
        if municipality:
            validate_identifier(KOMMUNENUMMER_SYSTEM, municipality)
        for her_id in her_ids or ():
            validate_identifier(HERID_SYSTEM, her_id)
    except InvalidIdentifier as exc:
        raise RowError(str(exc)) from exc
    return OrganisationRow(orgnr, name, kind, municipality, her_ids, parent, _active(
        _text(row, "aktiv", "active")))  # fmt: skip


def read_rows(data: bytes, filename: str) -> list[dict[str, Any]]:
    """The rows of a register file: JSON (by content) or CSV."""
    text = data.decode("utf-8-sig")
    if filename.endswith(".json") or text.lstrip().startswith(("[", "{")):
        parsed = orjson.loads(text)
        if isinstance(parsed, dict):
            parsed = (parsed.get("_embedded") or {}).get("enheter", parsed.get("rows"))
        if not isinstance(parsed, list) or not all(isinstance(r, dict) for r in parsed):
            raise RowError("a JSON register file is an array of objects")
        return parsed
    dialect = csv.Sniffer().sniff(text.splitlines()[0] if text else ",", delimiters=";,")
    return [dict(row) for row in csv.DictReader(io.StringIO(text), dialect=dialect)]
