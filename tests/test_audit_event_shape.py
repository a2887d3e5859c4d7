"""Every AuditEvent the consent service makes from an audit record or a directory event
is valid FHIR R4.

The audit trail stores them without parsing each against the FHIR model again (the cost
of a read would otherwise be dominated by it), so this test is what guarantees it: audit
records of every shape, with arbitrary text wherever a caller's words can reach one (a
client id, a query, an emergency reason), give valid AuditEvents; so do the directory's
events of every audited change (`register_event`), with any actor and reason.
"""

from __future__ import annotations

from datetime import UTC

from hypothesis import given, settings
from hypothesis import strategies as st

from services.consent.audit_events import audit_event
from services.consent.register_audit import AUDITED, register_event
from shared.access.audit import AuditEntity, AuditRecord
from shared.events import DomainEvent
from shared.fhir.resources import validate_resource

ids = st.from_regex(r"[A-Za-z0-9\-.]{1,64}", fullmatch=True)
digits = st.from_regex(r"[0-9]{9}", fullmatch=True)
words = st.text(min_size=0, max_size=300)

entities = st.builds(
    AuditEntity,
    reference=st.builds(
        lambda t, i: f"{t}/{i}",
        st.sampled_from(["Patient", "Consent", "ServiceRequest", "CarePlan"]),
        ids,
    ),
    patient=st.none() | ids,
    category=st.none() | st.sampled_from(["helse", "barnevern", "skole"]),
    permit=st.booleans(),
    basis=st.sampled_from(["consent", "own-data", "emergency", "none", "not-found", "hpl-33"]),
    consents=st.lists(ids, max_size=3),
    reasons=st.lists(words, max_size=3),
)
records = st.builds(
    AuditRecord,
    service=st.sampled_from(["directory", "consent", "referral", "careplan"]),
    interaction=st.sampled_from(["read", "vread", "search", "history", "operation"]),
    orgnr=st.none() | digits,
    org_kind=st.none() | st.sampled_from(["bup", "fastlege", "skole"]),
    hpr=st.none() | st.from_regex(r"[0-9]{7,9}", fullmatch=True),
    fhir_user=st.none() | st.builds(lambda i: f"RelatedPerson/{i}", ids),
    client_id=st.none() | words,
    purpose_of_use=st.sampled_from(["TREAT", "ETREAT", "HOPERAT", "PUBHLTH"]),
    emergency_reason=st.none() | words,
    query=st.none() | words,
    entities=st.lists(entities, max_size=4),
)


@settings(max_examples=300, deadline=None)
@given(records)
def test_every_audit_record_becomes_a_valid_audit_event(record: AuditRecord) -> None:
    event = audit_event(record)
    validate_resource(event, "AuditEvent")
    assert event["id"] == record.id


actors = st.fixed_dictionaries(
    {},
    optional={
        "credential": st.sampled_from(["organisation", "operator", "register", "service"]),
        "orgnr": st.none() | digits,
        "client_id": st.none() | words,
    },
)
directory_events = st.builds(
    lambda change, res_id, version, patient, moment, actor, reason: DomainEvent(
        type=f"no.barnebro.directory.{change[0].lower()}.{change[1]}",
        source="directory",
        resource_type=change[0],
        resource_id=res_id,
        version_id=str(version),
        patient=patient,
        time=moment.isoformat(),
        data={"actor": actor, **({"reason": reason} if reason is not None else {})},
    ),
    st.sampled_from(sorted(AUDITED)),
    ids,
    st.integers(1, 10**6),
    st.none() | ids,
    st.datetimes(timezones=st.just(UTC)),
    actors,
    st.none() | words,
)


@settings(max_examples=300, deadline=None)
@given(directory_events)
def test_every_audited_directory_change_becomes_a_valid_audit_event(event: DomainEvent) -> None:
    audit = register_event(event)
    assert audit is not None
    validate_resource(audit, "AuditEvent")
    assert audit["id"] == event.id
