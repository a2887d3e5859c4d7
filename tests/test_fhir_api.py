"""The FHIR REST interactions of the gateway, end to end on both databases."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qs, urlparse

from tests.support import Stack


def practitioner(family: str = "Hansen", **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Practitioner", "name": [{"family": family}], **extra}


def resource_path(location: str) -> str:
    """`…/fhir/Practitioner/1/_history/1` → `Practitioner/1`."""
    path = urlparse(location).path.split("/fhir/", 1)[1]
    return path.split("/_history")[0]


async def create(stack: Stack, resource: dict[str, Any]) -> dict[str, Any]:
    reply = await stack.call("POST", resource["resourceType"], resource)
    assert reply.status == 201, reply.body
    created: dict[str, Any] = reply.json()
    return created


async def test_create_read_vread_update_delete(stack: Stack) -> None:
    created = await stack.call("POST", "Practitioner", practitioner())
    assert created.status == 201
    assert created.headers["ETag"] == 'W/"1"'
    assert "Last-Modified" in created.headers
    path = resource_path(created.headers["Location"])
    body = created.json()
    assert body["meta"]["versionId"] == "1"
    assert path == f"Practitioner/{body['id']}"

    read = await stack.call("GET", path)
    assert read.status == 200 and read.json() == body

    body["name"] = [{"family": "Olsen"}]
    updated = await stack.call("PUT", path, body, headers={"If-Match": 'W/"1"'})
    assert updated.status == 200, updated.body
    assert updated.headers["ETag"] == 'W/"2"'
    assert updated.json()["name"] == [{"family": "Olsen"}]

    first = await stack.call("GET", f"{path}/_history/1")
    assert first.status == 200 and first.json()["name"] == [{"family": "Hansen"}]
    assert (await stack.call("GET", f"{path}/_history/9")).status == 404

    deleted = await stack.call("DELETE", path)
    assert deleted.status == 204
    gone = await stack.call("GET", path)
    assert gone.status == 410
    assert gone.issues()[0]["code"] == "deleted"
    history = (await stack.call("GET", f"{path}/_history")).json()
    assert [e["response"]["etag"] for e in history["entry"]] == ['W/"3"', 'W/"2"', 'W/"1"']
    assert history["entry"][0]["request"]["method"] == "DELETE"
    assert "resource" not in history["entry"][0]


async def test_update_with_stale_etag_is_412_and_changes_nothing(stack: Stack) -> None:
    created = await create(stack, practitioner())
    path = f"Practitioner/{created['id']}"
    created["name"] = [{"family": "Changed"}]
    stale = await stack.call("PUT", path, created, headers={"If-Match": 'W/"7"'})
    assert stale.status == 412
    assert stale.issues()[0]["severity"] == "error"
    assert (await stack.call("GET", path)).json()["name"] == [{"family": "Hansen"}]
    malformed = await stack.call("PUT", path, created, headers={"If-Match": "seven"})
    assert malformed.status == 400


async def test_concurrent_updates_with_the_same_etag_let_exactly_one_win(stack: Stack) -> None:
    created = await create(stack, practitioner())
    path = f"Practitioner/{created['id']}"

    async def attempt(name: str) -> int:
        body = {**created, "name": [{"family": name}]}
        return (await stack.call("PUT", path, body, headers={"If-Match": 'W/"1"'})).status

    statuses = await asyncio.gather(*(attempt(f"Name{i}") for i in range(6)))
    assert sorted(statuses) == [200] + [412] * 5
    assert (await stack.call("GET", path)).json()["meta"]["versionId"] == "2"


async def test_update_of_missing_id_is_refused_because_ids_are_server_assigned(
    stack: Stack,
) -> None:
    reply = await stack.call("PUT", "Practitioner/does-not-exist", practitioner())
    assert reply.status == 405
    assert "POST" in reply.issues()[0]["diagnostics"]
    assert (await stack.call("GET", "Practitioner/does-not-exist")).status == 404


async def test_update_with_id_mismatch_is_400(stack: Stack) -> None:
    created = await create(stack, practitioner())
    reply = await stack.call("PUT", f"Practitioner/{created['id']}", {**created, "id": "other"})
    assert reply.status == 400
    assert reply.issues()[0]["expression"] == ["id"]


async def test_prefer_return(stack: Stack) -> None:
    minimal = await stack.call(
        "POST", "Practitioner", practitioner(), headers={"Prefer": "return=minimal"}
    )
    assert minimal.status == 201 and minimal.body == b""
    assert "Location" in minimal.headers
    outcome = await stack.call(
        "POST", "Practitioner", practitioner(), headers={"Prefer": "return=OperationOutcome"}
    )
    assert outcome.status == 201
    assert outcome.issues()[0]["severity"] == "information"


async def test_conditional_create_returns_the_existing_resource(stack: Stack) -> None:
    hpr = {"system": "urn:oid:2.16.578.1.12.4.1.4.4", "value": "1234567"}
    condition = {"If-None-Exist": "identifier=urn:oid:2.16.578.1.12.4.1.4.4|1234567"}
    first = await stack.call(
        "POST", "Practitioner", practitioner(identifier=[hpr]), headers=condition
    )
    assert first.status == 201
    second = await stack.call(
        "POST", "Practitioner", practitioner(identifier=[hpr]), headers=condition
    )
    assert second.status == 200
    assert second.json()["id"] == first.json()["id"]


async def test_concurrent_conditional_creates_make_one_resource(stack: Stack) -> None:
    """No identifier unique key is involved: the conditional claim alone serialises them."""
    condition = {"If-None-Exist": "family=Concurrent&given=Ola"}
    body = {"resourceType": "Practitioner", "name": [{"family": "Concurrent", "given": ["Ola"]}]}
    await stack.admit("974760673", "bup")  # registered before, so only the creates race
    replies = await asyncio.gather(
        *(stack.call("POST", "Practitioner", body, headers=condition) for _ in range(8))
    )
    statuses = sorted(r.status for r in replies)
    assert statuses == [200] * 7 + [201], [r.body for r in replies]
    assert len({r.json()["id"] for r in replies}) == 1
    found = (await stack.call("GET", "Practitioner?family=Concurrent&_total=accurate")).json()
    assert found["total"] == 1


async def test_conditional_create_with_several_matches_is_412(stack: Stack) -> None:
    await create(stack, practitioner("Twin"))
    await create(stack, practitioner("Twin"))
    reply = await stack.call(
        "POST", "Practitioner", practitioner("Twin"), headers={"If-None-Exist": "family=Twin"}
    )
    assert reply.status == 412


async def test_search_basics_and_unknown_parameters(stack: Stack) -> None:
    a = await create(stack, practitioner("Berg", active=True))
    await create(stack, practitioner("Bakke", active=False))
    by_id = (await stack.call("GET", f"Practitioner?_id={a['id']}")).json()
    assert [e["resource"]["id"] for e in by_id["entry"]] == [a["id"]]
    assert by_id["entry"][0]["search"]["mode"] == "match"
    active = (await stack.call("GET", "Practitioner?active=true")).json()
    assert [e["resource"]["id"] for e in active["entry"]] == [a["id"]]
    prefix = (await stack.call("GET", "Practitioner?name=ba&_total=accurate")).json()
    assert prefix["total"] == 1
    exact = (await stack.call("GET", "Practitioner?family:exact=berg")).json()
    assert len(exact["entry"]) == 1
    unknown = await stack.call("GET", "Practitioner?colour=red")
    assert unknown.status == 400
    assert unknown.issues()[0]["expression"] == ["colour"]
    lenient = await stack.call(
        "GET", "Practitioner?colour=red", headers={"Prefer": "handling=lenient"}
    )
    assert lenient.status == 200
    outcome = [e for e in lenient.json()["entry"] if e["search"]["mode"] == "outcome"]
    assert outcome[0]["resource"]["issue"][0]["severity"] == "warning"
    bad_date = await stack.call("GET", "Practitioner?_lastUpdated=yesterday")
    assert bad_date.status == 400


async def test_last_updated_prefixes_and_sort(stack: Stack) -> None:
    first = await create(stack, practitioner("Early"))
    await asyncio.sleep(0.01)
    second = await create(stack, practitioner("Late"))
    cut = second["meta"]["lastUpdated"]
    after = (await stack.call("GET", f"Practitioner?_lastUpdated=ge{cut}")).json()
    assert [e["resource"]["id"] for e in after["entry"]] == [second["id"]]
    before = (await stack.call("GET", f"Practitioner?_lastUpdated=lt{cut}")).json()
    assert [e["resource"]["id"] for e in before["entry"]] == [first["id"]]
    newest = (await stack.call("GET", "Practitioner?_sort=-_lastUpdated")).json()
    assert [e["resource"]["id"] for e in newest["entry"]] == [second["id"], first["id"]]
    bad = await stack.call("GET", "Practitioner?_sort=family")
    assert bad.status == 400


async def test_paging_links_stay_correct_while_data_changes(stack: Stack) -> None:
    ids = [(await create(stack, practitioner(f"Page{i}")))["id"] for i in range(7)]
    page = (await stack.call("GET", "Practitioner?_count=3&_sort=_lastUpdated")).json()
    seen = [e["resource"]["id"] for e in page["entry"]]
    assert seen == ids[:3]
    # Changes between pages: delete something already seen, add a new one at the end.
    await stack.call("DELETE", f"Practitioner/{ids[0]}")
    late = (await create(stack, practitioner("PageLate")))["id"]
    while True:
        links = {link["relation"]: link["url"] for link in page["link"]}
        if "next" not in links:
            break
        assert parse_qs(urlparse(links["next"]).query)["_count"] == ["3"]
        page = (await stack.call("GET", links["next"])).json()
        seen += [e["resource"]["id"] for e in page["entry"]]
    assert seen == [*ids, late]
    bad = await stack.call("GET", "Practitioner?_cursor=not-a-cursor")
    assert bad.status == 400


async def test_type_history_with_since_and_count(stack: Stack) -> None:
    first = await create(stack, practitioner("H1"))
    await asyncio.sleep(0.01)
    second = await create(stack, practitioner("H2"))
    since = second["meta"]["lastUpdated"]
    recent = (await stack.call("GET", f"Practitioner/_history?_since={since}")).json()
    assert [e["resource"]["id"] for e in recent["entry"]] == [second["id"]]
    paged = (await stack.call("GET", "Practitioner/_history?_count=1")).json()
    assert [e["resource"]["id"] for e in paged["entry"]] == [second["id"]]
    next_url = next(link["url"] for link in paged["link"] if link["relation"] == "next")
    rest = (await stack.call("GET", next_url)).json()
    assert [e["resource"]["id"] for e in rest["entry"]] == [first["id"]]
    assert (await stack.call("GET", "Practitioner/_history?_count=x")).status == 400


async def test_bad_input_gets_operation_outcomes_not_500(stack: Stack) -> None:
    malformed = await stack.call("POST", "Practitioner", raw=b'{"resourceType": "Practi')
    assert malformed.status == 400
    assert malformed.issues()[0]["code"] == "structure"
    not_object = await stack.call("POST", "Practitioner", raw=b"[1, 2]")
    assert not_object.status == 400
    wrong_type = await stack.call("POST", "Practitioner", {"resourceType": "Organization"})
    assert wrong_type.status == 400
    invalid = await stack.call(
        "POST",
        "Practitioner",
        {"resourceType": "Practitioner", "name": [{"given": [5]}], "gender": 5, "x": 1},
    )
    assert invalid.status == 422
    expressions = {e for issue in invalid.issues() for e in issue.get("expression", [])}
    assert {"Practitioner.name[0].given[0]", "Practitioner.gender", "Practitioner.x"} <= (
        expressions
    )
    unknown_type = await stack.call("GET", "Spaceship/1")
    assert unknown_type.status == 404
    unsupported_type = await stack.call("GET", "Observation?code=x")
    assert unsupported_type.status == 404
    huge = await stack.call(
        "POST",
        "Practitioner",
        practitioner(text={"status": "generated", "div": "x" * 2_000_000}),
    )
    assert huge.status == 413
    assert huge.issues()[0]["code"] == "too-costly"
    wrong_media = await stack.call(
        "POST", "Practitioner", practitioner(), headers={"Content-Type": "text/plain"}
    )
    assert wrong_media.status == 415
    bad_id = await stack.call("GET", "Practitioner/has%20space")
    assert bad_id.status == 400
    wrong_method = await stack.call("DELETE", "Practitioner")  # no conditional delete
    assert wrong_method.status == 405
    not_a_patch = await stack.call("PATCH", "Practitioner/x", practitioner())
    assert not_a_patch.status == 400, not_a_patch.body
    empty = (await stack.call("GET", "Practitioner?_total=accurate")).json()
    assert empty["total"] == 0, "no rejected request may leave a resource behind"


async def test_validate_operation(stack: Stack) -> None:
    ok = await stack.call("POST", "Practitioner/$validate", practitioner())
    assert ok.status == 200 and ok.issues()[0]["severity"] == "information"
    bad = await stack.call("POST", "Practitioner/$validate", {"resourceType": "Practitioner",
                                                              "gender": 3})  # fmt: skip
    assert bad.status == 200
    assert bad.issues()[0]["severity"] == "error"
    assert bad.issues()[0]["expression"] == ["Practitioner.gender"]
    wrapped = await stack.call(
        "POST",
        "Practitioner/$validate",
        {"resourceType": "Parameters", "parameter": [{"name": "resource",
                                                      "resource": practitioner()}]},
    )  # fmt: skip
    assert wrapped.status == 200 and wrapped.issues()[0]["severity"] == "information"
    nothing = (await stack.call("GET", "Practitioner?_total=accurate")).json()
    assert nothing["total"] == 0


async def test_batch_runs_entries_independently(stack: Stack) -> None:
    existing = await create(stack, practitioner("Batch"))
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"resource": practitioner("B1"), "request": {"method": "POST", "url": "Practitioner"}},
            {"request": {"method": "GET", "url": f"Practitioner/{existing['id']}"}},
            {"request": {"method": "GET", "url": "Practitioner/missing"}},
            {"resource": {"resourceType": "Practitioner", "gender": 1},
             "request": {"method": "POST", "url": "Practitioner"}},
            {"request": {"method": "GET", "url": "Practitioner?family=Batch"}},
        ],
    }  # fmt: skip
    reply = await stack.call("POST", "", bundle)
    assert reply.status == 200, reply.body
    result = reply.json()
    assert result["type"] == "batch-response"
    statuses = [e["response"]["status"] for e in result["entry"]]
    assert statuses == ["201", "200", "404", "422", "200"]
    assert result["entry"][2]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert result["entry"][4]["resource"]["type"] == "searchset"


async def test_transaction_is_atomic_and_resolves_references(stack: Stack) -> None:
    org = {
        "resourceType": "Organization",
        "name": "BUP Vest",
        "type": [{"coding": [{"system": "https://fhir.barnebro.no/CodeSystem/organisation-kind",
                              "code": "bup"}]}],
    }  # fmt: skip
    role = {
        "resourceType": "PractitionerRole",
        "practitioner": {"reference": "urn:uuid:p1"},
        "organization": {"reference": "urn:uuid:o1"},
    }
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:r1", "resource": role,
             "request": {"method": "POST", "url": "PractitionerRole"}},
            {"fullUrl": "urn:uuid:p1", "resource": practitioner("Tx"),
             "request": {"method": "POST", "url": "Practitioner"}},
            {"fullUrl": "urn:uuid:o1", "resource": org,
             "request": {"method": "POST", "url": "Organization"}},
        ],
    }  # fmt: skip
    # Only the operator registers organisations: an organisation's transaction that
    # would is refused as a whole, and nothing of it is stored.
    refused = await stack.call("POST", "", bundle)
    assert refused.status == 403, refused.body
    assert refused.issues()[0]["diagnostics"].startswith("Bundle.entry[2]")
    left = (await stack.call("GET", "Practitioner?family=Tx&_total=accurate")).json()
    assert left["total"] == 0, "a refused transaction must leave nothing behind"

    operator = stack.operator_token()
    reply = await stack.call("POST", "", bundle, token=operator)
    assert reply.status == 200, reply.body
    entries = reply.json()["entry"]
    assert [e["response"]["status"] for e in entries] == ["201", "201", "201"]
    stored_role = entries[0]["resource"]
    assert (
        stored_role["practitioner"]["reference"] == f"Practitioner/{entries[1]['resource']['id']}"
    )
    assert (
        stored_role["organization"]["reference"] == f"Organization/{entries[2]['resource']['id']}"
    )

    broken = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": practitioner("TxRollback"),
             "request": {"method": "POST", "url": "Practitioner"}},
            {"resource": {"resourceType": "Organization", "name": "no kind"},
             "request": {"method": "POST", "url": "Organization"}},
        ],
    }  # fmt: skip
    failed = await stack.call("POST", "", broken, token=operator)
    assert failed.status == 422
    assert failed.issues()[0]["diagnostics"].startswith("Bundle.entry[1]")
    left = (await stack.call("GET", "Practitioner?family=TxRollback&_total=accurate")).json()
    assert left["total"] == 0, "a failed transaction must leave nothing behind"


async def test_a_transaction_with_prefer_minimal_answers_each_entry_without_its_body(
    stack: Stack,
) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": practitioner(f"Minimal{n}"),
             "request": {"method": "POST", "url": "Practitioner"}}
            for n in range(2)
        ],
    }  # fmt: skip
    reply = await stack.call("POST", "", bundle, headers={"Prefer": "return=minimal"})
    assert reply.status == 200, reply.body
    responses = [(set(e), e["response"]) for e in reply.json()["entry"]]
    assert [(keys, r["status"], r["etag"]) for keys, r in responses] == [
        ({"response"}, "201", 'W/"1"'),
        ({"response"}, "201", 'W/"1"'),
    ]
    for _, response in responses:
        read = await stack.call("GET", response["location"].split("/fhir/")[-1])
        assert read.status == 200 and read.json()["name"][0]["family"].startswith("Minimal")


async def test_a_transaction_refers_by_urn_uuid_only_to_its_own_created_entries(
    stack: Stack,
) -> None:
    role = {
        "resourceType": "PractitionerRole",
        "practitioner": {"reference": "urn:uuid:nowhere"},
    }
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": practitioner("Dangling"),
             "request": {"method": "POST", "url": "Practitioner"}},
            {"resource": role, "request": {"method": "POST", "url": "PractitionerRole"}},
        ],
    }  # fmt: skip
    reply = await stack.call("POST", "", bundle)
    assert reply.status == 400
    assert reply.issues()[0]["diagnostics"].startswith(
        "Bundle.entry[1]: the reference urn:uuid:nowhere names no entry"
    )
    left = (await stack.call("GET", "Practitioner?family=Dangling&_total=accurate")).json()
    assert left["total"] == 0
    for spelt in ("URN:UUID:nowhere", " urn:uuid:nowhere"):
        role["practitioner"] = {"reference": spelt}
        assert (await stack.call("POST", "", bundle)).status == 400
        alone = await stack.call("POST", "PractitionerRole", role)
        assert alone.status == 422, alone.body
        assert alone.issues()[0]["expression"] == ["PractitionerRole.practitioner.reference"]
        batch = {**bundle, "type": "batch"}
        entries = (await stack.call("POST", "", batch)).json()["entry"]
        assert [e["response"]["status"] for e in entries] == ["201", "422"]


async def test_transaction_with_an_unsupported_type_is_refused_before_anything_runs(
    stack: Stack,
) -> None:
    """The refusal of a transaction across two services is in test_gateway_routing."""
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": practitioner("X"), "request": {"method": "POST", "url": "Practitioner"}},
            {"resource": {"resourceType": "Observation"},
             "request": {"method": "POST", "url": "Observation"}},
        ],
    }  # fmt: skip
    reply = await stack.call("POST", "", bundle)
    assert reply.status == 404
    left = (await stack.call("GET", "Practitioner?family=X&_total=accurate")).json()
    assert left["total"] == 0


async def test_metadata_lists_what_the_services_register(stack: Stack) -> None:
    reply = await stack.call("GET", "metadata", authenticated=False)
    assert reply.status == 200
    statement = reply.json()
    assert statement["resourceType"] == "CapabilityStatement"
    resources = {r["type"]: r for r in statement["rest"][0]["resource"]}
    assert set(resources) == {
        "AuditEvent",
        "CodeSystem",
        "Consent",
        "HealthcareService",
        "OperationDefinition",
        "Organization",
        "Patient",
        "Practitioner",
        "PractitionerRole",
        "Provenance",  # derived at the edge, whichever services run
        "RelatedPerson",
        "SearchParameter",
        "StructureDefinition",
        "ValueSet",
    }
    assert [i["code"] for i in resources["Provenance"]["interaction"]] == ["read", "search-type"]
    patient = resources["Patient"]
    params = {p["name"] for p in patient["searchParam"]}
    assert {"identifier", "birthdate", "_id", "_lastUpdated", "care-order-organization"} <= params
    assert "RelatedPerson:patient" in patient["searchRevInclude"]
    assert {i["code"] for i in patient["interaction"]} >= {"read", "vread", "create", "update"}
    assert patient["operation"][0]["name"] == "validate"
    consent = {i["code"] for i in resources["Consent"]["interaction"]}
    assert consent == {"read", "vread", "history-instance", "history-type", "search-type"}


async def test_primitives_of_the_wrong_json_type_are_refused_not_coerced(stack: Stack) -> None:
    reply = await stack.call(
        "POST",
        "Practitioner",
        {"resourceType": "Practitioner", "active": "true", "birthDate": 0},
    )
    assert reply.status == 422
    found = {(i["expression"][0], i["diagnostics"]) for i in reply.issues()}
    assert found == {
        ("Practitioner.active", "Expected a JSON boolean, got string"),
        ("Practitioner.birthDate", "Expected a JSON string, got number"),
    }
    nul = await stack.call(
        "POST", "Practitioner", raw=b'{"resourceType": "Practitioner", "gender": "ma\\u0000le"}'
    )
    assert nul.status == 400
    assert (await stack.call("GET", "Practitioner?name=a%00b")).status == 400


async def test_base64_binary_is_accepted_as_the_string_it_is(stack: Stack) -> None:
    """base64Binary elements parse to bytes in the model; they are still JSON strings."""
    photo = {"contentType": "image/png", "data": "iVBORw0KGgo="}
    reply = await stack.call(
        "POST", "Practitioner", {"resourceType": "Practitioner", "photo": [photo]}
    )
    assert reply.status == 201, reply.body
    assert reply.json()["photo"] == [photo]
    wrong = await stack.call(
        "POST", "Practitioner", {"resourceType": "Practitioner", "photo": [{"data": 7}]}
    )
    assert wrong.status in (400, 422), wrong.body


async def test_a_transactions_conditional_create_without_read_scope_links_to_what_it_found(
    stack: Stack,
) -> None:
    """A conditional create that finds its resource answers 200 without a body when the
    caller may not read the type; later entries referring to it by `fullUrl` then name
    the resource it found, not an id that was never created."""
    org_id = await stack.admit("974760673", "bup")
    hpr = {"system": "urn:oid:2.16.578.1.12.4.1.4.4", "value": "9144889"}
    existing = await create(stack, practitioner("Funnet", identifier=[hpr]))
    writer = stack.token(scope="system/Practitioner.c system/PractitionerRole.c")
    role = {
        "resourceType": "PractitionerRole",
        "practitioner": {"reference": "urn:uuid:p1"},
        "organization": {"reference": f"Organization/{org_id}"},
    }
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:p1", "resource": practitioner("Ny", identifier=[hpr]),
             "request": {"method": "POST", "url": "Practitioner",
                         "ifNoneExist": f"identifier={hpr['system']}|{hpr['value']}"}},
            {"fullUrl": "urn:uuid:r1", "resource": role,
             "request": {"method": "POST", "url": "PractitionerRole"}},
        ],
    }  # fmt: skip
    reply = await stack.call("POST", "", bundle, token=writer)
    assert reply.status == 200, reply.body
    found, made = reply.json()["entry"]
    assert found["response"]["status"] == "200" and "resource" not in found
    assert resource_path(found["response"]["location"]) == f"Practitioner/{existing['id']}"
    assert made["response"]["status"] == "201"
    role_path = resource_path(made["response"]["location"])
    stored = (await stack.call("GET", role_path)).json()
    assert stored["practitioner"]["reference"] == f"Practitioner/{existing['id']}"
    practitioners = (await stack.call("GET", "Practitioner?family=Ny")).json()
    assert practitioners.get("total", len(practitioners.get("entry", []))) == 0
