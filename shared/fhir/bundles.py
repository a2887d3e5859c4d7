"""The Bundles barnebro answers with: searchset, history, batch- and transaction-response.

Entries carry the stored bytes as they are (`orjson.Fragment`), so a page is serialised
once. Links keep the caller's own parameters, so paging repeats the same search.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import orjson

from shared.fhir.errors import Issue, operation_outcome
from shared.fhir.search_query import SearchQuery
from shared.store.resource_store import DEFAULT_PAGE_BYTES, SearchPage, StoredResource


def _entry(stored: StoredResource, base: str, mode: str) -> dict[str, Any]:
    return {
        "fullUrl": f"{base}/{stored.res_type}/{stored.res_id}",
        "resource": orjson.Fragment(stored.body or b"{}"),
        "search": {"mode": mode},
    }


def searchset(
    resource_type: str, query: SearchQuery, page: SearchPage, base: str
) -> dict[str, Any]:
    """One page of a search: its matches, what they include, warnings and paging links;
    a search for the total alone (`_summary=count`, `_count=0`) has no entries."""
    self_params = list(query.link_params)
    if query.cursor_token is not None:
        self_params.append(("_cursor", query.cursor_token))
    links = [{"relation": "self", "url": f"{base}/{resource_type}?{urlencode(self_params)}"}]
    if page.next_cursor:
        next_params = [*query.link_params, ("_cursor", page.next_cursor)]
        links.append(
            {"relation": "next", "url": f"{base}/{resource_type}?{urlencode(next_params)}"}
        )
    entries = [_entry(r, base, "match") for r in page.resources]
    entries += [_entry(r, base, "include") for r in page.included]
    warnings = list(query.warnings)
    if page.omitted_includes:
        warnings.append(
            Issue(
                "too-costly",
                f"{page.omitted_includes} included resources were left out to keep the"
                " page within the message size limit; use a smaller _count",
                severity="warning",
            )
        )
    if warnings:
        entries.append({"resource": operation_outcome(warnings), "search": {"mode": "outcome"}})
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
    if page.total is not None:
        bundle["total"] = page.total
    bundle["link"] = links
    if entries or query.count:
        bundle["entry"] = entries
    return bundle


def _history_entry(stored: StoredResource, base: str) -> dict[str, Any]:
    url = f"{stored.res_type}/{stored.res_id}"
    entry: dict[str, Any] = {"fullUrl": f"{base}/{url}"}
    if stored.deleted:
        method, status = "DELETE", "204"
    else:
        entry["resource"] = orjson.Fragment(stored.body or b"{}")
        method = "POST" if stored.version == 1 else "PUT"
        status = "201" if stored.version == 1 else "200"
    entry["request"] = {"method": method, "url": stored.res_type if method == "POST" else url}
    entry["response"] = {"status": status, "etag": stored.etag, "lastModified": stored.last_updated}
    return entry


def history(
    path: str,
    params: list[tuple[str, str]],
    versions: list[StoredResource],
    next_seq: int | None,
    base: str,
) -> dict[str, Any]:
    """One page of a type's or an instance's history (`path`: its URL), newest first."""
    kept = [(k, v) for k, v in params if k != "_cursor"]
    links = [{"relation": "self", "url": f"{path}?{urlencode(params)}" if params else path}]
    if next_seq is not None:
        links.append(
            {"relation": "next", "url": f"{path}?{urlencode([*kept, ('_cursor', next_seq)])}"}
        )
    entries = [_history_entry(r, base) for r in versions]
    return {"resourceType": "Bundle", "type": "history", "link": links, "entry": entries}


def history_total(path: str, params: list[tuple[str, str]], total: int) -> dict[str, Any]:
    """A history asked for its total alone (`_summary=count`): the total, no entries."""
    link = [{"relation": "self", "url": f"{path}?{urlencode(params)}"}]
    return {"resourceType": "Bundle", "type": "history", "total": total, "link": link}


def batch_response(results: list[dict[str, Any]]) -> bytes:
    """A batch's answer: one result per entry, in the Bundle's order."""
    return orjson.dumps({"resourceType": "Bundle", "type": "batch-response", "entry": results})


def transaction_response(outcomes: list[dict[str, Any]]) -> bytes:
    """A committed transaction's answer. Resources are optional in a
    transaction-response: when they would make it too large to send, statuses, locations
    and ETags stay and the resources go (the writes are committed: the answer must get
    through)."""
    response = {"resourceType": "Bundle", "type": "transaction-response", "entry": outcomes}
    answer = orjson.dumps(response)
    if len(answer) > DEFAULT_PAGE_BYTES:
        for result in outcomes:
            result.pop("resource", None)
        answer = orjson.dumps(response)
    return answer
