"""Parsing FHIR search URLs into a checked query, before any SQL is built.

Unknown parameters, modifiers and malformed values are rejected here with a 400 (or dropped
with a warning under `Prefer: handling=lenient`), so the store only ever sees criteria it
knows how to answer.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import orjson

from shared.fhir.errors import FhirError, Issue, error
from shared.fhir.search_params import ParamType, SearchParam, date_bounds
from shared.fhir.subsets import WHOLE, Subset, parse_subset

BROKEN_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
"""A percent sign that does not begin an escape: the criteria are not what the client
meant, and matching them as text would create where it meant to find."""


def query_criteria(text: str, name: str, *expression: str) -> list[tuple[str, str]]:
    """The criteria of a conditional write, sent as a query string (`If-None-Exist`, a
    conditional update's URL), parsed as one: `name` says which in the 400 for a `%` that
    begins no escape."""
    if BROKEN_ESCAPE.search(text):
        raise error(
            400, "invalid", f"{name} is not a query string: a % begins two hex digits", *expression
        )
    return parse_qsl(text, keep_blank_values=True)


ID_PARAM = SearchParam("_id", ParamType.TOKEN, documentation="Logical id of the resource")
LAST_UPDATED_PARAM = SearchParam(
    "_lastUpdated", ParamType.DATE, documentation="When the current version was stored"
)
DATE_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb")
MODIFIERS: dict[ParamType, tuple[str, ...]] = {
    ParamType.STRING: ("exact", "contains"),
    ParamType.TOKEN: (),
    ParamType.DATE: (),
    ParamType.REFERENCE: ("identifier",),
}
IGNORED_PARAMS = frozenset({"_format", "_pretty"})
"""The parameters every interaction takes: they shape the answer, never what is done."""
MAX_VALUES = 100
MAX_CRITERIA = 30
DEFAULT_COUNT = 20
MAX_COUNT = 1000


@dataclass(frozen=True)
class DateValue:
    prefix: str
    lo: str
    hi: str


@dataclass(frozen=True)
class Criterion:
    """One search parameter of the URL: its values are alternatives (OR)."""

    param: SearchParam
    modifier: str
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Include:
    source_type: str
    param: SearchParam
    target_type: str | None = None


@dataclass
class SearchQuery:
    resource_type: str
    criteria: list[Criterion] = field(default_factory=list)
    count: int = DEFAULT_COUNT
    sort: str = "_id"
    cursor: tuple[str, str] | None = None
    cursor_token: str | None = None
    includes: list[Include] = field(default_factory=list)
    revincludes: list[Include] = field(default_factory=list)
    total: bool = False
    subset: Subset = WHOLE
    link_params: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)


def small_integer(text: str, name: str, maximum: int) -> int:
    """A non-negative ASCII integer no larger than `maximum`, or a 400."""
    if not (text.isascii() and text.isdigit()) or len(text) > 18 or int(text) > maximum:
        raise error(400, "invalid", f"{name} must be an integer from 0 to {maximum}", name)
    return int(text)


def encode_cursor(sort_value: str, res_id: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([sort_value, res_id])).decode().rstrip("=")


def _decode_cursor(text: str) -> tuple[str, str]:
    try:
        value = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, orjson.JSONDecodeError, ValueError) as exc:
        raise error(400, "invalid", "The paging cursor is not valid", "_cursor") from exc
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value)):
        raise error(400, "invalid", "The paging cursor is not valid", "_cursor")
    return value[0], value[1]


def parse_date_value(name: str, text: str) -> DateValue:
    prefix = text[:2] if text[:2] in DATE_PREFIXES else "eq"
    raw = text[2:] if text[:2] in DATE_PREFIXES else text
    try:
        lo, hi = date_bounds(raw)
    except ValueError as exc:
        raise error(400, "invalid", f"{name}: {text!r} is not a FHIR date or dateTime") from exc
    return DateValue(prefix, lo, hi)


def _parse_values(param: SearchParam, modifier: str, raw: str) -> tuple[Any, ...]:
    values = [v.replace("\\,", ",") for v in _split_commas(raw)]
    if any(v.strip() == "" for v in values):
        raise error(400, "invalid", f"Search parameter {param.name} has an empty value")
    if len(values) > MAX_VALUES:
        raise error(
            400, "too-costly", f"{param.name} has more than {MAX_VALUES} alternative values"
        )

    if param.type is ParamType.DATE:
        return tuple(parse_date_value(param.name, v) for v in values)
    if param.type is ParamType.TOKEN or (param.type is ParamType.REFERENCE and modifier):
        return tuple(tuple(v.split("|", 1)) if "|" in v else (None, v) for v in values)
    return tuple(values)


def _split_commas(raw: str) -> list[str]:
    parts, current, escaped = [], "", False
    for char in raw:
        if char == "," and not escaped:
            parts.append(current)
            current = ""
        else:
            current += char
        escaped = char == "\\" and not escaped
    parts.append(current)
    return parts


def parse_search(
    resource_type: str,
    params: list[tuple[str, str]],
    declared: dict[str, dict[str, SearchParam]],
    *,
    lenient: bool = False,
) -> SearchQuery:
    """Check and parse the query string of a search on `resource_type`.

    `declared` maps each resource type the service owns to its search parameters, so that
    `_include` and `_revinclude` can be checked too.
    """
    own = {**declared.get(resource_type, {}), "_id": ID_PARAM, "_lastUpdated": LAST_UPDATED_PARAM}
    query = SearchQuery(resource_type)
    problems: list[Issue] = []
    if len(params) > MAX_CRITERIA:
        raise error(400, "too-costly", f"A search takes at most {MAX_CRITERIA} parameters")

    def reject(message: str, where: str) -> None:
        (query.warnings if lenient else problems).append(
            Issue(
                "not-supported",
                message,
                severity="warning" if lenient else "error",
                expression=(where,),
            )
        )

    for key, raw in params:
        if "\x00" in key or "\x00" in raw:
            raise error(400, "invalid", "Search parameters must not contain NUL characters")
        name, _, modifier = key.partition(":")
        if key in IGNORED_PARAMS:
            continue
        if key == "_cursor":
            query.cursor = _decode_cursor(raw)
            query.cursor_token = raw
            continue
        query.link_params.append((key, raw))
        if key == "_count":
            query.count = small_integer(raw, "_count", MAX_COUNT)
        elif key == "_sort":
            if raw not in ("_id", "_lastUpdated", "-_lastUpdated"):
                reject(f"Sorting is supported on _id and _lastUpdated, not {raw!r}", "_sort")
            else:
                query.sort = raw
        elif key == "_total":
            if raw not in ("none", "estimate", "accurate"):
                raise error(400, "invalid", "_total must be none, estimate or accurate", "_total")
            query.total = raw != "none"
        elif key == "_totalMethod":  # fhirpy's name for _total=accurate
            if raw != "count":
                raise error(400, "invalid", "_totalMethod takes count", "_totalMethod")
            query.total = True
        elif key in ("_summary", "_elements"):
            continue  # read together below
        elif key in ("_include", "_revinclude"):
            include = _parse_include(key, raw, resource_type, declared)
            if include is None:
                reject(f"{key}={raw} is not supported here", key)
            else:
                (query.includes if key == "_include" else query.revincludes).append(include)
        elif name in own:
            param = own[name]
            if modifier and modifier not in MODIFIERS[param.type]:
                reject(f"Modifier :{modifier} is not supported on {name}", key)
                continue
            query.criteria.append(Criterion(param, modifier, _parse_values(param, modifier, raw)))
        else:
            reject(f"Unknown search parameter {key!r} for {resource_type}", key)
    if problems:
        raise FhirError(400, problems)
    query.subset = parse_subset(resource_type, params)
    if query.subset.count_only:
        query.count = 0
    if query.count == 0:  # the total alone (_summary=count, _count=0)
        query.total = True
    return query


def _parse_include(
    key: str, raw: str, resource_type: str, declared: dict[str, dict[str, SearchParam]]
) -> Include | None:
    parts = raw.split(":")
    if len(parts) not in (2, 3) or parts[0] not in declared:
        return None
    if key == "_include" and parts[0] != resource_type:
        return None
    param = declared[parts[0]].get(parts[1])
    if param is None or param.type is not ParamType.REFERENCE or not param.includable:
        return None
    if key == "_revinclude" and resource_type not in param.targets:
        return None
    if len(parts) == 3 and parts[2] not in param.targets:
        return None
    return Include(parts[0], param, parts[2] if len(parts) == 3 else None)


def refuse_parameters(
    params: list[tuple[str, str]],
    what: str,
    *,
    allowed: frozenset[str] = frozenset(),
    hint: str = "",
) -> None:
    """A write's query parameters would be dropped silently, so any but `_format`, `_pretty`
    (and `allowed`) is a 400, the same on every write path: a create, an update, a patch, a
    delete, `$validate`, an operation, a batch or transaction."""
    names = sorted({name for name, _ in params} - IGNORED_PARAMS - allowed)
    if names:
        raise error(
            400,
            "not-supported",
            f"{what} takes no query parameters (got {', '.join(names)}){hint}",
        )
