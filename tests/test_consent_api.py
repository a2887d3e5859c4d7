"""The consent administration API and consent enforcement, scenario by scenario
(DOMAIN §4), against the running stack: gateway, directory, consent and a service that
holds journal notes, on real NATS and both databases."""

from __future__ import annotations

from datetime import date, timedelta

from services.consent.authority_watch import AuthorityWatch
from tests.consent_world import BUP, BVT, GP, HEARD, SKOLE, Child, World, sharing, signature
from tests.support import stream_events, wait_for


def notes_of(child: Child) -> str:
    return f"DocumentReference?patient={child.ref}&_total=accurate"


async def test_parents_cannot_consent_for_a_16_year_old(world: World) -> None:
    child = await world.child(16)
    authority = await world.api("GET", f"authority?patient={child.ref}&purpose=helsehjelp")
    assert authority.status == 200, authority.body
    answer = authority.json()
    assert (answer["rule"], answer["age"]) == ("youth-16", 16)
    assert answer["grantors"] == [{"role": "child", "members": [child.ref], "need": "all"}]
    refused = await world.api("POST", "consents", sharing(child, signature(child.mother)))
    assert refused.status == 422, refused.body
    assert "16" in refused.issues()[0]["diagnostics"]
    listed = await world.api("GET", f"patients/{child.id}/consents")
    assert listed.json()["consents"] == [], "nothing is stored half-way"
    own = await world.api("POST", "consents", sharing(child, signature(child.ref)))
    assert own.status == 201, own.body
    assert own.json()["status"] == "active"


async def test_two_parents_one_consent_stays_proposed_and_a_refusal_rejects(world: World) -> None:
    child = await world.child(14)
    first = await world.api(
        "POST", "consents", sharing(child, signature(child.mother), child_view=HEARD)
    )
    assert first.status == 201, first.body
    outcome = first.json()
    assert outcome["status"] == "proposed"
    assert any(child.father in missing for missing in outcome["missing"])
    refused = await world.api(
        "POST", f"consents/{outcome['id']}/signatures", signature(child.father, "refuse")
    )
    assert refused.status == 200, refused.body
    assert refused.json()["status"] == "rejected"
    fhir = await world.fhir("GET", f"Consent/{outcome['id']}", by=BVT)
    assert fhir.json()["status"] == "rejected"


async def test_bup_reads_barnevern_notes_only_under_consent_until_withdrawn(world: World) -> None:
    child = await world.child(13)
    note = await world.note(child, "Bekymring for skolefravær", by=BVT)
    assert (await world.fhir("GET", note, by=BUP)).status == 404
    search = await world.fhir("GET", notes_of(child), by=BUP)
    assert search.status == 200 and search.json()["total"] == 0
    assert "entry" not in search.json() or not [
        e for e in search.json()["entry"] if e["search"]["mode"] == "match"
    ]
    both = sharing(child, signature(child.mother), signature(child.father), child_view=HEARD)
    granted = await world.api("POST", "consents", both)
    assert granted.status == 201, granted.body
    assert granted.json()["status"] == "active", granted.json()

    async def readable() -> bool:
        return (await world.fhir("GET", note, by=BUP)).status == 200

    await wait_for(readable, 5)
    search = await world.fhir("GET", notes_of(child), by=BUP)
    assert search.json()["total"] == 1
    assert (await world.fhir("GET", note, by=GP)).status == 404, "GP is not a recipient"
    withdrawn = await world.api(
        "POST", f"consents/{granted.json()['id']}/withdrawal", {"by": child.father}
    )
    assert withdrawn.status == 200, withdrawn.body
    assert withdrawn.json()["status"] == "inactive"
    # At once: the withdrawal's answer comes after every service can see it.
    assert (await world.fhir("GET", note, by=BUP)).status == 404
    search = await world.fhir("GET", notes_of(child), by=BUP)
    assert search.status == 200 and search.json()["total"] == 0


async def test_parents_see_their_childs_information_without_any_consent(world: World) -> None:
    """Parental responsibility is itself the basis (pbrl §3-4) until the child is 16; a
    person who is not a holder sees nothing."""
    child = await world.child(10)
    note = await world.note(child, "Kontroll hos fastlegen", by=GP)
    mother = world.token(SKOLE, fhir_user=child.mother)

    async def mother_reads() -> bool:
        return (await world.fhir("GET", note, by=SKOLE, token=mother)).status == 200

    await wait_for(mother_reads, 5)
    stranger = world.token(SKOLE, fhir_user="RelatedPerson/not-a-parent")
    assert (await world.fhir("GET", note, by=SKOLE, token=stranger)).status == 404
    youth = await world.child(16)
    youth_note = await world.note(youth, "Samtale", by=GP)
    youth_mother = world.token(SKOLE, fhir_user=youth.mother)
    await wait_for(lambda: _state_published(world, youth.id), 5)
    reply = await world.fhir("GET", youth_note, by=SKOLE, token=youth_mother)
    assert reply.status == 404, "from 16 the youth decides; parents need its consent"


async def _state_published(world: World, patient: str) -> bool:
    view = world.journal.consent_view
    assert view is not None
    return view.state(patient) is not None


async def test_a_youths_refusal_is_a_record_of_its_own(world: World) -> None:
    """ "The youth refused" is stored and searchable, distinct from a service saying no."""
    youth = await world.child(17)
    refusal = await world.api("POST", "consents", sharing(youth, signature(youth.ref, "refuse")))
    assert refusal.status == 201, refusal.body
    outcome = refusal.json()
    assert outcome["status"] == "rejected"
    assert any("refus" in reason for reason in outcome["reasons"]), outcome["reasons"]
    stored = await world.fhir("GET", f"Consent?patient={youth.ref}&status=rejected", by=BVT)
    assert [e["resource"]["id"] for e in stored.json()["entry"]] == [outcome["id"]]
    assert (await world.fhir("GET", f"Consent/{outcome['id']}", by=BUP)).status == 200, (
        "the organisation named as recipient sees the refusal that concerns it"
    )


async def test_the_sweep_ends_a_parents_consent_on_the_16th_birthday(world: World) -> None:
    """Nothing changes in the directory on a birthday: the sweep finds the consents whose
    grantors' authority ran out and ends them, with an event for the care team."""
    child = await world.child(16, days=1)  # 16 tomorrow
    both = sharing(child, signature(child.mother), signature(child.father), child_view=HEARD)
    granted = await world.api("POST", "consents", both)
    assert granted.json()["status"] == "active", granted.body
    watch = next(c for c in world.stack.consent.components if isinstance(c, AuthorityWatch))
    assert await watch.sweep() == 0, "not yet"
    handlers = watch._handlers
    handlers.clock = lambda: date.today() + timedelta(days=1)
    try:
        assert await watch.sweep() == 1
    finally:
        handlers.clock = date.today
    consent = await world.fhir("GET", f"Consent/{granted.json()['id']}", by=BVT)
    assert consent.json()["status"] == "inactive"
    listed = (await world.api("GET", f"patients/{child.id}/consents")).json()["consents"]
    assert listed[0]["ended_because"] == "authority-changed"
    assert any("16" in reason for reason in listed[0]["reasons"]), listed[0]["reasons"]

    async def announced() -> bool:
        events = await stream_events(world.stack)
        return any(e.type == "consent.Consent.authority-changed" for _, e in events)

    await wait_for(announced, 5)


async def test_the_sweep_ends_a_consent_the_day_after_its_own_end(world: World) -> None:
    """A consent given until a day reads active through that day and inactive (expired,
    with its event) from the first sweep after it, though its grantors' authority goes on."""
    child = await world.child(10)
    tomorrow = date.today() + timedelta(days=1)
    given = sharing(child, signature(child.mother), signature(child.father),
                    child_view=HEARD, end=tomorrow.isoformat())  # fmt: skip
    granted = await world.api("POST", "consents", given)
    assert granted.json()["status"] == "active", granted.body
    consent = f"Consent/{granted.json()['id']}"
    watch = next(c for c in world.stack.consent.components if isinstance(c, AuthorityWatch))
    handlers = watch._handlers
    handlers.clock = lambda: tomorrow
    try:
        assert await watch.sweep() == 0, "its last day"
        handlers.clock = lambda: tomorrow + timedelta(days=1)
        assert await watch.sweep() == 1
    finally:
        handlers.clock = date.today
    read = await world.fhir("GET", consent, by=BVT)
    assert read.json()["status"] == "inactive"
    active = await world.fhir("GET", f"Consent?patient={child.ref}&status=active", by=BVT)
    assert active.json().get("entry", []) == []
    listed = (await world.api("GET", f"patients/{child.id}/consents")).json()["consents"]
    assert listed[0]["status"] == "inactive" and listed[0]["ended_because"] == "expired"

    async def announced() -> bool:
        events = await stream_events(world.stack)
        return any(e.type == "consent.Consent.expired" for _, e in events)

    await wait_for(announced, 5)


async def test_the_sweep_ends_the_holders_consent_when_its_care_order_ends(
    world: World,
) -> None:
    """A care order recorded with an end date in the future: on that day nothing happens
    in the directory, so the sweep must end what its holder consented to."""
    child = await world.child(14, care_order=True)
    patient = (await world.fhir("GET", child.ref, by=BVT)).json()
    tomorrow = date.today() + timedelta(days=1)
    patient["contact"] = [world.care_order(end=tomorrow.isoformat())]
    assert (await world.fhir("PUT", child.ref, patient, by=BVT)).status == 200
    holder = f"Organization/{world.organisations[BVT]}"
    granted = await world.api(
        "POST", "consents", sharing(child, signature(holder), child_view=HEARD)
    )
    assert granted.json()["status"] == "active", granted.body
    assert granted.json()["consent"]["valid_until"] == tomorrow.isoformat()
    watch = next(c for c in world.stack.consent.components if isinstance(c, AuthorityWatch))
    handlers = watch._handlers
    handlers.clock = lambda: date.today() + timedelta(days=2)
    try:
        assert await watch.sweep() == 1
    finally:
        handlers.clock = date.today
    consent = await world.fhir("GET", f"Consent/{granted.json()['id']}", by=BVT)
    assert consent.json()["status"] == "inactive"


async def test_consents_and_signatures_with_absurd_dates_are_refused(world: World) -> None:
    """A signature is dated the day it was given (today at the latest, not before the
    child's birth); a consent neither ends more than ten years ahead nor starts before the
    child was born. Nothing is written for a refused one."""
    child = await world.child(10)
    today = date.today()

    def signed(on: str) -> dict[str, object]:
        return {**signature(child.mother), "date": on}

    for wrong, expected in (
        (sharing(child, signed("9999-12-31"), signature(child.father), child_view=HEARD,
                 start="9999-12-31", end="9999-12-31"), "more than 10 years ahead"),
        (sharing(child, signed("9999-12-31"), signature(child.father), child_view=HEARD),
         "is after today"),
        (sharing(child, signed("0001-01-01"), signature(child.father), child_view=HEARD),
         "before the child was born"),
        (sharing(child, signature(child.mother), signature(child.father), child_view=HEARD,
                 end=(today + timedelta(days=3660)).isoformat()), "more than 10 years ahead"),
        (sharing(child, signature(child.mother), signature(child.father), child_view=HEARD,
                 start="2000-01-01"), "before the child was born"),
        (sharing(child, signature(child.mother), signature(child.father),
                 child_view={**HEARD, "date": "0001-01-01"}), "before the child was born"),
    ):  # fmt: skip
        refused = await world.api("POST", "consents", wrong)
        assert refused.status == 422, refused.body
        assert expected in refused.body.decode(), refused.body
    listed = (await world.api("GET", f"patients/{child.id}/consents")).json()["consents"]
    assert listed == [], "nothing was written"

    first = await world.api(
        "POST", "consents",
        sharing(child, signed(today.isoformat()), child_view=HEARD,
                end=(today + timedelta(days=3650)).isoformat()),
    )  # fmt: skip
    assert first.status == 201 and first.json()["status"] == "proposed", first.body
    added = f"consents/{first.json()['id']}/signatures"
    for on in ((today + timedelta(days=1)).isoformat(), "0001-01-01"):
        late = await world.api("POST", added, {**signature(child.father), "date": on})
        assert late.status == 422, late.body
    signed_today = await world.api("POST", added, signature(child.father))
    assert signed_today.status == 200 and signed_today.json()["status"] == "active"


async def test_a_consent_is_limited_only_to_purposes_a_reviewer_can_read(world: World) -> None:
    """A consent's purposes of use are codes of HL7's GeneralPurposeOfUse value set, the
    codes a request may state (`Barnebro-Purpose-Of-Use`); any other would match no request
    and read as nothing in the record."""
    child = await world.child(17)
    for wrong in (["BOGUS"], ["TREAT", "treat"], ["TREATMENT"]):
        refused = await world.api(
            "POST", "consents", sharing(child, signature(child.ref), purposes_of_use=wrong)
        )
        assert refused.status == 400, (wrong, refused.body)
        assert "GeneralPurposeOfUse" in refused.body.decode(), refused.body
    listed = (await world.api("GET", f"patients/{child.id}/consents")).json()["consents"]
    assert listed == [], "nothing was written"
    limited = await world.api(
        "POST", "consents", sharing(child, signature(child.ref), purposes_of_use=["HOPERAT"])
    )
    assert limited.status == 201, limited.body
