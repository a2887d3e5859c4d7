"""Search parameters a service declares for its resource types, and the index values
each one extracts from a resource.

A service lists its parameters once; the store derives its index rows from them, the query
parser checks requests against them and the CapabilityStatement advertises them. The
extraction is plain Python over the stored JSON (no FHIRPath engine on the write path).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any

from shared.fhir.references import reference_target


class ParamType(StrEnum):
    TOKEN = "token"
    STRING = "string"
    REFERENCE = "reference"
    DATE = "date"


@dataclass(frozen=True)
class IndexValue:
    """One row of the search index: a token (system, value), a string, a reference
    ("Type/id") or a date range [lo, hi] as fixed-width UTC instants. A reference given
    by identifier is stored under the qualifier ":identifier"."""

    system: str | None = None
    value: str | None = None
    lo: str | None = None
    hi: str | None = None
    qualifier: str = ""


Extractor = Callable[[dict[str, Any]], Iterable[Any]]


@dataclass(frozen=True)
class SearchParam:
    """A search parameter: its name, type, the element paths it reads and documentation."""

    name: str
    type: ParamType
    paths: tuple[str, ...] = ()
    documentation: str = ""
    targets: tuple[str, ...] = ()
    extract: Extractor | None = None

    def elements(self, resource: dict[str, Any]) -> Iterator[Any]:
        if self.extract is not None:
            yield from self.extract(resource)
            return
        for path in self.paths:
            yield from walk(resource, path.split("."))


def walk(node: Any, steps: list[str]) -> Iterator[Any]:
    """Follow a dotted element path through JSON, flattening arrays on the way."""
    if isinstance(node, list):
        for item in node:
            yield from walk(item, steps)
        return
    if not steps:
        if node is not None:
            yield node
        return
    if isinstance(node, dict):
        yield from walk(node.get(steps[0]), steps[1:])


def extension_values(url: str, value_key: str, *path: str) -> Extractor:
    """An extractor for the `value_key` of extensions with `url` found at `path`."""

    def extract(resource: dict[str, Any]) -> Iterator[Any]:
        for holder in walk(resource, list(path)) if path else iter([resource]):
            for ext in holder.get("extension", []) if isinstance(holder, dict) else []:
                if isinstance(ext, dict) and ext.get("url") == url and value_key in ext:
                    yield ext[value_key]

    return extract


def normalize_string(text: str) -> str:
    """Case- and accent-insensitive form used for string search, as FHIR asks."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c)).strip()


def _token_values(element: Any) -> Iterator[IndexValue]:
    if isinstance(element, bool):
        yield IndexValue(value="true" if element else "false")
    elif isinstance(element, str | int):
        yield IndexValue(value=str(element))
    elif isinstance(element, dict):
        if "coding" in element or ("text" in element and "system" not in element):
            for coding in element.get("coding", []):
                yield from _token_values(coding)
        elif "value" in element and "code" not in element:
            yield IndexValue(system=element.get("system"), value=str(element["value"]))
        elif "code" in element:
            yield IndexValue(system=element.get("system"), value=str(element["code"]))


_STRING_PARTS: tuple[str, ...] = (
    "family", "given", "prefix", "suffix", "text",
    "line", "city", "district", "state", "postalCode", "country",
)  # fmt: skip


def _string_values(element: Any) -> Iterator[IndexValue]:
    if isinstance(element, str):
        yield IndexValue(value=normalize_string(element))
    elif isinstance(element, dict):
        for part in _STRING_PARTS:
            yield from (v for item in walk(element, [part]) for v in _string_values(item))


def _reference_values(element: Any) -> Iterator[IndexValue]:
    if not isinstance(element, dict):
        return
    target = reference_target(element)
    if target is not None:
        yield IndexValue(value=f"{target[0]}/{target[1]}")
    identifier = element.get("identifier")
    if isinstance(identifier, dict) and "value" in identifier:
        yield IndexValue(
            system=identifier.get("system"), value=str(identifier["value"]), qualifier=":identifier"
        )


INSTANT_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
MIN_INSTANT = "0001-01-01T00:00:00.000000Z"
MAX_INSTANT = "9999-12-31T23:59:59.999999Z"


def format_instant(moment: datetime) -> str:
    """Fixed-width UTC form, so that instants compare correctly as strings."""
    return moment.astimezone(UTC).strftime(INSTANT_FORMAT)


def date_range(text: str) -> tuple[datetime, datetime]:
    """The range a FHIR date, dateTime or instant covers, as [lo, hi] in UTC."""
    if len(text) == 4:
        start = datetime(int(text), 1, 1, tzinfo=UTC)
        end = datetime(int(text) + 1, 1, 1, tzinfo=UTC)
    elif len(text) == 7:
        year, month = int(text[:4]), int(text[5:7])
        start = datetime(year, month, 1, tzinfo=UTC)
        end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    elif len(text) == 10:
        day = date.fromisoformat(text)
        start = datetime.combine(day, time(), tzinfo=UTC)
        end = start + timedelta(days=1)
    else:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        precision = timedelta(seconds=1) if moment.microsecond == 0 else timedelta(microseconds=1)
        return moment, moment + precision - timedelta(microseconds=1)
    return start, end - timedelta(microseconds=1)


def _date_values(element: Any) -> Iterator[IndexValue]:
    if isinstance(element, str):
        start, end = date_range(element)
        yield IndexValue(lo=format_instant(start), hi=format_instant(end))
    elif isinstance(element, dict) and ("start" in element or "end" in element):
        lo = format_instant(date_range(element["start"])[0]) if "start" in element else MIN_INSTANT
        hi = format_instant(date_range(element["end"])[1]) if "end" in element else MAX_INSTANT
        yield IndexValue(lo=lo, hi=hi)


_EXTRACTORS: dict[ParamType, Callable[[Any], Iterator[IndexValue]]] = {
    ParamType.TOKEN: _token_values,
    ParamType.STRING: _string_values,
    ParamType.REFERENCE: _reference_values,
    ParamType.DATE: _date_values,
}


def index_values(param: SearchParam, resource: dict[str, Any]) -> list[IndexValue]:
    """Every index value of `param` in `resource`, without duplicates."""
    extract = _EXTRACTORS[param.type]
    seen: dict[IndexValue, None] = {}
    for element in param.elements(resource):
        for value in extract(element):
            seen.setdefault(value)
    return list(seen)
