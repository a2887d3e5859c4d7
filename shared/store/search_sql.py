"""SQL for FHIR search over the search_index table, from a parsed `SearchQuery`.

Each criterion becomes one `res_id IN (…)` condition (criteria are ANDed, the values of one
criterion ORed). Paging is by keyset on the sort key and id, so a `next` link stays correct
when resources are created or deleted between pages.
"""

from __future__ import annotations

from typing import Any

from shared.fhir.references import reference_target
from shared.fhir.search_params import ParamType, SearchParam, indexable, normalize_string
from shared.fhir.search_query import Criterion, DateValue, Include, SearchQuery
from shared.store.access_sql import AccessFilter, access_clause

COLUMNS = (
    "r.res_type, r.res_id, r.version, r.last_updated, r.deleted, r.body,"
    " r.patient, r.category, r.author, r.parties"
)
"""The columns of a current resource row, as `shared.store.resource_store` reads them."""


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _date_condition(value: DateValue, lo: str, hi: str) -> tuple[str, list[Any]]:
    match value.prefix:
        case "eq":
            return f"({lo} >= ? AND {hi} <= ?)", [value.lo, value.hi]
        case "ne":
            return f"NOT ({lo} >= ? AND {hi} <= ?)", [value.lo, value.hi]
        case "gt":
            return f"{hi} > ?", [value.hi]
        case "lt":
            return f"{lo} < ?", [value.lo]
        case "ge":
            return f"{hi} >= ?", [value.lo]
        case "le":
            return f"{lo} <= ?", [value.hi]
        case "sa":
            return f"{lo} > ?", [value.hi]
        case _:  # "eb"
            return f"{hi} < ?", [value.lo]


def _token_condition(value: tuple[str | None, str], alias: str = "") -> tuple[str, list[Any]]:
    system, code = indexable(value[0]), indexable(value[1]) or ""
    sys_col, value_col = f"{alias}system", f"{alias}value"
    if system is None:
        return f"{value_col} = ?", [code]
    if system == "":
        return f"({sys_col} IS NULL AND {value_col} = ?)", [code]
    if code == "":
        return f"{sys_col} = ?", [system]
    return f"({sys_col} = ? AND {value_col} = ?)", [system, code]


def _criterion(
    criterion: Criterion, res_type: str, params: dict[str, dict[str, SearchParam]]
) -> tuple[str, list[Any]]:
    param = criterion.param
    if param.name == "_id":
        ids = [code for _, code in criterion.values]
        return f"r.res_id IN ({', '.join('?' * len(ids))})", ids
    if param.name == "_lastUpdated":
        parts = [_date_condition(v, "r.last_updated", "r.last_updated") for v in criterion.values]
        return "(" + " OR ".join(p[0] for p in parts) + ")", [a for p in parts for a in p[1]]
    conditions: list[str] = []
    args: list[Any] = []
    index_param = param.name
    for value in criterion.values:
        if param.type is ParamType.TOKEN:
            sql, more = _token_condition(value)
        elif param.type is ParamType.DATE:
            sql, more = _date_condition(value, "lo", "hi")
        elif param.type is ParamType.STRING:
            text = indexable(normalize_string(value)) or ""
            if criterion.modifier == "exact":
                sql, more = "value = ?", [text]
            elif criterion.modifier == "contains":
                sql, more = "value LIKE ? ESCAPE '\\'", [f"%{_like_escape(text)}%"]
            else:
                sql, more = "value LIKE ? ESCAPE '\\'", [f"{_like_escape(text)}%"]
        elif criterion.modifier == "identifier":
            return _reference_by_identifier(criterion, res_type, params)
        else:
            sql, more = _reference_condition(param, value)
        conditions.append(sql)
        args.extend(more)
    sql = (
        "r.res_id IN (SELECT res_id FROM search_index WHERE res_type = ? AND param = ? AND ("
        + " OR ".join(conditions)
        + "))"
    )
    return sql, [res_type, index_param, *args]


def _reference_condition(param: SearchParam, value: str) -> tuple[str, list[Any]]:
    target = reference_target(value)
    if target is not None:
        return "value = ?", [indexable(f"{target[0]}/{target[1]}")]
    targets = [indexable(f"{t}/{value}") for t in param.targets] or [indexable(value)]
    return f"value IN ({', '.join('?' * len(targets))})", targets


def _reference_by_identifier(
    criterion: Criterion, res_type: str, params: dict[str, dict[str, SearchParam]]
) -> tuple[str, list[Any]]:
    """`patient:identifier=system|value`: the reference carries the identifier, or it
    points to a resource of this service that has it."""
    name = criterion.param.name
    owned_targets = [t for t in criterion.param.targets if "identifier" in params.get(t, {})]
    alternatives: list[str] = []
    args: list[Any] = []
    for value in criterion.values:
        token_sql, token_args = _token_condition(value)
        alternatives.append(
            "r.res_id IN (SELECT res_id FROM search_index WHERE res_type = ? AND param = ?"
            f" AND {token_sql})"
        )
        args += [res_type, f"{name}:identifier", *token_args]
        for target in owned_targets:
            target_sql, _ = _token_condition(value, "t.")
            alternatives.append(
                "r.res_id IN (SELECT s.res_id FROM search_index s WHERE s.res_type = ?"
                " AND s.param = ? AND s.value IN (SELECT ? || t.res_id FROM search_index t"
                f" WHERE t.res_type = ? AND t.param = 'identifier' AND {target_sql}))"
            )
            args += [res_type, name, f"{target}/", target, *token_args]
    return "(" + " OR ".join(alternatives) + ")", args


PATIENT_PARAMS = ("patient",)
"""The search parameters that name the patient a row is about: the patient of its access
columns (`ResourceDefinition.patient_of`). AuditEvent's names every patient of a record,
not only the first that its columns hold, but its filter names organisations only, which
`AccessFilter.within` keeps whole."""


def searched_patients(query: SearchQuery) -> set[str] | None:
    """The patients (ids) a search's matches must be about, if one of its criteria says:
    `patient=Patient/<id>` (or a bare id where only a Patient is a target). None when the
    search may match rows about anyone."""
    found: set[str] | None = None
    for criterion in query.criteria:
        param = criterion.param
        if param.name not in PATIENT_PARAMS or param.type is not ParamType.REFERENCE:
            continue
        if criterion.modifier:
            continue
        ids: set[str] = set()
        for value in criterion.values:
            target = reference_target(value)
            if target is None and param.targets == ("Patient",):
                target = ("Patient", value)
            if target is None or target[0] != "Patient":
                break
            ids.add(target[1])
        else:
            found = ids if found is None else found & ids
    return found


def build_search(
    query: SearchQuery,
    params: dict[str, dict[str, SearchParam]],
    *,
    access: AccessFilter | None = None,
    count_only: bool = False,
) -> tuple[str, list[Any]]:
    patients = searched_patients(query) if access is not None else None
    if access is not None and patients is not None:
        access = access.within(patients)
    allowed, args = access_clause(access)
    where = ["r.res_type = ?", "r.deleted = 0", allowed]
    args = [query.resource_type, *args]
    for criterion in query.criteria:
        sql, more = _criterion(criterion, query.resource_type, params)
        where.append(sql)
        args.extend(more)
    if count_only:
        return f"SELECT COUNT(*) FROM resources r WHERE {' AND '.join(where)}", args
    descending = query.sort.startswith("-")
    key = "r.last_updated" if query.sort.endswith("_lastUpdated") else "r.res_id"
    if query.cursor is not None:
        sort_value, last_id = query.cursor
        op = "<" if descending else ">"
        if key == "r.res_id":
            where.append(f"r.res_id {op} ?")
            args.append(last_id)
        else:
            where.append(f"({key} {op} ? OR ({key} = ? AND r.res_id {op} ?))")
            args += [sort_value, sort_value, last_id]
    direction = "DESC" if descending else "ASC"
    order = f"{key} {direction}" + (f", r.res_id {direction}" if key != "r.res_id" else "")
    sql = f"SELECT {COLUMNS} FROM resources r WHERE {' AND '.join(where)} ORDER BY {order} LIMIT ?"
    return sql, [*args, query.count + 1]


def include_references_sql(include: Include, ids: list[str]) -> tuple[str, list[Any]]:
    """The references (`Type/id`) that `include.param` holds on the page's resources."""
    marks = ", ".join("?" * len(ids))
    sql = (
        "SELECT DISTINCT value FROM search_index"
        f" WHERE res_type = ? AND param = ? AND res_id IN ({marks})"
    )
    return sql, [include.source_type, include.param.name, *ids]


def resources_by_id_sql(
    res_type: str, ids: list[str], access: AccessFilter | None = None
) -> tuple[str, list[Any]]:
    """Current, not deleted resources of one type by id (primary-key look-ups) that
    `access` allows."""
    marks = ", ".join("?" * len(ids))
    allowed, more = access_clause(access)
    sql = (
        f"SELECT {COLUMNS} FROM resources r"
        f" WHERE r.res_type = ? AND r.res_id IN ({marks}) AND r.deleted = 0 AND {allowed}"
    )
    return sql, [res_type, *ids, *more]


def revinclude_sql(
    include: Include, target_type: str, ids: list[str], access: AccessFilter | None = None
) -> tuple[str, list[Any]]:
    """Resources of `include.source_type` whose `include.param` points at the page, that
    `access` allows."""
    marks = ", ".join("?" * len(ids))
    allowed, more = access_clause(access)
    sql = (
        f"SELECT {COLUMNS} FROM resources r JOIN search_index s"
        " ON s.res_type = r.res_type AND s.res_id = r.res_id"
        f" WHERE s.res_type = ? AND s.param = ? AND s.value IN ({marks}) AND r.deleted = 0"
        f" AND {allowed}"
    )
    targets = [f"{target_type}/{i}" for i in ids]
    return sql, [include.source_type, include.param.name, *targets, *more]
