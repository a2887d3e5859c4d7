"""Relations to a child (`shared.access.relations`) and how the directory's mirror shows a
relation a service announced until the consent service's published state has it
(`ConsentView.relate`): pure, without NATS or a database."""

from __future__ import annotations

from typing import Any

from services.consent.relations import relations_of
from shared.access.relations import related_orgs
from shared.access.state import PatientAccessState
from shared.access.view import ConsentView
from shared.codes import AUDIT_CATEGORY
from shared.events import DomainEvent, EventAccess

BUP, GP, KOMMUNE = "910000012", "889640782", "910000055"


def view() -> ConsentView:
    return ConsentView(nc=None, bucket="test")  # type: ignore[arg-type]  # never connected


def related(mirror: ConsentView, patient: str) -> list[str]:
    state = mirror.state(patient)
    return sorted(state.related) if state is not None else []


def test_an_announced_relation_holds_until_the_published_state_has_it() -> None:
    mirror = view()
    mirror.relate("p1", [KOMMUNE])
    assert related(mirror, "p1") == [KOMMUNE]
    mirror.relate("p1", [BUP])
    assert related(mirror, "p1") == [BUP, KOMMUNE], "a second announcement keeps the first"
    mirror.apply(PatientAccessState(patient="p1", related=[BUP]))
    assert related(mirror, "p1") == [BUP, KOMMUNE], "an older published state drops nothing"
    mirror.apply(PatientAccessState(patient="p1", related=[BUP, KOMMUNE]))
    mirror.apply(PatientAccessState(patient="p1", related=[BUP]))
    assert related(mirror, "p1") == [BUP], "once published, the published state decides"
    assert mirror.states_for([f"org:{BUP}"])[0].patient == "p1"
    assert mirror.states_for([f"org:{KOMMUNE}"]) == []


def test_a_removed_state_takes_its_announced_relations_with_it() -> None:
    mirror = view()
    mirror.apply(PatientAccessState(patient="p2"))
    mirror.relate("p2", [GP])
    mirror.remove("p2")
    assert mirror.state("p2") is None
    assert mirror.states_for([f"org:{GP}"]) == []


def actor(**fields: Any) -> dict[str, Any]:
    return fields


def test_what_makes_a_relation() -> None:
    assert related_orgs("CarePlan", "careplan", BUP, [GP], actor(orgnr=KOMMUNE)) == {
        BUP, GP, KOMMUNE,
    }  # fmt: skip
    person = actor(orgnr=GP, fhir_user="RelatedPerson/1")
    assert related_orgs("CarePlan", "careplan", None, [], person) == set()
    for credential in ("service", "operator", "register", "person"):
        acting = actor(orgnr=GP, credential=credential)
        assert related_orgs("Task", "referral", None, [], acting) == set(), credential
    assert related_orgs("AuditEvent", AUDIT_CATEGORY, None, [GP], actor(orgnr=GP)) == set()
    assert related_orgs("Subscription", "subscription", GP, [], None) == set()
    assert related_orgs("Consent", "consent", BUP, [GP], actor(orgnr=BUP)) == set()
    assert related_orgs("Task", "referral", "not-a-number", [], None) == set()


def test_an_event_from_before_events_carried_access_facts_still_makes_a_relation() -> None:
    old = DomainEvent(
        type="directory.Patient.created", source="directory", resource_type="Patient",
        resource_id="p3", version_id="1", patient="p3", data={"actor": {"orgnr": BUP}},
    )  # fmt: skip
    assert relations_of(old) == {BUP}
    new = old.model_copy(update={"access": EventAccess(category="person", author=GP)})
    assert relations_of(new) == {BUP, GP}
    assert relations_of(old.model_copy(update={"patient": None})) == set()
