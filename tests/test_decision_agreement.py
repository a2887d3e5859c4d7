"""`decide` (one resource) and `visibility` (the SQL filter of a search) never disagree.

For random access states, callers and stored resources, every resource `decide` permits
is one the SQL condition of `visibility` keeps, and no other: the condition is run by
SQLite in memory on rows carrying the resources' access columns, exactly as a search
runs it. Needs nothing but Python.
"""

from __future__ import annotations

import sqlite3
from datetime import date, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.access.decision import (
    AccessContext,
    ResourceFacts,
    decide,
    relation_basis,
    visibility,
)
from shared.access.state import Disclosure, Grant, HiddenFromParents, PatientAccessState
from shared.codes import DataCategory
from shared.store.access_sql import AccessFilter, ResourceAccess, access_clause
from shared.transport.wire import Caller, Emergency

DAY = date(2026, 6, 1)
ORGS = ("910000001", "910000002", "910000003", "910000004")
KINDS = ("bup", "fastlege", "barnevernstjeneste", "skole", "ppt", "legevakt")
ROLES = ("koordinator", "behandler")
PATIENTS = ("p1", "p2", "p3")
PARENTS = ("RelatedPerson/r1", "RelatedPerson/r2")
CATEGORIES = (DataCategory.REFERRAL.value, DataCategory.CAREPLAN.value, DataCategory.JOURNAL.value)
PURPOSES = ("TREAT", "COC")
DOCUMENTS = tuple(f"DocumentReference/d{i}" for i in range(8))
VERSIONS = (1, 2, 3)
DISCLOSED = tuple(f"{d}/_history/{v}" for d in DOCUMENTS for v in VERSIONS)
"""What an hpl §33 disclosure names: single versions (a stored resource is at one)."""


def subsets(values: tuple[str, ...]) -> st.SearchStrategy[list[str]]:
    return st.lists(st.sampled_from(values), unique=True, max_size=len(values))


days = st.one_of(st.none(), st.integers(-3, 3).map(lambda n: DAY + timedelta(days=n)))
ends = st.integers(-2, 2).map(lambda n: DAY + timedelta(days=n))

grants = st.builds(
    Grant,
    consent=st.sampled_from(("Consent/c1", "Consent/c2", "Consent/c3")),
    categories=subsets(CATEGORIES),
    orgs=subsets(ORGS),
    kinds=subsets(KINDS),
    roles=subsets(ROLES),
    purposes_of_use=subsets(PURPOSES),
    start=days,
    end=days,
    on_behalf=st.booleans(),
)


@st.composite
def states(draw: st.DrawFn, patient: str) -> PatientAccessState:
    return PatientAccessState(
        patient=patient,
        parents=draw(subsets(PARENTS)),
        parents_until=draw(days),
        grants=draw(st.lists(grants, max_size=3)),
        related=draw(subsets(ORGS)),
        care_order_holders=draw(subsets(ORGS[:2])),
        parents_end=draw(st.dictionaries(st.sampled_from(PARENTS), ends, max_size=2)),
        care_order_ends=draw(st.dictionaries(st.sampled_from(ORGS[:2]), ends, max_size=2)),
        hidden_from_parents=draw(
            st.lists(
                st.builds(
                    HiddenFromParents,
                    consent=st.just("Consent/h1"),
                    orgs=subsets(ORGS),
                    categories=subsets(CATEGORIES),
                ),
                max_size=1,
            )
        ),
        disclosures=draw(
            st.lists(
                st.builds(
                    Disclosure,
                    record=st.just("AuditEvent/a1"),
                    basis=st.just("hpl-33"),
                    recipients=subsets(ORGS),
                    resources=st.lists(st.sampled_from(DISCLOSED), unique=True, max_size=6),
                ),
                max_size=2,
            )
        ),
    )


organisation_callers = st.builds(
    Caller,
    orgnr=st.sampled_from(ORGS),
    org_kind=st.sampled_from(KINDS),
    roles=subsets(ROLES),
    hpr=st.one_of(st.none(), st.just("9144889")),
)
person_callers = st.builds(Caller, fhir_user=st.sampled_from((*PARENTS, "RelatedPerson/r9")))


@st.composite
def resources(draw: st.DrawFn) -> list[ResourceFacts]:
    return [
        ResourceFacts(
            reference=reference,
            patient=draw(st.one_of(st.none(), st.sampled_from(PATIENTS))),
            category=draw(st.sampled_from(CATEGORIES)),
            author=draw(st.one_of(st.none(), st.sampled_from(ORGS))),
            parties=tuple(draw(subsets(ORGS))),
            version=draw(st.sampled_from(VERSIONS)),
        )
        for reference in DOCUMENTS
    ]


def kept_by_sql(facts: list[ResourceFacts], category: str, context: AccessContext,
                known: list[PatientAccessState]) -> set[str]:  # fmt: skip
    """The references the search filter keeps, run by SQLite on the access columns."""
    return kept_by_filter(facts, category, visibility(known, category, context))


def kept_by_filter(facts: list[ResourceFacts], category: str, allowed: AccessFilter) -> set[str]:
    """The references a search filter keeps, run by SQLite on the access columns."""
    where, args = access_clause(allowed)
    db = sqlite3.connect(":memory:")
    db.execute(
        "CREATE TABLE resources (res_type TEXT, res_id TEXT, version INTEGER, patient TEXT,"
        " category TEXT, author TEXT, parties TEXT)"
    )
    for fact in facts:
        res_type, res_id = fact.reference.split("/")
        columns = ResourceAccess(fact.patient, fact.category, fact.author, fact.parties)
        db.execute(
            "INSERT INTO resources VALUES (?, ?, ?, ?, ?, ?, ?)",
            (res_type, res_id, fact.version, columns.patient, columns.category, columns.author,
             columns.parties_text),
        )  # fmt: skip
    rows = db.execute(
        f"SELECT res_type || '/' || res_id FROM resources r WHERE category = ? AND {where}",
        (category, *args),
    ).fetchall()
    db.close()
    return {str(row[0]) for row in rows}


@settings(max_examples=250, deadline=None)
@given(
    known=st.tuples(*(states(p) for p in PATIENTS)).map(list),
    with_state=subsets(PATIENTS),
    caller=st.one_of(organisation_callers, person_callers),
    purpose=st.sampled_from(PURPOSES),
    facts=resources(),
    emergency_for=st.one_of(st.none(), st.sampled_from(PATIENTS)),
)
def test_decide_and_visibility_agree(
    known: list[PatientAccessState],
    with_state: list[str],
    caller: Caller,
    purpose: str,
    facts: list[ResourceFacts],
    emergency_for: str | None,
) -> None:
    emergency = Emergency(patient=emergency_for, reason="akutt") if emergency_for else None
    context = AccessContext(caller, purpose_of_use=purpose, emergency=emergency, day=DAY)
    present = [s for s in known if s.patient in with_state]
    by_patient = {s.patient: s for s in present}
    for category in CATEGORIES:
        mine = [f for f in facts if f.category == category]
        permitted = {
            f.reference for f in mine if decide(by_patient.get(f.patient or ""), f, context).permit
        }
        assert kept_by_sql(mine, category, context, present) == permitted


def _filters(depth: int = 1) -> st.SearchStrategy[AccessFilter]:
    by_orgs = st.tuples(st.sampled_from(PATIENTS), st.tuples(*[st.sampled_from(ORGS)]))
    by_records = st.tuples(
        st.sampled_from(PATIENTS), st.lists(st.sampled_from(DOCUMENTS)).map(tuple)
    )
    disclosed = st.tuples(
        st.sampled_from(PATIENTS),
        st.lists(st.sampled_from(DISCLOSED), min_size=8, max_size=24).map(tuple),
    )
    return st.builds(
        AccessFilter,
        orgs=subsets(ORGS).map(tuple),
        named_within=st.one_of(st.none(), subsets(PATIENTS).map(tuple)),
        patients=subsets(PATIENTS).map(tuple),
        patients_except=st.lists(by_orgs, max_size=2).map(tuple),
        patients_except_records=st.lists(by_records, max_size=2).map(tuple),
        resources=subsets(DOCUMENTS[:2]).map(tuple),
        disclosed=st.lists(disclosed, max_size=2).map(tuple),
        by_category=st.just(())
        if depth == 0
        else st.lists(st.tuples(st.sampled_from(CATEGORIES), _filters(0)), max_size=2).map(tuple),
    )


@settings(max_examples=300, deadline=None)
@given(allowed=_filters(), facts=resources(), searched=subsets(PATIENTS))
def test_the_filter_of_a_search_by_patient_keeps_what_the_whole_filter_keeps_of_them(
    allowed: AccessFilter, facts: list[ResourceFacts], searched: list[str]
) -> None:
    """A search by patient is sent only the part of the filter about its patients: of the
    rows about them it keeps exactly what the whole filter keeps, of the others nothing
    more, and it names no other patient."""
    narrowed = allowed.within(searched)
    for category in CATEGORIES:
        mine = [f for f in facts if f.category == category]
        about = {f.reference for f in mine if f.patient in searched}
        whole = kept_by_filter(mine, category, allowed)
        part = kept_by_filter(mine, category, narrowed)
        assert part & about == whole & about
        assert part <= whole
    for inner in [narrowed, *(f for _, f in narrowed.by_category)]:
        named = {*inner.patients, *(inner.named_within or ())}
        named |= {p for p, _ in (*inner.patients_except, *inner.patients_except_records)}
        assert named | {p for p, _ in inner.disclosed} <= set(searched)


def test_a_role_in_a_token_reaches_a_role_consent_only_where_the_organisation_takes_part() -> None:
    """A consent naming `koordinator` reaches a caller claiming that role at an
    organisation related to the child, and no stranger to the child who claims it."""
    consent = Grant(consent="Consent/c1", categories=["careplan"], roles=["koordinator"])
    state = PatientAccessState(patient="p1", grants=[consent], related=[ORGS[0]])
    plan = ResourceFacts("CarePlan/x", "p1", "careplan", author=ORGS[3])
    for orgnr, kind, expected in ((ORGS[0], "bup", True), (ORGS[1], "barnehage", False),
                                  (ORGS[2], "dps", False)):  # fmt: skip
        caller = Caller(orgnr=orgnr, org_kind=kind, roles=["koordinator"])
        context = AccessContext(caller, day=DAY)
        assert decide(state, plan, context).permit is expected, orgnr
        assert (plan.reference in kept_by_sql([plan], "careplan", context, [state])) is expected


def test_a_consent_on_the_childs_behalf_releases_nothing_the_child_keeps_from_the_parents() -> None:
    """pbrl §3-4 second ledd: what BUP holds under the child's own consent is hidden from
    the parents, so a consent the parents (or a care-order holder) gave does not pass it
    on; one the child gave itself does. Read and search agree."""
    bup, school, other = ORGS[0], ORGS[1], ORGS[2]
    hidden = HiddenFromParents(consent="Consent/h1", orgs=[bup], categories=["journal"])
    kept = ResourceFacts("DocumentReference/d0", "p1", "journal", author=bup)
    shared = ResourceFacts("DocumentReference/d1", "p1", "journal", author=other)
    context = AccessContext(Caller(orgnr=school, org_kind="skole"), day=DAY)
    for on_behalf, kept_released in ((True, False), (False, True)):
        grant = Grant(
            consent="Consent/c1", categories=["journal"], orgs=[school], on_behalf=on_behalf
        )
        state = PatientAccessState(patient="p1", grants=[grant], hidden_from_parents=[hidden])
        assert decide(state, kept, context).permit is kept_released
        assert decide(state, shared, context).permit is True
        expected = {shared.reference} | ({kept.reference} if kept_released else set())
        assert kept_by_sql([kept, shared], "journal", context, [state]) == expected


def test_a_disclosure_releases_the_reported_version_only() -> None:
    """An hpl §33 disclosure names the version reported: that version is released, to its
    recipient only; a later (or earlier) version of the same resource is not, by `decide`
    and by the search filter alike."""
    state = PatientAccessState(
        patient="p1",
        disclosures=[
            Disclosure(
                record="AuditEvent/a1",
                basis="hpl-33",
                recipients=[ORGS[2]],
                resources=["DocumentReference/d0/_history/2"],
            )
        ],
    )
    recipient = AccessContext(Caller(orgnr=ORGS[2], org_kind="barnevernstjeneste"), day=DAY)
    other = AccessContext(Caller(orgnr=ORGS[1], org_kind="barnevernstjeneste"), day=DAY)
    category = DataCategory.JOURNAL.value
    for version, expected in ((1, False), (2, True), (3, False)):
        note = ResourceFacts("DocumentReference/d0", "p1", category, ORGS[0], version=version)
        assert decide(state, note, recipient).permit is expected, version
        assert (note.reference in kept_by_sql([note], category, recipient, [state])) is expected
        assert not decide(state, note, other).permit
    unversioned = ResourceFacts("DocumentReference/d0", "p1", category, ORGS[0])
    assert not decide(state, unversioned, recipient).permit


def test_of_the_consents_only_the_childs_confidential_ones_are_kept_from_the_parents() -> None:
    """A parent sees the consents of the child they hold parental responsibility for, the
    ones they gave included, even when the child later confided in the same organisation;
    only the child's confidential consent itself is kept from them. Read and search agree."""
    ppt = ORGS[1]
    hidden = HiddenFromParents(consent="Consent/h1", orgs=[ppt], categories=["journal"])
    state = PatientAccessState(
        patient="p1", parents=[PARENTS[0]], parents_until=DAY, hidden_from_parents=[hidden]
    )
    theirs = ResourceFacts("Consent/c1", "p1", "consent", author=ORGS[0], parties=(ppt,))
    childs = ResourceFacts("Consent/h1", "p1", "consent", author=ppt, parties=(ppt,))
    context = AccessContext(Caller(fhir_user=PARENTS[0]), day=DAY)
    assert decide(state, theirs, context).permit
    assert not decide(state, childs, context).permit
    assert kept_by_sql([theirs, childs], "consent", context, [state]) == {"Consent/c1"}


@settings(max_examples=250, deadline=None)
@given(
    known=st.tuples(*(states(p) for p in PATIENTS)).map(list),
    caller=st.one_of(organisation_callers, person_callers),
    purpose=st.sampled_from(PURPOSES),
    facts=resources(),
    emergency_for=st.one_of(st.none(), st.sampled_from(PATIENTS)),
    searched=subsets(PATIENTS),
)
def test_the_filter_of_a_search_by_patient_needs_only_their_states(
    known: list[PatientAccessState],
    caller: Caller,
    purpose: str,
    facts: list[ResourceFacts],
    emergency_for: str | None,
    searched: list[str],
) -> None:
    """A search by patient has its filter made from the searched patients' states alone
    (`AccessGuard.filter_for`): it keeps what the filter made from every state keeps."""
    emergency = Emergency(patient=emergency_for, reason="akutt") if emergency_for else None
    context = AccessContext(caller, purpose_of_use=purpose, emergency=emergency, day=DAY)
    theirs = [s for s in known if s.patient in searched]
    for category in CATEGORIES:
        mine = [f for f in facts if f.category == category]
        from_all = visibility(known, category, context).within(searched)
        from_theirs = visibility(theirs, category, context).within(searched)
        assert kept_by_filter(mine, category, from_theirs) == kept_by_filter(
            mine, category, from_all
        )


def test_parental_responsibility_and_a_care_order_end_on_their_last_day() -> None:
    """An end the register set ahead of time takes effect by the day: the parent sees the
    child's information, and the care-order holder holds it, through the last day and not
    the day after, whether or not the consent service has published the child's state
    again since. Read and search agree."""
    note = ResourceFacts("DocumentReference/d0", "p1", "journal", author=ORGS[2])
    state = PatientAccessState(
        patient="p1",
        parents=["RelatedPerson/r1"],
        parents_until=DAY + timedelta(days=365),
        parents_end={"RelatedPerson/r1": DAY},
        care_order_holders=[ORGS[0]],
        care_order_ends={ORGS[0]: DAY},
    )
    parent = Caller(fhir_user="RelatedPerson/r1", credential="person")
    holder = Caller(orgnr=ORGS[0], org_kind="barnevernstjeneste")
    for day, holds in ((DAY, True), (DAY + timedelta(days=1), False)):
        context = AccessContext(parent, day=day)
        assert decide(state, note, context).permit is holds, day
        assert (note.reference in kept_by_sql([note], "journal", context, [state])) is holds
        basis = relation_basis(state, AccessContext(holder, day=day))
        assert basis == ("care-order-holder" if holds else None), day
