"""The service-side FHIR engine on its own: search parsing, search SQL, a transaction's
order and ids, the unit of work and the router, on SQLite files and nothing else.

A small resource type (`Basic`) with a token, a string, a date and a reference parameter
stands in for a service's definitions, so these tests pin the engine's behaviour rather
than any service's rules.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from shared.fhir import writes
from shared.fhir.bundle_entries import bundle_entries
from shared.fhir.definitions import Change, ResourceDefinition, WriteContext
from shared.fhir.errors import FhirError, Issue, error
from shared.fhir.router import FhirRouter
from shared.fhir.search_params import ParamType, SearchParam
from shared.fhir.search_query import MAX_COUNT, parse_search
from shared.fhir.service import FhirService
from shared.fhir.transaction import _assign_ids, _referenced_first, _rewrite
from shared.store.database import Database, SqliteDatabase
from shared.store.schema import create_schema
from shared.transport.wire import Caller, FhirRequest, FhirResponse

BASE = "http://unit/fhir"
POST = {"method": "POST", "url": "Basic"}
CALLER = Caller(credential="service", client_id="unit", scopes=["system/*.cruds"])
"""A barnebro service: the permission table lets it through to the engine under test."""


class BasicDefinition(ResourceDefinition):
    resource_type = "Basic"
    update_create = True
    search_params = (
        SearchParam("code", ParamType.TOKEN, ("code",)),
        SearchParam("author", ParamType.REFERENCE, ("author",), targets=("Basic",)),
        SearchParam("created", ParamType.DATE, ("created",)),
        SearchParam("note", ParamType.STRING, ("extension.valueString",)),
    )

    def unique_keys(self, resource: dict[str, Any]) -> list[tuple[str, str]]:
        return [("basic-code", c["code"]) for c in resource.get("code", {}).get("coding", [])
                if c.get("system") == "urn:unique"]  # fmt: skip

    async def check_write(self, resource: dict[str, Any], write: WriteContext) -> list[Issue]:
        if resource.get("code", {}).get("text") == "refuse":
            raise error(422, "business-rule", "refused by the rules")
        return []

    async def after_write(self, change: Change, write: WriteContext) -> None:
        if (change.after or {}).get("code", {}).get("text") == "fail-after":
            raise error(409, "conflict", "a follow-on write failed")


def basic(
    code: str, *, created: str = "2026-01-15", note: str = "", **extra: Any
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Basic",
        "code": {"coding": [{"system": "urn:test", "code": code}], "text": extra.pop("text", code)},
        "created": created,
        **extra,
    }
    if note:
        resource["extension"] = [{"url": "urn:note", "valueString": note}]
    return resource


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[FhirService]:
    db: Database = await SqliteDatabase.connect(tmp_path / "unit.sqlite")
    await create_schema(db)
    try:
        yield FhirService("unit", [BasicDefinition()], db, prefix="unit")
    finally:
        await db.close()


def request(interaction: str, **fields: Any) -> FhirRequest:
    return FhirRequest(
        interaction=interaction, resource_type="Basic", base_url=BASE, caller=CALLER, **fields
    )


async def call(
    service: FhirService, interaction: str, body: Any = None, **fields: Any
) -> FhirResponse:
    payload = orjson.dumps(body) if body is not None else b""
    try:
        return await FhirRouter(service).handle(request(interaction, **fields), payload)
    except FhirError as exc:
        return FhirResponse(
            status=exc.status, body=orjson.dumps([i.diagnostics for i in exc.issues])
        )


async def ids(service: FhirService, params: list[tuple[str, str]]) -> list[str]:
    reply = await call(service, "search", params=params)
    assert reply.status == 200, reply.body
    entries = orjson.loads(reply.body).get("entry", [])
    return sorted(e["resource"]["code"]["text"] for e in entries if e["search"]["mode"] == "match")


# -- search parsing ----------------------------------------------------------------------


DECLARED = {"Basic": BasicDefinition().params_by_name()}


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ([("nope", "x")], 400),
        ([("code:contains", "x")], 400),
        ([("_count", str(MAX_COUNT + 1))], 400),
        ([("_count", "-1")], 400),
        ([("created", "2026-13-40")], 400),
        ([("code", "")], 400),
        ([("_total", "maybe")], 400),
        ([("_include", "Basic:code")], 400),
        ([("_cursor", "not-a-cursor")], 400),
        ([("_sort", "created")], 400),
    ],
)
def test_bad_searches_are_refused(params: list[tuple[str, str]], status: int) -> None:
    with pytest.raises(FhirError) as caught:
        parse_search("Basic", params, DECLARED)
    assert caught.value.status == status


def test_lenient_handling_turns_unknown_parameters_into_warnings() -> None:
    query = parse_search("Basic", [("nope", "x"), ("code", "a")], DECLARED, lenient=True)
    assert [c.param.name for c in query.criteria] == ["code"]
    assert [w.severity for w in query.warnings] == ["warning"]


def test_search_parsing_reads_values_modifiers_and_includes() -> None:
    query = parse_search(
        "Basic",
        [("code", "urn:test|a,b"), ("created", "ge2026-01-01"), ("_include", "Basic:author"),
         ("_total", "accurate"), ("_count", "5"), ("_format", "json")],
        DECLARED,
    )  # fmt: skip
    code, created = query.criteria
    assert code.values == (("urn:test", "a"), (None, "b"))
    assert created.values[0].prefix == "ge"
    assert [i.param.name for i in query.includes] == ["author"]
    assert query.total and query.count == 5
    assert ("_format", "json") not in query.link_params


# -- search SQL, on SQLite ---------------------------------------------------------------


async def test_searches_find_what_their_parameters_say(service: FhirService) -> None:
    for code, created, note in (("a", "2026-01-10", "Første møte"), ("b", "2026-02-10", "Andre"),
                                ("c", "2026-03-10", "første igjen")):  # fmt: skip
        assert (
            await call(service, "create", basic(code, created=created, note=note))
        ).status == 201
    assert await ids(service, [("code", "a,c")]) == ["a", "c"]
    assert await ids(service, [("code", "urn:test|b")]) == ["b"]
    assert await ids(service, [("code", "urn:other|b")]) == []
    assert await ids(service, [("created", "ge2026-02-01")]) == ["b", "c"]
    assert await ids(service, [("created", "lt2026-02-10")]) == ["a"]
    assert await ids(service, [("created", "2026-03")]) == ["c"]
    assert await ids(service, [("note", "før")]) == ["a", "c"], "string: prefix, any case"
    assert await ids(service, [("note:exact", "Første møte")]) == ["a"]
    assert await ids(service, [("code", "a"), ("created", "ge2026-02-01")]) == [], "AND"


async def test_paging_visits_every_match_once_and_counts_them(service: FhirService) -> None:
    for index in range(7):
        await call(service, "create", basic(f"p{index}"))
    seen: list[str] = []
    params = [("_count", "3"), ("_total", "accurate"), ("_sort", "_lastUpdated")]
    while True:
        reply = await call(service, "search", params=params)
        bundle = orjson.loads(reply.body)
        assert bundle["total"] == 7
        seen += [e["resource"]["code"]["text"] for e in bundle["entry"]]
        following = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
        if not following:
            break
        cursor = following[0].split("_cursor=")[1]
        params = [*params[:3], ("_cursor", cursor)]
    assert seen == [f"p{index}" for index in range(7)]


async def test_include_brings_what_a_match_refers_to(service: FhirService) -> None:
    author = orjson.loads((await call(service, "create", basic("author"))).body)
    written = basic("written", author={"reference": f"Basic/{author['id']}"})
    assert (await call(service, "create", written)).status == 201
    reply = await call(
        service, "search", params=[("code", "written"), ("_include", "Basic:author")]
    )
    modes = [
        (e["search"]["mode"], e["resource"]["code"]["text"])
        for e in orjson.loads(reply.body)["entry"]
    ]
    assert modes == [("match", "written"), ("include", "author")]


# -- the unit of work and the router ---------------------------------------------------


async def test_a_resource_lives_through_its_versions(service: FhirService) -> None:
    created = await call(service, "create", basic("v"))
    assert created.status == 201 and created.headers["ETag"] == 'W/"1"'
    res_id = orjson.loads(created.body)["id"]
    stale = await call(service, "update", basic("v2"), id=res_id, if_match='W/"7"')
    assert stale.status == 412
    updated = await call(service, "update", basic("v2"), id=res_id, if_match='W/"1"')
    assert updated.status == 200 and updated.headers["ETag"] == 'W/"2"'
    first = await call(service, "vread", id=res_id, version="1")
    assert orjson.loads(first.body)["code"]["text"] == "v"
    assert (await call(service, "delete", id=res_id)).status == 204
    assert (await call(service, "read", id=res_id)).status == 410
    history = orjson.loads((await call(service, "history-instance", id=res_id)).body)
    assert [e["request"]["method"] for e in history["entry"]] == ["DELETE", "PUT", "POST"]
    async with service.db.reader() as conn:
        events = await conn.fetch("SELECT payload FROM outbox ORDER BY seq")
    kinds = [orjson.loads(bytes(e[0]))["type"] for e in events]
    assert kinds == ["unit.Basic.created", "unit.Basic.updated", "unit.Basic.deleted"]


async def test_a_write_and_its_follow_on_writes_commit_together_or_not_at_all(
    service: FhirService,
) -> None:
    refused = await call(service, "create", basic("x", text="fail-after"))
    assert refused.status == 409
    async with service.db.reader() as conn:
        assert await conn.fetch("SELECT 1 FROM resources") == []
        assert await conn.fetch("SELECT 1 FROM outbox") == []
        assert await conn.fetch("SELECT 1 FROM search_index") == []


async def test_a_conditional_create_finds_instead_of_creating(service: FhirService) -> None:
    first = await call(service, "create", basic("once"), if_none_exist="code=once")
    again = await call(service, "create", basic("once"), if_none_exist="code=once")
    assert (first.status, again.status) == (201, 200)
    assert again.headers["Location"] == first.headers["Location"]
    assert await ids(service, [("code", "once")]) == ["once"]


async def test_an_empty_if_none_exist_is_refused_not_ignored(service: FhirService) -> None:
    for empty in ("", "_count=0"):
        reply = await call(service, "create", basic("cond"), if_none_exist=empty)
        assert reply.status == 400, (empty, reply.body)
        assert b"needs at least one search criterion" in reply.body
    assert await ids(service, [("code", "cond")]) == []


async def test_a_business_key_is_held_by_one_resource(service: FhirService) -> None:
    keyed = basic("k")
    keyed["code"]["coding"].append({"system": "urn:unique", "code": "K-1"})
    assert (await call(service, "create", keyed)).status == 201
    assert (await call(service, "create", keyed)).status == 409


async def test_validate_checks_as_create_does_and_writes_nothing(service: FhirService) -> None:
    reply = await call(service, "validate", basic("r", text="refuse"))
    outcome = orjson.loads(reply.body)
    assert reply.status == 200 and outcome["issue"][0]["diagnostics"] == "refused by the rules"
    assert await ids(service, []) == []


# -- a transaction's order and ids -------------------------------------------------------


def entries(*specs: tuple[str, str, str | None, list[str]]) -> list[Any]:
    """(method, url, fullUrl, references) per entry, as a Bundle's entries parsed."""
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {**({"fullUrl": full_url} if full_url else {}),
         "request": {"method": method, "url": url},
         **({"resource": {"resourceType": "Basic",
                          "extension": [{"url": "urn:r", "valueReference": {"reference": r}}
                                        for r in refs]}}
            if method in ("POST", "PUT") else {})}
        for method, url, full_url, refs in specs
    ]}  # fmt: skip
    return bundle_entries(bundle, "transaction")


def test_a_created_resource_comes_before_the_entries_that_refer_to_it() -> None:
    parsed = entries(
        ("GET", "Basic/x", None, []),
        ("POST", "Basic", "urn:uuid:b", ["urn:uuid:a"]),
        ("PUT", "Basic/y", None, []),
        ("POST", "Basic", "urn:uuid:a", []),
        ("DELETE", "Basic/z", None, []),
    )
    order = sorted(
        range(len(parsed)),
        key=lambda i: ["DELETE", "POST", "PUT", "GET"].index(parsed[i][1].method),
    )
    assert _referenced_first(parsed, order) == [4, 3, 1, 2, 0]


def test_a_cycle_keeps_the_bundles_order() -> None:
    parsed = entries(
        ("POST", "Basic", "urn:uuid:a", ["urn:uuid:b"]),
        ("POST", "Basic", "urn:uuid:b", ["urn:uuid:a"]),
    )
    assert _referenced_first(parsed, [0, 1]) == [0, 1]


def test_created_resources_get_ids_and_references_follow_them() -> None:
    parsed = entries(("POST", "Basic", "urn:uuid:a", []), ("PUT", "Basic/y", None, ["urn:uuid:a"]))
    assigned = _assign_ids(parsed)
    assert list(assigned) == ["urn:uuid:a"] and assigned["urn:uuid:a"].startswith("Basic/")
    rewritten = _rewrite(parsed[1][0]["resource"], assigned)
    assert rewritten["extension"][0]["valueReference"]["reference"] == assigned["urn:uuid:a"]
    with pytest.raises(FhirError):
        _assign_ids(
            entries(("POST", "Basic", "urn:uuid:a", []), ("POST", "Basic", "urn:uuid:a", []))
        )


async def test_a_transaction_is_one_unit_of_work(service: FhirService) -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:a", "resource": basic("ta"), "request": POST},
        {"resource": basic("tb", author={"reference": "urn:uuid:a"}), "request": POST},
    ]}  # fmt: skip
    answer = await FhirRouter(service).handle(request("transaction"), orjson.dumps(bundle))
    made = [e["response"]["status"] for e in orjson.loads(answer.body)["entry"]]
    assert made == ["201", "201"]
    refused = {"resource": basic("tc", text="refuse"), "request": POST}
    failing = {**bundle, "entry": [*bundle["entry"], refused]}
    with pytest.raises(FhirError) as caught:
        await FhirRouter(service).handle(request("transaction"), orjson.dumps(failing))
    assert caught.value.status == 422 and "Bundle.entry[2]" in caught.value.issues[0].diagnostics
    assert await ids(service, []) == ["ta", "tb"], "the failed one left nothing"


async def test_writes_use_the_narrow_unit_of_work(service: FhirService) -> None:
    """What hooks get (`find`, `read_for_update`, `save`) is the same transaction."""
    async with service.unit_of_work(request("create")) as uow:
        saved = await uow.save(basic("saved"))
        found = await uow.find("Basic", [("code", "saved")])
        assert [f.res_id for f in found] == [saved.res_id]
        locked = await uow.read_for_update("Basic", saved.res_id)
        assert locked is not None and locked.version == 1
        answer = await writes.update(uow.bound(request("update", id=saved.res_id)),
                                     service.definitions["Basic"], basic("saved-2"))  # fmt: skip
        assert answer.status == 200
    assert await ids(service, [("code", "saved-2")]) == ["saved-2"]
