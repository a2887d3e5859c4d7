"""Versioned FHIR resources: current version, full history, search index, unique keys.

Every method takes the connection of the caller's transaction, so a resource write, its
index rows and its outbox event commit together (the unit of work that holds it is
`shared.fhir.unit_of_work`). Stored bodies are the exact JSON bytes served on reads.
Kept whole though over the usual size: every statement here relies on the same tables and
on the trigger that keeps history and the index in step (`shared.store.schema`).
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import orjson

from shared.clock import now_instant
from shared.fhir.errors import FhirError, Issue, error
from shared.fhir.profiles import with_profile
from shared.fhir.search_params import IndexValue, SearchParam, index_values
from shared.fhir.search_query import SearchQuery, encode_cursor
from shared.store.access_sql import (
    NO_ACCESS_COLUMNS,
    AccessFilter,
    ResourceAccess,
    parties_of,
)
from shared.store.database import IN_TEXT_LIST, Connection, text_list
from shared.store.failures import VersionConflict
from shared.store.history_sql import history_where
from shared.store.outbox import Message
from shared.store.search_sql import (
    COLUMNS,
    build_search,
    include_references_sql,
    resources_by_id_sql,
    revinclude_sql,
    searched_patients,
)
from shared.store.stored import StoredResource as StoredResource
from shared.store.version_write import NewVersion, UniqueKey, store_new_versions, store_version
from shared.store.write_locks import locked_row


@dataclass(frozen=True)
class SearchPage:
    resources: list[StoredResource]
    included: list[StoredResource]
    next_cursor: str | None
    total: int | None
    omitted_includes: int = 0


DEFAULT_PAGE_BYTES = 800_000
"""About how many bytes of resources one page may carry (NATS allows 1 MB per message)."""


def _within_budget(rows: Sequence[Any], max_bytes: int, *, keep_first: bool = True) -> list[Any]:
    """The leading rows whose bodies (column 5, or `.body`) fit in `max_bytes`; the first
    row is kept whatever its size when `keep_first` (a page always makes progress)."""
    kept: list[Any] = []
    size = 0
    for row in rows:
        body = row.body if isinstance(row, StoredResource) else row[5]
        size += len(body or b"")
        if size > max_bytes and (kept or not keep_first):
            break
        kept.append(row)
    return kept


def new_id() -> str:
    return str(uuid.uuid4())


_COLUMNS = "res_type, res_id, version, last_updated, deleted, body"
_HISTORY_COLUMNS = (
    "h.res_type, h.res_id, h.version, h.last_updated, h.deleted, h.body,"
    " h.patient, h.category, h.author, h.parties"
)
_HISTORY_FROM = "resource_history h"
"""Each version is released by its own access columns: a resource whose patient was
corrected keeps its old version with the patient it was then about."""


class AccessFor(Protocol):
    """The access filter for the resources of one type (None: no filter). Given
    `patients`, the rows looked for are about those patients only, and the filter may
    leave out what it allows about anyone else (`AccessFilter.within`)."""

    def __call__(
        self, res_type: str, patients: Collection[str] | None = None
    ) -> AccessFilter | None: ...


def _row(row: Any) -> StoredResource:
    body = row[5]
    return StoredResource(
        row[0],
        row[1],
        row[2],
        row[3],
        bool(row[4]),
        bytes(body) if body is not None else None,
        ResourceAccess(row[6], row[7], row[8], parties_of(row[9])),
    )


def _inline_columns(alias: str) -> str:
    """The columns of a version, its body only up to a length (the statement's first
    parameter), and whether it has one."""
    a = alias
    return (
        f"{a}.res_type, {a}.res_id, {a}.version, {a}.last_updated, {a}.deleted,"
        f" CASE WHEN length({a}.body) <= ? THEN {a}.body END,"
        f" {a}.patient, {a}.category, {a}.author, {a}.parties, {a}.body IS NOT NULL"
    )


def _inline_row(row: Any) -> StoredResource:
    stored = _row(row)
    if stored.body is None and row[10]:
        return replace(stored, body_withheld=True)
    return stored


def no_filter(res_type: str, patients: Collection[str] | None = None) -> AccessFilter | None:
    """No access filter for any type (an unguarded service)."""
    return None


class ResourceStore:
    """CRUD, history and search over the tables of `shared.store.schema`."""

    def __init__(self, search_params: dict[str, dict[str, SearchParam]]) -> None:
        self.search_params = search_params

    async def read(self, conn: Connection, res_type: str, res_id: str) -> StoredResource | None:
        row = await conn.fetchrow(
            f"SELECT {COLUMNS} FROM resources r WHERE r.res_type = ? AND r.res_id = ?",
            res_type,
            res_id,
        )
        return _row(row) if row else None

    async def read_current(
        self, conn: Connection, keys: Sequence[tuple[str, str]], *, inline_bytes: int
    ) -> list[StoredResource | None]:
        """The current version of each `(type, id)` of `keys`, None where there is none:
        one statement per type (`ServiceData.current` gathers them). A body longer than
        `inline_bytes` is not read (`body_withheld`)."""
        found: dict[tuple[str, str], StoredResource] = {}
        for res_type in dict.fromkeys(t for t, _ in keys):
            ids = [i for t, i in keys if t == res_type]
            rows = await conn.fetch(
                f"SELECT {_inline_columns('r')} FROM resources r"
                f" WHERE r.res_type = ? AND r.res_id {IN_TEXT_LIST}",
                inline_bytes,
                res_type,
                text_list(ids),
            )
            found.update({(res_type, row[1]): _inline_row(row) for row in rows})
        return [found.get(key) for key in keys]

    async def read_for_update(
        self,
        conn: Connection,
        res_type: str,
        res_id: str,
        *,
        patient: str | None = None,
        stored_patient: bool = False,
        also: str | None = None,
    ) -> StoredResource | None:
        """The current version, its row locked until the transaction ends, after the
        lock of `patient` or of the patient it names, and of `also`
        (`shared.store.write_locks`)."""
        row = await locked_row(
            conn, res_type, res_id, patient=patient, stored_patient=stored_patient, also=also
        )
        return _row(row) if row else None

    async def of_patient(
        self, conn: Connection, res_type: str, patient: str
    ) -> list[StoredResource]:
        """Every current resource of a type about one patient (by the access column)."""
        rows = await conn.fetch(
            f"SELECT {COLUMNS} FROM resources r"
            " WHERE r.res_type = ? AND r.patient = ? AND r.deleted = 0 ORDER BY r.res_id",
            res_type,
            patient,
        )
        return [_row(row) for row in rows]

    async def existing(self, conn: Connection, res_type: str, ids: Sequence[str]) -> set[str]:
        """Which of `ids` are stored (deleted or not)."""
        if not ids:
            return set()
        marks = ", ".join("?" * len(ids))
        rows = await conn.fetch(
            f"SELECT res_id FROM resources WHERE res_type = ? AND res_id IN ({marks})",
            res_type,
            *ids,
        )
        return {str(row[0]) for row in rows}

    async def carrying_all(
        self, conn: Connection, res_type: str, values: Sequence[tuple[str, str]], limit: int
    ) -> list[StoredResource]:
        """Current resources of a type whose index holds every one of `values` (search
        parameter, exact value), found by intersecting the index rows of each value. For
        a rare value beside a common one (an hpl §33 disclosure among a child's many
        audit records) the cost follows the rows of each value, where a search would walk
        every resource of the common one."""
        selects = " INTERSECT ".join(
            "SELECT res_id FROM search_index WHERE res_type = ? AND param = ? AND value = ?"
            for _ in values
        )
        rows = await conn.fetch(
            f"SELECT {COLUMNS} FROM resources r WHERE r.res_type = ? AND r.deleted = 0"
            f" AND r.res_id IN ({selects}) ORDER BY r.res_id LIMIT ?",
            res_type,
            *[arg for param, value in values for arg in (res_type, param, value)],
            limit,
        )
        return [_row(row) for row in rows]

    async def vread(
        self,
        conn: Connection,
        res_type: str,
        res_id: str,
        version: int,
        *,
        inline_bytes: int | None = None,
    ) -> StoredResource | None:
        """One version; with `inline_bytes`, a longer body is not read (`body_withheld`)."""
        columns, args = _HISTORY_COLUMNS, [res_type, res_id, version]
        if inline_bytes is not None:
            columns, args = _inline_columns("h"), [inline_bytes, *args]
        row = await conn.fetchrow(
            f"SELECT {columns} FROM {_HISTORY_FROM}"
            " WHERE h.res_type = ? AND h.res_id = ? AND h.version = ?",
            *args,
        )
        if not row:
            return None
        return _row(row) if inline_bytes is None else _inline_row(row)

    def next_version(
        self,
        resource: dict[str, Any] | None,
        *,
        res_type: str,
        res_id: str,
        previous: StoredResource | None,
        access: ResourceAccess = NO_ACCESS_COLUMNS,
    ) -> StoredResource:
        """The version that follows `previous` (a deletion when `resource` is None), as it
        will be stored: `resource` gets its id, `versionId` and `lastUpdated`."""
        version = previous.version + 1 if previous else 1
        last_updated = now_instant()
        body: bytes | None = None
        if resource is not None:
            resource["id"] = res_id
            meta = with_profile(dict(resource.get("meta") or {}), res_type)
            meta["versionId"] = str(version)
            meta["lastUpdated"] = last_updated
            resource["meta"] = meta
            body = orjson.dumps(resource)
        return StoredResource(
            res_type, res_id, version, last_updated, resource is None, body, access
        )

    async def write(
        self,
        conn: Connection,
        stored: StoredResource,
        resource: dict[str, Any] | None,
        *,
        previous: StoredResource | None,
        unique_keys: Sequence[UniqueKey] = (),
        previous_keys: Sequence[UniqueKey] = (),
        name_holder: bool = True,
        messages: Sequence[Message] = (),
        at_commit: bool = False,
    ) -> None:
        """Store `stored` (from `next_version`) after `previous`, with its index rows, its
        unique keys (`previous_keys` are those of `previous`) and `messages` for the
        outbox, all in the caller's transaction (`shared.store.version_write`). With
        `at_commit`, a conflict may be raised only by the transaction's next statement
        or its commit, as a `VersionConflict` (`refusal` answers it)."""
        index = [] if resource is None else self._index_values(stored.res_type, resource)
        conflict = await store_version(
            conn,
            stored,
            previous_version=previous.version if previous is not None else 0,
            index=index,
            keys=unique_keys if resource is not None else (),
            previous_keys=previous_keys,
            messages=messages,
            at_commit=at_commit,
        )
        if conflict is not None:
            raise refusal(conflict, name_holder=name_holder)

    async def write_new(
        self,
        conn: Connection,
        versions: Sequence[tuple[StoredResource, dict[str, Any], Sequence[Message]]],
    ) -> None:
        """Store first versions of resources without unique keys, each with its index rows
        and messages, in one batch (`shared.store.version_write.store_new_versions`)."""
        await store_new_versions(
            conn,
            [
                NewVersion(stored, self._index_values(stored.res_type, resource), messages)
                for stored, resource, messages in versions
            ],
        )

    async def share_history(
        self, conn: Connection, res_type: str, res_id: str, parties: Iterable[str]
    ) -> None:
        """Give every stored version of a resource the parties of its current version: an
        organisation a record is shared with sees its history too."""
        await conn.execute(
            "UPDATE resource_history SET parties = ? WHERE res_type = ? AND res_id = ?",
            ResourceAccess(parties=tuple(parties)).parties_text, res_type, res_id,
        )  # fmt: skip

    def _index_values(
        self, res_type: str, resource: dict[str, Any]
    ) -> list[tuple[str, IndexValue]]:
        return [
            (param.name, value)
            for param in self.search_params.get(res_type, {}).values()
            for value in index_values(param, resource)
        ]

    async def claim_conditional(self, conn: Connection, res_type: str) -> None:
        """Serialise the conditional creates of one resource type on a unique row.

        The upsert takes a row lock held until the transaction ends, so a second conditional
        create waits and then sees the first one's resource, whatever criteria either used
        (equivalent criteria can be written in many ways: family=X, name=x, ...).
        """
        await conn.execute(
            "INSERT INTO conditional_claims (res_type, criteria) VALUES (?, '*')"
            " ON CONFLICT (res_type, criteria) DO UPDATE SET criteria = excluded.criteria",
            res_type,
        )

    async def history(
        self,
        conn: Connection,
        res_type: str | None,
        res_id: str | None,
        *,
        since: str | None,
        count: int,
        before_seq: int | None,
        max_bytes: int = DEFAULT_PAGE_BYTES,
        access: AccessFilter | None = None,
    ) -> tuple[list[StoredResource], int | None]:
        """Versions newest first of the resources `access` allows; returns the page (at
        most `count` versions and about `max_bytes` of resources) and the cursor (seq) of
        the next page."""
        where, args = history_where(access, res_type, res_id, since, before_seq)
        rows = await conn.fetch(
            f"SELECT {_HISTORY_COLUMNS}, h.seq FROM {_HISTORY_FROM}"
            f" WHERE {where} ORDER BY h.seq DESC LIMIT ?",
            *args,
            count + 1,
        )
        kept = _within_budget(rows[:count], max_bytes)
        page = [_row(r) for r in kept]
        next_seq = kept[-1][10] if len(rows) > len(kept) and kept else None
        return page, next_seq

    async def history_total(
        self,
        conn: Connection,
        res_type: str | None,
        res_id: str | None,
        *,
        since: str | None,
        access: AccessFilter | None = None,
    ) -> int:
        """How many versions `history` would page through."""
        where, args = history_where(access, res_type, res_id, since)
        row = await conn.fetchrow(f"SELECT COUNT(*) FROM {_HISTORY_FROM} WHERE {where}", *args)
        return int(row[0]) if row else 0

    async def search(
        self,
        conn: Connection,
        query: SearchQuery,
        max_bytes: int = DEFAULT_PAGE_BYTES,
        access_for: AccessFor = no_filter,
    ) -> SearchPage:
        """One page: at most `query.count` matches and about `max_bytes` of resources
        (a page must fit in one NATS message), with the cursor of the next page.

        Matches, `_total` and included resources are all limited to what
        `access_for(type)` allows, in SQL, so nothing filtered out is counted."""
        access = access_for(query.resource_type, searched_patients(query))
        sql, args = build_search(query, self.search_params, access=access)
        rows = await conn.fetch(sql, *args)
        resources = [_row(r) for r in _within_budget(rows[: query.count], max_bytes)]
        next_cursor = None
        if len(rows) > len(resources) and resources:
            last = resources[-1]
            key = last.last_updated if query.sort.endswith("_lastUpdated") else last.res_id
            next_cursor = encode_cursor(key, last.res_id)
        total = None
        if query.total:
            count_sql, count_args = build_search(
                query, self.search_params, access=access, count_only=True
            )
            row = await conn.fetchrow(count_sql, *count_args)
            total = int(row[0]) if row else 0
        included = await self._included(conn, query, resources, access_for)
        room = max_bytes - sum(len(r.body or b"") for r in resources)
        kept = _within_budget(included, room, keep_first=False)
        return SearchPage(resources, kept, next_cursor, total, len(included) - len(kept))

    async def _included(
        self,
        conn: Connection,
        query: SearchQuery,
        page: list[StoredResource],
        access_for: AccessFor,
    ) -> list[StoredResource]:
        if not page or not (query.includes or query.revincludes):
            return []
        ids = [r.res_id for r in page]
        found: dict[tuple[str, str], StoredResource] = {}
        for include in query.includes:
            sql, args = include_references_sql(include, ids)
            wanted: dict[str, list[str]] = {}
            for (value,) in await conn.fetch(sql, *args):
                target_type, _, target_id = str(value).partition("/")
                if target_type in self.search_params and include.target_type in (None, target_type):
                    wanted.setdefault(target_type, []).append(target_id)
            for target_type, target_ids in wanted.items():
                sql, args = resources_by_id_sql(target_type, target_ids, access_for(target_type))
                for row in await conn.fetch(sql, *args):
                    found.setdefault((row[0], row[1]), _row(row))
        for include in query.revincludes:
            access = access_for(include.source_type)
            sql, args = revinclude_sql(include, query.resource_type, ids, access)
            for row in await conn.fetch(sql, *args):
                found.setdefault((row[0], row[1]), _row(row))
        on_page = {(r.res_type, r.res_id) for r in page}
        return [r for key, r in found.items() if key not in on_page]


@dataclass
class DuplicateKey(FhirError):
    """A business key another resource holds: a 409 that names the holder only where the
    caller may know it, and tells the service which resource the conflict disclosed."""

    holder: tuple[str, str] = ("", "")


def refusal(conflict: VersionConflict, *, name_holder: bool) -> FhirError:
    """The answer to a version the store refused: 409, and for a business key another
    resource holds (`DuplicateKey`) that resource, named only with `name_holder` (the
    type holds no information about a patient)."""
    if conflict.reason == "changed":
        return error(
            409, "conflict", f"{conflict.res_type}/{conflict.res_id} was changed concurrently"
        )
    key_name, key_value = conflict.key
    named = name_holder and conflict.holder != ("", "")
    where = "/".join(conflict.holder) if named else "another resource"
    return DuplicateKey(
        409,
        [
            Issue(
                "duplicate",
                f"{key_name} {key_value} is already registered on {where};"
                " update that resource instead of creating another",
            )
        ],
        holder=conflict.holder,
    )
