"""Every AuditEvent the consent service makes from an audit record is valid FHIR R4.

The audit trail stores them without parsing each against the FHIR model again (the cost
of a read would otherwise be dominated by it), so this test is what guarantees it: audit
records of every shape, with arbitrary text wherever a caller's words can reach one (a
client id, a query, an emergency reason), give valid AuditEvents.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from services.consent.audit_events import audit_event
from shared.access.audit import AuditEntity, AuditRecord
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
