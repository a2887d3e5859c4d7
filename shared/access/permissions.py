"""The one permission table: what each kind of caller may do with each resource type, each
operation and each route of the consent administration API.

A cell is a `Rule`. `NO` and `NEVER` are decided here, from who the caller is alone (its
credential and its organisation's kind, which comes only from the operator's register),
so the answer says nothing about any child. The other rules let the request through to a
condition on the data, enforced in one place each:
- `CONSENT`: the consent step (`shared.access.guard`) releases each resource only on a
  basis (own data, named party, active consent, emergency, hpl §33);
- `RELATED`: only about a child the caller has a relation to (`shared.access.decision`,
  category `person`; creates check it where the child is resolved,
  `shared.directory_client`); a child without one answers exactly as a missing child;
- `LOOKUP`: as `RELATED`, and an exact identifier finds the child itself (at most one, a
  subset without care orders or parents, audited);
- `OWN`: only what belongs to the caller (the organisation it names or wrote, a person's
  own answer; each type says which in `OWNERSHIP`).

`permission` is called by every service for every interaction, operation and transaction
entry (`shared.fhir.router`, `shared.fhir.transaction`); every cell is tested, and the
README shows the table as the test renders it (`tests/test_permission_table.py`).
"""

from __future__ import annotations

from enum import StrEnum

from shared.codes import HEALTH_KINDS, OrganisationKind
from shared.fhir.errors import FhirError, Issue, error
from shared.transport.wire import Caller, FhirRequest


class Actor(StrEnum):
    """Who acts: a group of organisation kinds, a person, or an operator credential."""

    HEALTH = "health"
    BARNEVERNSTJENESTE = "barnevernstjeneste"
    BARNEVERN = "barnevern"
    PARTNER = "partner"
    PERSON = "person"
    OPERATOR = "operator"
    REGISTER = "register"


K = OrganisationKind
ACTOR_KINDS: dict[Actor, frozenset[str]] = {
    Actor.HEALTH: frozenset(HEALTH_KINDS),
    Actor.BARNEVERNSTJENESTE: frozenset({K.BARNEVERNSTJENESTE}),
    Actor.BARNEVERN: frozenset({K.BARNEVERNINSTITUSJON, K.BUFETAT}),
    Actor.PARTNER: frozenset({K.SKOLE, K.BARNEHAGE, K.PPT, K.NAV}),
}
ACTOR_LABELS = {
    Actor.HEALTH: "health (" + ", ".join(sorted(ACTOR_KINDS[Actor.HEALTH])) + ")",
    Actor.BARNEVERNSTJENESTE: "barnevernstjeneste",
    Actor.BARNEVERN: "barneverninstitusjon, bufetat",
    Actor.PARTNER: "skole, barnehage, ppt, nav",
    Actor.PERSON: "person (fhirUser)",
    Actor.OPERATOR: "operator",
    Actor.REGISTER: "register",
}
CARE_ORDER_KINDS = (
    ACTOR_KINDS[Actor.HEALTH]
    | ACTOR_KINDS[Actor.BARNEVERNSTJENESTE]
    | (ACTOR_KINDS[Actor.BARNEVERN])
)
"""Kinds that may learn that a child is under a care order, when they have a relation to
the child (barnevernsloven §13-1 keeps it from schools, kindergartens, PPT and NAV)."""


class Rule(StrEnum):
    NO = "-"
    NEVER = "405"
    ALL = "all"
    CONSENT = "consent"
    RELATED = "related"
    LOOKUP = "lookup"
    OWN = "own"


CONSENT_API = "consent API"
SERVER = "server"
_CONSENT_API = {  # operation: (method, path under /consent/v1, its Consent scope)
    "consent-authority": ("GET", "/authority", "read"),
    "consent-create": ("POST", "/consents", "create"),
    "consent-sign": ("POST", "/consents/{id}/signatures", "update"),
    "consent-withdraw": ("POST", "/consents/{id}/withdrawal", "update"),
    "consent-child-view": ("POST", "/consents/{id}/child-view", "update"),
    "consent-hearing": ("POST", "/consents/{id}/hearings", "update"),
    "consent-objection": ("POST", "/consents/{id}/objections", "update"),
    "consent-list": ("GET", "/patients/{id}/consents", "search"),
    "access-decide": ("POST", "/decisions", "read"),
    "disclosure-hpl33": ("POST", "/disclosures", "create"),
    "disclosure-list": ("GET", "/patients/{id}/disclosures", "search"),
    "disclosure-close": ("POST", "/disclosures/{id}/closure", "update"),
}
CONSENT_API_ROUTES = {name: (method, path) for name, (method, path, _) in _CONSENT_API.items()}
"""The consent administration API (under `/consent/v1`): each route is one operation of
the consent service, named here, and a row of the table."""
CONSENT_API_SCOPES = {name: ("Consent", scope) for name, (_, _, scope) in _CONSENT_API.items()}
"""The SMART scope each route of the consent API needs, as (resource type, interaction)
(`shared.auth.scopes.required_scope`)."""


READING_OPERATIONS = frozenset({("Subscription", "$status"), ("Subscription", "$events")})
"""The operations that only read. They need their type's read scope, however they are
asked (FHIR allows POST for every operation, GET only for these); every other operation
needs the update scope and is refused (405) over GET."""


def scope_needed(request: FhirRequest) -> tuple[str, str]:
    """The (resource type, interaction) whose SMART scope a request needs: its own for a
    FHIR interaction or an operation on a type, the declared one for the consent API.
    Checked at the gateway and again by the service that answers (`authorize_request`)."""
    if request.resource_type is None and request.operation in CONSENT_API_SCOPES:
        return CONSENT_API_SCOPES[request.operation]
    if request.interaction in ("operation", "read-operation"):
        reading = (request.resource_type, request.operation) in READING_OPERATIONS
        return request.resource_type or "", "read-operation" if reading else "operation"
    return request.resource_type or "", request.interaction


_ORGS = (Actor.HEALTH, Actor.BARNEVERNSTJENESTE, Actor.BARNEVERN, Actor.PARTNER)
_CARE = (Actor.HEALTH, Actor.BARNEVERNSTJENESTE, Actor.BARNEVERN)
_EVERYONE = (*_ORGS, Actor.PERSON, Actor.OPERATOR, Actor.REGISTER)

Row = dict[Actor, Rule]


def cells(rule: Rule, *actors: Actor, **others: Rule) -> Row:
    """`rule` for `actors`, and per-actor exceptions by name (`person=Rule.CONSENT`)."""
    row = dict.fromkeys(actors, rule)
    row.update({Actor(name): value for name, value in others.items()})
    return row


NEVER = cells(Rule.NEVER, *_EVERYONE)


def _patient_data(create: Row, update: Row) -> dict[str, Row]:
    """A type of patient information: released by the consent step, kept (never deleted)."""
    read = cells(Rule.CONSENT, *_ORGS, person=Rule.CONSENT)
    return {"read": read, "search": read, "create": create, "update": update, "delete": NEVER}


def _register(owners: tuple[Actor, ...], create: Rule = Rule.OWN) -> dict[str, Row]:
    """A directory type anyone registered reads; its owners write it, the operator too."""
    read = cells(Rule.ALL, *_EVERYONE)
    write = cells(Rule.OWN, *owners, operator=Rule.ALL)
    return {
        "read": read,
        "search": read,
        "create": cells(create, *owners, operator=Rule.ALL),
        "update": write,
        "delete": write,
    }


_PLAN = _patient_data(create=cells(Rule.RELATED, *_CARE), update=cells(Rule.CONSENT, *_CARE))
_PERSON_READ = cells(Rule.RELATED, *_ORGS, person=Rule.RELATED, register=Rule.ALL)


def _fixed(readers: Row) -> dict[str, Row]:
    """A type the server writes from its code: `readers` read and search, no one writes."""
    writes = dict.fromkeys(("create", "update", "delete"), NEVER)
    return dict.fromkeys(("read", "search"), readers) | writes


GENERATED_TYPES = ("CodeSystem", "StructureDefinition", "ValueSet", "SearchParameter",
                   "OperationDefinition")  # fmt: skip

TABLE: dict[str, dict[str, Row]] = {
    SERVER: {
        "GET /fhir/metadata": cells(Rule.ALL, *_EVERYONE),
        "POST /fhir (batch, transaction)": cells(Rule.ALL, *_EVERYONE),
    },
    "Organization": {
        "read": cells(Rule.ALL, *_EVERYONE),
        "search": cells(Rule.ALL, *_EVERYONE),
        "create": cells(Rule.ALL, Actor.OPERATOR),
        "update": cells(Rule.ALL, Actor.OPERATOR),
        "delete": cells(Rule.ALL, Actor.OPERATOR),
    },
    "Practitioner": _register(_ORGS, create=Rule.ALL),
    "PractitionerRole": _register(_ORGS),
    "HealthcareService": _register(_ORGS),
    "Patient": {
        "read": _PERSON_READ,
        "search": cells(
            Rule.LOOKUP, *_CARE, partner=Rule.RELATED, person=Rule.RELATED, register=Rule.LOOKUP
        ),
        "create": cells(Rule.ALL, *_CARE),
        "update": cells(Rule.RELATED, *_CARE, register=Rule.ALL),
        "delete": cells(Rule.OWN, *_CARE),
        "$care-order": cells(Rule.ALL, Actor.BARNEVERNSTJENESTE),
        "$start-care": cells(Rule.ALL, *_CARE),
    },
    "RelatedPerson": {
        "read": cells(Rule.RELATED, *_ORGS, person=Rule.RELATED, register=Rule.ALL),
        "search": cells(Rule.RELATED, *_ORGS, person=Rule.RELATED, register=Rule.ALL),
        "create": cells(Rule.ALL, Actor.REGISTER),
        "update": cells(Rule.ALL, Actor.REGISTER),
        "delete": cells(Rule.ALL, Actor.REGISTER),
    },
    "Consent": {
        "read": cells(Rule.CONSENT, *_CARE, person=Rule.CONSENT),
        "search": cells(Rule.CONSENT, *_CARE, person=Rule.CONSENT),
        "create": NEVER,
        "update": NEVER,
        "delete": NEVER,
    },
    "AuditEvent": {
        "read": cells(Rule.OWN, *_ORGS, operator=Rule.ALL),
        "search": cells(Rule.OWN, *_ORGS, operator=Rule.ALL),
        "create": NEVER,
        "update": NEVER,
        "delete": NEVER,
        "$review": cells(Rule.ALL, Actor.OPERATOR),
    },
    CONSENT_API: {
        "consent-authority": cells(Rule.RELATED, *_CARE, person=Rule.RELATED),
        "consent-create": cells(Rule.RELATED, *_CARE),
        "consent-sign": cells(Rule.CONSENT, *_CARE, person=Rule.OWN),
        "consent-withdraw": cells(Rule.CONSENT, *_CARE, person=Rule.OWN),
        "consent-child-view": cells(Rule.CONSENT, *_CARE),
        "consent-hearing": cells(Rule.CONSENT, *_CARE),
        "consent-objection": cells(Rule.CONSENT, *_CARE),
        "consent-list": cells(Rule.RELATED, *_CARE, person=Rule.RELATED),
        "access-decide": cells(Rule.RELATED, *_ORGS, person=Rule.RELATED),
        "disclosure-hpl33": cells(Rule.RELATED, Actor.HEALTH),
        "disclosure-list": cells(
            Rule.RELATED, Actor.HEALTH, Actor.BARNEVERNSTJENESTE, operator=Rule.ALL
        ),
        "disclosure-close": cells(Rule.OWN, Actor.HEALTH, operator=Rule.ALL),
    },
    "ServiceRequest": _patient_data(
        create=cells(Rule.ALL, Actor.HEALTH, Actor.BARNEVERNSTJENESTE),
        update=cells(Rule.OWN, Actor.HEALTH, Actor.BARNEVERNSTJENESTE),
    ),
    "Task": _patient_data(
        create=NEVER, update=cells(Rule.CONSENT, Actor.HEALTH, Actor.BARNEVERNSTJENESTE)
    ),
    "DocumentReference": _patient_data(
        create=cells(Rule.ALL, Actor.HEALTH, Actor.BARNEVERNSTJENESTE),
        update=cells(Rule.OWN, Actor.HEALTH, Actor.BARNEVERNSTJENESTE),
    ),
    "Provenance": _patient_data(create=NEVER, update=NEVER),
    "CarePlan": _PLAN,
    "Goal": _PLAN,
    "CareTeam": {**_PLAN, "$assign-coordinator": cells(Rule.CONSENT, *_CARE)},
    "Subscription": {
        action: cells(Rule.OWN, *_ORGS)
        for action in ("read", "search", "create", "update", "delete", "$status", "$events")
    },
    **dict.fromkeys(GENERATED_TYPES, _fixed(cells(Rule.ALL, *_EVERYONE))),
    "SubscriptionTopic": _fixed(cells(Rule.ALL, *_ORGS, person=Rule.ALL)),
}
"""Resource type (or the consent API, or the server's own routes) → action → actor → rule.
An actor missing from a row may not do it (`NO`)."""

OWNERSHIP: dict[str, str] = {
    "Practitioner": "registered it",
    "PractitionerRole": "is its `organization`",
    "HealthcareService": "is its `providedBy`",
    "Patient": "registered the child (delete)",
    "AuditEvent": "is the agent (its own accesses)",
    "ServiceRequest": "is the referrer (amends its referral)",
    "DocumentReference": "wrote the attachment",
    "Subscription": "owns the subscription",
    CONSENT_API: "a person answers only as itself; a §33 disclosure is closed by its reporter",
}
"""What `OWN` means for each type: the caller's organisation (or person) …"""

REFERRING = (
    "a referral (with its attachments) is sent by a health organisation or a"
    " barnevernstjeneste; a barneverninstitusjon cannot refer directly: the"
    " barnevernstjeneste or the child's fastlege refers, with the institution's information"
    " attached"
)
NOTES: dict[tuple[str, str], str] = {
    ("ServiceRequest", "create"): REFERRING,
    ("DocumentReference", "create"): REFERRING,
    ("Organization", "create"): "organisations are admitted to the register by the operator",
    ("Organization", "update"): "the register of organisations is the operator's",
    ("RelatedPerson", "create"): "parental responsibility comes from the population register",
    ("RelatedPerson", "update"): "parental responsibility comes from the population register",
    ("Patient", "$care-order"): "a care order is stated by the barnevernstjeneste holding it",
}
"""Why a cell refuses, where the table alone would not tell an integrator what to do."""

INTERACTION_ACTIONS = {
    "read": "read",
    "vread": "read",
    "history-instance": "read",
    "search": "search",
    "history-type": "search",
    "create": "create",
    "validate": "create",
    "update": "update",
    "patch": "update",
    "delete": "delete",
}
"""FHIR interactions → table actions (`$validate` needs what a create needs; a PATCH is an
update, `update (PUT, PATCH)` in the README's table)."""


def actor_of(caller: Caller) -> Actor | None:
    """The table column of a caller; None for an organisation the register does not know."""
    if caller.credential == "person":
        return Actor.PERSON
    if caller.credential == "operator":
        return Actor.OPERATOR
    if caller.credential == "register":
        return Actor.REGISTER
    for actor, kinds in ACTOR_KINDS.items():
        if caller.org_kind in kinds:
            return actor
    return None


def action_of(request: FhirRequest) -> str:
    if request.interaction in ("operation", "read-operation"):
        return request.operation or ""
    return INTERACTION_ACTIONS.get(request.interaction, request.interaction)


def subject_of(request: FhirRequest) -> str:
    """The table row's first key: the resource type, or the consent API for the
    operations that belong to no type."""
    return request.resource_type or CONSENT_API


def request_rule(request: FhirRequest) -> Rule:
    """`permission` for one request as it arrived at a service."""
    return permission(request.caller, subject_of(request), action_of(request))


def row_of(resource_type: str, action: str) -> Row | None:
    return TABLE.get(resource_type, {}).get(action)


def not_registered(caller: Caller) -> FhirError:
    who = f"Organisation {caller.orgnr}" if caller.orgnr else "A client without an organisation"
    return error(
        403,
        "forbidden",
        f"{who} is not registered in barnebro: an operator admits organisations to the"
        " register before they take part",
    )


def permission(caller: Caller, resource_type: str, action: str) -> Rule:
    """The rule for this caller, or the refusal: 403 for `NO`, 405 for `NEVER`. A barnebro
    service reading another (`service`) is trusted with everything."""
    if caller.credential == "service":
        return Rule.ALL
    actor = actor_of(caller)
    if actor is None:
        raise not_registered(caller)
    row = row_of(resource_type, action)
    rule = (row or {}).get(actor, Rule.NO)
    if rule is Rule.NEVER:
        raise error(
            405,
            "not-supported",
            f"{action} of {resource_type} is not offered: barnebro keeps or writes it itself",
        )
    if rule is Rule.NO:
        what = ACTOR_LABELS[actor]
        note = NOTES.get((resource_type, action))
        raise FhirError(
            403,
            [
                Issue(
                    "forbidden",
                    f"Not permitted: a caller of kind {what} may not {action} {resource_type}"
                    + (f": {note}" if note else "")
                    + " (see the permission table)",
                )
            ],
        )
    return rule


def permits(caller: Caller, resource_type: str, action: str) -> bool:
    """Whether `permission` would let the caller through (no data condition checked)."""
    try:
        permission(caller, resource_type, action)
    except FhirError:
        return False
    return True


def may_know_care_orders(caller: Caller) -> bool:
    """Whether this caller may ever learn of a care order (with a relation to the child):
    health and barnevern organisations, a person, who sees a child's record only as its
    parent, a party to the county board's case that made the care order, and the operator
    and the population register, which read every record whole (and so write back the care
    orders they were shown)."""
    return caller.credential in ("service", "person", "operator", "register") or (
        caller.credential == "organisation" and caller.org_kind in CARE_ORDER_KINDS
    )
