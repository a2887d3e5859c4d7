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
    includable: bool = True
    """False for a reference that must not be followed by `_include` or `_revinclude`: what
    it points to is a fact some callers may not learn (who holds a child's care order)."""

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
    m = moment.astimezone(UTC)
    return (
        f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}"
        f".{m.microsecond:06d}Z"
    )


def _start_and_length(text: str) -> tuple[datetime, timedelta | None, int]:
    """Where a FHIR date/dateTime/instant starts, and how long it lasts (None: to the end of
    its year or month, given as the number of months)."""
    if len(text) == 4:
        return datetime(int(text), 1, 1), None, 12
    if len(text) == 7:
        return datetime(int(text[:4]), int(text[5:7]), 1), None, 1
    if len(text) == 10:
        return datetime.combine(date.fromisoformat(text), time()), timedelta(days=1), 0
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    precision = timedelta(seconds=1) if moment.microsecond == 0 else timedelta(microseconds=1)
    return moment, precision, 0


def date_bounds(text: str) -> tuple[str, str]:
    """The range a FHIR date, dateTime or instant covers, as fixed-width UTC instants
    [lo, hi]; ranges reaching past year 1 or 9999 are clamped. ValueError if malformed."""
    start, length, months = _start_and_length(text)
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    try:
        lo = format_instant(start)
    except OverflowError:
        lo = MIN_INSTANT
    try:
        if length is None:
            total = start.month - 1 + months
            end = start.replace(year=start.year + total // 12, month=total % 12 + 1)
        else:
            end = start + length
        hi = format_instant(end - timedelta(microseconds=1))
    except (OverflowError, ValueError):
        hi = MIN_INSTANT if start.year == 1 else MAX_INSTANT
    return lo, hi


def _date_values(element: Any) -> Iterator[IndexValue]:
    if isinstance(element, str):
        lo, hi = date_bounds(element)
        yield IndexValue(lo=lo, hi=hi)
    elif isinstance(element, dict) and ("start" in element or "end" in element):
        lo = date_bounds(element["start"])[0] if "start" in element else MIN_INSTANT
        hi = date_bounds(element["end"])[1] if "end" in element else MAX_INSTANT
        yield IndexValue(lo=lo, hi=hi)


_EXTRACTORS: dict[ParamType, Callable[[Any], Iterator[IndexValue]]] = {
    ParamType.TOKEN: _token_values,
    ParamType.STRING: _string_values,
    ParamType.REFERENCE: _reference_values,
    ParamType.DATE: _date_values,
}


MAX_INDEXED_LENGTH = 256
"""Index values (and the search values compared with them) are cut to this length, so a
long string can never exceed a database index row; a match on the first 256 characters of
a value is a match."""


def indexable(text: str | None) -> str | None:
    return text[:MAX_INDEXED_LENGTH] if text is not None else None


def index_values(param: SearchParam, resource: dict[str, Any]) -> list[IndexValue]:
    """Every index value of `param` in `resource`, without duplicates."""
    extract = _EXTRACTORS[param.type]
    seen: dict[IndexValue, None] = {}
    for element in param.elements(resource):
        for value in extract(element):
            if (value.value is not None and len(value.value) > MAX_INDEXED_LENGTH) or (
                value.system is not None and len(value.system) > MAX_INDEXED_LENGTH
            ):
                value = IndexValue(
                    indexable(value.system), indexable(value.value), value.lo, value.hi,
                    value.qualifier,
                )  # fmt: skip
            seen.setdefault(value)
    return list(seen)


IDENTIFIER_PARAM = SearchParam(
    "identifier", ParamType.TOKEN, ("identifier",), "Business identifier (system|value)"
)
"""Every type a client creates has it (but Subscription, which R4B gives no identifier: it
is repeated on `url` and `criteria`): a create sent again after an unknown outcome (504) is
made safe as a conditional create on an identifier the client assigned
(`If-None-Exist: identifier=<system>|<value>`)."""
