"""Writes, history and the administration API cannot reach what the caller may not see.

Each test is a way around the consent step that a review found, kept as a regression
test: a transaction writing a Consent, an old version about another child, a write to a
hidden resource, a conditional create used as a search, signing for someone else, and
disclosing what the reporter cannot read.
"""

from __future__ import annotations

from typing import Any

from shared.fhir.migrations import fill_access_columns, migrate
from shared.fhir.service import FhirService
from shared.store.migrations import applied
from tests.consent_world import BUP, BVT, GP, HEARD, SKOLE, World, sharing, signature
from tests.journal_service import note
from tests.support import wait_for


async def test_a_transaction_cannot_write_a_consent(world: World) -> None:
    child = await world.child(13)
    forged: dict[str, Any] = {
        "resourceType": "Consent",
        "status": "active",
        "scope": {"coding": [{"code": "patient-privacy"}]},
        "category": [{"coding": [{"code": "informasjonsdeling"}]}],
        "patient": {"reference": child.ref},
    }
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": forged, "request": {"method": "POST", "url": "Consent"}}],
    }
    reply = await world.fhir("POST", "", bundle, by=GP)
    assert reply.status == 405, reply.body
    batch = {**bundle, "type": "batch"}
    answer = await world.fhir("POST", "", batch, by=GP)
    assert answer.json()["entry"][0]["response"]["status"].startswith("405")
    listed = await world.api("GET", f"patients/{child.id}/consents")
    assert listed.json()["consents"] == []


async def test_an_old_version_about_another_child_stays_that_childs(world: World) -> None:
    first, second = await world.child(12), await world.child(12)
    created = await world.create(note(first.id, "Om det første barnet"), by=BUP)
    corrected = {**created, "subject": {"reference": second.ref}}
    reply = await world.fhir("PUT", f"DocumentReference/{created['id']}", corrected, by=BUP)
    assert reply.status == 200, reply.body
    mother = world.token(SKOLE, fhir_user=second.mother)
    path = f"DocumentReference/{created['id']}"

    async def current_visible() -> bool:
        return (await world.fhir("GET", path, by=SKOLE, token=mother)).status == 200

    await wait_for(current_visible, 5)
    old = await world.fhir("GET", f"{path}/_history/1", by=SKOLE, token=mother)
    assert old.status == 404, "version 1 is about the first child"
    history = await world.fhir("GET", f"{path}/_history", by=SKOLE, token=mother)
    versions = [e["response"]["etag"] for e in history.json()["entry"]]
    assert versions == ['W/"2"']


async def test_a_hidden_resource_cannot_be_changed_deleted_or_probed(world: World) -> None:
    child = await world.child(13)
    hidden = await world.note(child, "BUP-notat", by=BUP)
    body = {**note(child.id, "Overskrevet"), "id": hidden.split("/")[1]}
    put = await world.fhir("PUT", hidden, body, by=GP)
    absent = {**body, "id": "no-such-note"}
    missing = await world.fhir("PUT", "DocumentReference/no-such-note", absent, by=GP)
    assert (put.status, missing.status) == (405, 405), "as if it did not exist"
    matched = await world.fhir("PUT", hidden, body, by=GP, headers={"If-Match": 'W/"1"'})
    assert matched.status == 412 and "(none)" in matched.body.decode()
    deleted = await world.fhir("DELETE", hidden, by=GP)
    deleted_missing = await world.fhir("DELETE", "DocumentReference/no-such-note", by=GP)
    assert deleted.status == deleted_missing.status == 405, "a kept type is never deleted"
    assert deleted.body == deleted_missing.body
    unchanged = await world.fhir("GET", hidden, by=BUP)
    assert unchanged.status == 200 and unchanged.json()["meta"]["versionId"] == "1"
    conditional = await world.fhir(
        "POST",
        "DocumentReference",
        note(child.id, "GPs eget"),
        by=GP,
        headers={"If-None-Exist": f"patient={child.ref}"},
    )
    assert conditional.status == 201, "a hidden resource does not match (no oracle)"


async def test_only_the_collector_or_the_grantor_themselves_adds_signatures(
    world: World,
) -> None:
    child = await world.child(14)
    proposed = await world.api(
        "POST", "consents", sharing(child, signature(child.mother), child_view=HEARD)
    )
    assert proposed.json()["status"] == "proposed", proposed.body
    consent_id = proposed.json()["id"]
    by_recipient = await world.api(
        "POST", f"consents/{consent_id}/signatures", signature(child.father), by=BUP
    )
    assert by_recipient.status == 403, by_recipient.body
    mother = world.token(SKOLE, fhir_user=child.mother)
    as_father = await world.api(
        "POST", f"consents/{consent_id}/signatures", signature(child.father), token=mother
    )
    assert as_father.status == 403, as_father.body
    father = world.token(SKOLE, fhir_user=child.father)
    himself = await world.api(
        "POST", f"consents/{consent_id}/signatures", signature(child.father), token=father
    )
    assert himself.status == 200, himself.body
    assert himself.json()["status"] == "active"


async def test_a_disclosure_names_only_what_the_reporter_may_read(world: World) -> None:
    child = await world.child(9)
    bup_note = await world.note(child, "BUP", by=BUP)
    gp_note = await world.note(child, "GP", by=GP)
    other = await world.child(9)
    other_note = await world.note(other, "GP, annet barn", by=GP)
    for resources in ([bup_note], [other_note]):
        body = {"patient": child.ref, "recipient": BVT, "resources": resources, "reason": "x"}
        refused = await world.api("POST", "disclosures", body, token=world.token(GP, hpr="9144889"))
        assert refused.status == 422, refused.body
    body = {"patient": child.ref, "recipient": BVT, "resources": [gp_note], "reason": "Skader"}
    assert (
        await world.api("POST", "disclosures", body, token=world.token(GP, hpr="9144889"))
    ).status == 201


async def test_a_persons_token_acts_for_the_person_not_its_organisation(world: World) -> None:
    """A parent whose token also names an organisation does not see what that
    organisation wrote about other children."""
    child, other = await world.child(10), await world.child(10)
    gp_note = await world.note(other, "Legens notat", by=GP)
    assert (await world.fhir("GET", gp_note, by=GP)).status == 200
    mother = world.token(GP, fhir_user=child.mother)
    assert (await world.fhir("GET", gp_note, by=GP, token=mother)).status == 404
    other_child = await world.fhir("GET", other.ref, by=GP, token=mother)
    assert other_child.status == 404, "nor the other child's record"


async def test_empty_searches_and_reads_of_unknown_notes_are_audited(world: World) -> None:
    """A search that released nothing and a read of a note that does not exist leave an
    audit record, as a denied read does: probing is recorded, and takes the same path. The
    prober reads only that it was refused; the operator reads that the note did not exist."""
    child = await world.child(11)
    await world.note(child, "Skjult", by=BVT)
    search = await world.fhir("GET", f"DocumentReference?patient={child.ref}", by=BUP)
    assert search.status == 200 and not search.json()["entry"]
    probe = await world.fhir("GET", "DocumentReference/never-was", by=BUP)
    assert probe.status == 404
    auditor = world.token(BUP, scope="system/AuditEvent.rs")
    mine = f"AuditEvent?agent=urn:oid:2.16.578.1.12.4.1.4.101|{BUP}&_count=100"

    def probe_bases(events: list[dict[str, Any]]) -> set[str]:
        return {
            d["valueString"]
            for e in events
            for x in e["entity"]
            if x.get("what", {}).get("reference") == "DocumentReference/never-was"
            for d in x.get("detail", [])
            if d["type"] == "basis"
        }

    async def recorded() -> bool:
        reply = await world.fhir("GET", mine, by=BUP, token=auditor)
        events = [e["resource"] for e in reply.json().get("entry", [])]
        searched = any(
            e["subtype"][0]["code"] == "search" and any("query" in x for x in e["entity"])
            for e in events
        )
        return searched and probe_bases(events) == {"withheld"}

    await wait_for(recorded, 5)
    operator = world.stack.operator_token()
    seen = await world.fhir("GET", mine, by=BUP, token=operator)
    assert seen.status == 200, seen.body
    assert probe_bases([e["resource"] for e in seen.json()["entry"]]) == {"not-found"}


async def fill_all(fhir: FhirService) -> int:
    """The access-column migration of every type, run again whatever is recorded."""
    async with fhir.db.transaction() as conn:
        return sum(
            [await fill_access_columns(conn, definition=d) for d in fhir.definitions.values()]
        )


async def test_data_migrations_run_once_and_are_recorded(world: World) -> None:
    """A start applies what its database has not recorded, and nothing again: a later
    start scans nothing that was migrated."""
    fhir = world.journal.fhir
    assert fhir is not None
    recorded = await applied(fhir.db)
    access = {
        f"access-columns:{d.resource_type}:{d.data_category}"
        for d in fhir.definitions.values()
        if d.data_category is not None
    }
    indexes = {
        f"search-index:{d.resource_type}:{p.name}:{p.paths}"
        for d in fhir.definitions.values()
        for p in d.search_params
    }
    assert recorded.keys() == access | indexes
    res_id = (await world.note(await world.child(12), "Notat", by=BVT)).split("/")[1]

    async def category() -> object:
        async with fhir.db.reader() as conn:
            row = await conn.fetchrow("SELECT category FROM resources WHERE res_id = ?", res_id)
        assert row is not None
        return row[0]

    async with fhir.db.transaction() as conn:
        await conn.execute("UPDATE resources SET category = NULL WHERE res_id = ?", res_id)
    assert await migrate(fhir) == {}, "recorded migrations do not run again"
    assert await category() is None
    async with fhir.db.transaction() as conn:
        await conn.execute("DELETE FROM applied_migrations")
    ran = await migrate(fhir)
    assert ran.keys() == access | indexes
    assert sum(ran[name] for name in access) == 1
    assert await category() is not None
    assert (await applied(fhir.db)).keys() == recorded.keys()


async def test_a_search_parameter_declared_later_finds_what_was_stored_before(
    world: World,
) -> None:
    """Resources stored before a search parameter existed (its index rows missing, its
    migration not recorded) are found by it after the next start."""
    fhir = world.journal.fhir
    assert fhir is not None
    child = await world.child(12)
    res_id = (await world.note(child, "Notat", by=BVT)).split("/")[1]
    definition = fhir.definitions["DocumentReference"]
    param = definition.params_by_name()["patient"]
    name = f"search-index:DocumentReference:patient:{param.paths}"

    async def found() -> bool:
        reply = await world.fhir("GET", f"DocumentReference?patient={child.ref}", by=BVT)
        assert reply.status == 200, reply.body
        return any(e["resource"]["id"] == res_id for e in reply.json().get("entry", []))

    assert await found()
    async with fhir.db.transaction() as conn:
        await conn.execute(
            "DELETE FROM search_index WHERE res_type = 'DocumentReference' AND param = 'patient'"
        )
        await conn.execute("DELETE FROM applied_migrations WHERE name = ?", name)
    assert not await found(), "the index rows are what a search finds by"
    ran = await migrate(fhir)
    assert list(ran) == [name] and ran[name] >= 1
    assert await found()


async def test_rows_stored_before_their_type_had_a_category_are_backfilled(
    world: World,
) -> None:
    """A resource written when its type was not yet patient data (access columns empty)
    gets them at start-up, without a new version or losing its search index."""
    child = await world.child(12)
    stored = await world.note(child, "Gammelt notat", by=BVT)
    res_id = stored.split("/")[1]
    fhir, db = world.journal.fhir, world.journal.db
    assert fhir is not None and db is not None
    async with db.transaction() as conn:
        for table in ("resources", "resource_history"):
            await conn.execute(
                f"UPDATE {table} SET patient = NULL, category = NULL WHERE res_id = ?", res_id
            )
    assert (await world.fhir("GET", stored, by=BUP)).status == 200, "the gap being closed"
    assert await fill_all(fhir) == 2
    assert (await world.fhir("GET", stored, by=BUP)).status == 404
    history = await world.fhir("GET", f"{stored}/_history", by=BVT)
    assert history.status == 200, "its author still sees it"
    async with db.reader() as conn:
        versions = await conn.fetch("SELECT version FROM resource_history WHERE res_id = ?", res_id)
        indexed = await conn.fetch("SELECT 1 FROM search_index WHERE res_id = ?", res_id)
    assert len(versions) == 1 and indexed, "no new version, index kept"


async def test_the_care_order_holder_answers_for_itself_and_nobody_answers_for_it(
    world: World,
) -> None:
    child = await world.child(12, care_order=True)
    await world.start_care(child, BUP)
    bvt = f"Organization/{world.organisations[BVT]}"
    body = {
        "patient": child.ref,
        "purpose": "nasjonalt-forlop",
        "recipients": {"organizations": [BUP]},
        "categories": ["journal"],
        "signatures": [signature(child.ref)],
        "child_view": HEARD,
    }
    proposed = await world.api("POST", "consents", body, by=BUP)
    assert proposed.status == 201 and proposed.json()["status"] == "proposed", proposed.body
    consent_id = proposed.json()["id"]
    for_it = await world.api("POST", f"consents/{consent_id}/signatures", signature(bvt), by=BUP)
    assert for_it.status == 403, "the collector cannot answer for the care-order holder"
    itself = await world.api("POST", f"consents/{consent_id}/signatures", signature(bvt), by=BVT)
    assert itself.status == 200, itself.body
    assert itself.json()["status"] == "active"
    withdrawn_for_parent = await world.api(
        "POST", f"consents/{consent_id}/withdrawal", {"by": child.ref}, by=BUP
    )
    assert withdrawn_for_parent.status == 200, "the collector records the child's withdrawal"
    assert withdrawn_for_parent.json()["status"] == "inactive"


async def test_the_decision_api_answers_only_about_the_caller_as_its_token_says(
    world: World,
) -> None:
    child = await world.child(12)
    question = {
        "actor": {"orgnr": SKOLE, "kind": "bup"},
        "patient": child.ref,
        "category": "journal",
    }
    spoofed = await world.api("POST", "decisions", question, by=SKOLE)
    assert spoofed.status == 403, "a skole may not ask as if it were a bup"
    honest = {**question, "actor": {"orgnr": SKOLE, "kind": "skole"}}
    unrelated = await world.api("POST", "decisions", honest, by=SKOLE)
    missing = await world.api(
        "POST", "decisions", {**honest, "patient": "Patient/no-such-child"}, by=SKOLE
    )
    assert unrelated.status == missing.status == 404, "no relation: as if there were no child"
    assert unrelated.json()["issue"][0]["code"] == missing.json()["issue"][0]["code"]
    shared = sharing(child, signature(child.mother), signature(child.father), child_view=HEARD)
    shared["recipients"] = {"organizations": [SKOLE]}
    granted = await world.api("POST", "consents", shared)
    assert granted.status == 201 and granted.json()["status"] == "active", granted.body

    async def permitted() -> bool:
        # The grant is a relation once the consent view has it (until then: as unknown).
        answer = await world.api("POST", "decisions", honest, by=SKOLE)
        assert answer.status in (200, 404), answer.body
        return answer.status == 200 and bool(answer.json()["permit"])

    await wait_for(permitted, 5)


async def test_a_parent_writes_no_record_and_no_organisation_writes_through_them(
    world: World,
) -> None:
    """A person's token reads what the person may see and answers their own consents; it
    writes no FHIR resource, so nothing is ever credited to the organisation it names."""
    child = await world.child(10)
    mother = world.token(SKOLE, fhir_user=child.mother)
    writes = [
        ("POST", "DocumentReference", note(child.id, "Fra mor")),
        ("POST", "Patient", {"resourceType": "Patient", "name": [{"family": "Ny"}]}),
        ("PUT", child.ref, {"resourceType": "Patient", "id": child.id}),
    ]
    for method, path, body in writes:
        reply = await world.fhir(method, path, body, by=SKOLE, token=mother)
        assert reply.status == 403, (method, path, reply.body)
    created = await world.api("POST", "consents", sharing(child, signature(child.mother)),
                              token=mother)  # fmt: skip
    assert created.status == 403, "a person answers consents; it does not record them"
    searched = await world.fhir("GET", f"DocumentReference?patient={child.ref}", by=SKOLE)
    assert searched.status == 200 and not searched.json()["entry"]


async def test_a_disclosure_accepts_an_absolute_subject_reference(world: World) -> None:
    child = await world.child(9)
    absolute = note(child.id, "Skade")
    absolute["subject"] = {"reference": f"{world.stack.base}/Patient/{child.id}"}
    created = await world.create(absolute, by=GP)
    body = {
        "patient": child.ref,
        "recipient": BVT,
        "resources": [f"DocumentReference/{created['id']}"],
        "reason": "Mistanke om vold",
    }
    assert (
        await world.api("POST", "disclosures", body, token=world.token(GP, hpr="9144889"))
    ).status == 201


async def test_backfilled_history_keeps_its_author(world: World) -> None:
    child = await world.child(12)
    stored = await world.note(child, "v1", by=GP)
    res_id = stored.split("/")[1]
    current = (await world.fhir("GET", stored, by=GP)).json()
    assert (await world.fhir("PUT", stored, {**current, "description": "v2"}, by=GP)).status == 200
    fhir, db = world.journal.fhir, world.journal.db
    assert fhir is not None and db is not None
    async with db.transaction() as conn:
        await conn.execute(
            "UPDATE resource_history SET patient = NULL, category = NULL, author = NULL,"
            " parties = NULL WHERE res_id = ?",
            res_id,
        )
    await fill_all(fhir)
    assert (await world.fhir("GET", f"{stored}/_history/1", by=GP)).status == 200
    assert (await world.fhir("GET", f"{stored}/_history/1", by=BUP)).status == 404


async def test_a_broken_consent_view_watch_refuses_then_recovers(world: World) -> None:
    """While a service's mirror is not following the bucket it answers 503 for patient
    data rather than deciding on a frozen view, and it follows again by itself."""
    child = await world.child(12)
    stored = await world.note(child, "Notat", by=BVT)
    view = world.journal.consent_view
    assert view is not None
    await view._watcher.stop()  # the watch ends as if the server had dropped it

    async def status(expected: int) -> bool:
        return (await world.fhir("GET", stored, by=BVT)).status == expected

    await wait_for(lambda: status(503), 5)
    await wait_for(lambda: status(200), 10)
