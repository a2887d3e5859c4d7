"""The consent administration API's OpenAPI document describes the API exactly.

The unit tests check the document itself: every route of the API
(`shared.access.permissions.CONSENT_API_ROUTES`) is in it, every error is an
OperationOutcome, input models that refuse unknown fields say so, and a signature's
`decision` is `consent | refuse`, `as_of` is documented where it is taken and answered.
The property test asks the real gateway of a running stack requests generated from the
document it serves (hypothesis strategies from the JSON schemas, derandomized, a bounded
number per route), as callers of every kind, with real children, consents, notes, §33
disclosures and a past instant planted in some of them so that they get past "not found"
(a proposed consent of its own for each route that answers one), and checks that every
answer's status is documented for its route, its body conforms to the schema documented
for that status, that there is never a 5xx, and that every route succeeds at least once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from pydantic import BaseModel
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from services.consent import admin_api, answers
from services.consent.openapi import ROUTES, openapi_document
from shared.access.permissions import CONSENT_API_ROUTES
from tests.consent_world import BUP, BVT, GP, HEARD, SKOLE, Child, World, sharing, signature

DOCUMENT_URI = "urn:barnebro:consent-api"
EXAMPLES_PER_ROUTE = 60
NO_TOKEN = "none"
JSON_MEDIA = "application/json"


def document() -> dict[str, Any]:
    return openapi_document("/consent/v1")


def operations(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): operation
        for path, item in doc["paths"].items()
        for method, operation in item.items()
    }


def resolved(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        schema = doc["components"]["schemas"][name]
    return schema


# -- the document ----------------------------------------------------------------------


def test_every_route_of_the_api_is_described() -> None:
    """A route added to `CONSENT_API_ROUTES` fails here until `openapi.ROUTES` describes
    it (its models, its answer, its refusals)."""
    missing = set(CONSENT_API_ROUTES) - set(ROUTES)
    assert not missing, f"routes without an entry in services/consent/openapi.py: {missing}"
    assert set(ROUTES) <= set(CONSENT_API_ROUTES), set(ROUTES) - set(CONSENT_API_ROUTES)
    described = set(operations(document()))
    assert described == set(CONSENT_API_ROUTES.values())


def test_a_signatures_decision_is_consent_or_refuse() -> None:
    doc = document()
    schemas = doc["components"]["schemas"]
    for model in ("SignatureInput", "SignInput"):
        decision = resolved(doc, schemas[model]["properties"]["decision"])
        assert decision["enum"] == ["consent", "refuse"], (model, decision)
    items = resolved(doc, schemas["ConsentInput"]["properties"]["signatures"]["items"])
    assert resolved(doc, items["properties"]["decision"])["enum"] == ["consent", "refuse"]
    answer = schemas["AccessDecisionAnswer"]["properties"]["decision"]
    assert answer["enum"] == ["permit", "deny"], "the answer of /decisions is another thing"


def test_every_route_documents_its_answers_and_refusals() -> None:
    doc = document()
    for name, (method, path) in CONSENT_API_ROUTES.items():
        operation = operations(doc)[(method, path)]
        statuses = set(operation["responses"])
        route = ROUTES[name]
        expected = {str(route.status), "400", "401", "403", "503", "504"}
        if route.body is not None:
            expected |= {"413", "415"}
            assert operation["requestBody"]["required"] is True
        assert expected <= statuses, (name, expected - statuses)
        assert "default" not in statuses, "every status is named"
        for status, response in operation["responses"].items():
            (media, content), *others = response["content"].items()
            assert not others, (name, status)
            if status.startswith("2"):
                assert media == "application/json", (name, status)
            else:
                assert media == "application/fhir+json", (name, status)
                assert content["schema"] == {"$ref": "#/components/schemas/OperationOutcome"}


def test_models_that_refuse_unknown_fields_say_so() -> None:
    doc = document()
    modules = (admin_api, answers)
    for name, schema in doc["components"]["schemas"].items():
        model = next((getattr(m, name) for m in modules if hasattr(m, name)), None)
        if isinstance(model, type) and issubclass(model, BaseModel):
            forbids = model.model_config.get("extra") == "forbid"
            assert (schema.get("additionalProperties") is False) == forbids, name
    for route in ROUTES.values():
        for model in (route.body, route.query):
            if model is not None and model is not admin_api.AuthorityQuery:
                schema = doc["components"]["schemas"][model.__name__]
                assert schema["additionalProperties"] is False, model.__name__


def test_as_of_is_taken_and_answered_as_documented() -> None:
    """`/authority` takes `as_of` as a query parameter and `/decisions` in its body; each
    answers, when asked so, the model that repeats it (and, for a decision, the consent
    versions it rested on), and otherwise the one without."""
    doc = document()
    schemas = doc["components"]["schemas"]
    authority = operations(doc)[CONSENT_API_ROUTES["consent-authority"]]
    (as_of,) = [p for p in authority["parameters"] if p["name"] == "as_of"]
    assert as_of["in"] == "query" and as_of["required"] is False
    assert as_of["schema"]["format"] == "date-time", as_of
    flags = {p["name"] for p in authority["parameters"] if p["schema"].get("type") == "boolean"}
    assert "to_barnevern" in flags, flags
    body = schemas["DecisionInput"]["properties"]["as_of"]
    assert {"type": "string", "format": "date-time"}.items() <= body["anyOf"][0].items()
    for name, plain, then, added in (
        ("consent-authority", "AuthorityAnswer", "AuthorityAsOfAnswer", {"as_of"}),
        ("access-decide", "AccessDecisionAnswer", "AccessDecisionAsOfAnswer",
         {"as_of", "consent_versions"}),
    ):  # fmt: skip
        answer = operations(doc)[CONSENT_API_ROUTES[name]]["responses"]["200"]
        options = answer["content"]["application/json"]["schema"]["oneOf"]
        assert options == [{"$ref": f"#/components/schemas/{m}"} for m in (plain, then)]
        assert set(schemas[then]["required"]) - set(schemas[plain]["required"]) == added
        assert not added & set(schemas[plain]["properties"]), name


def test_every_schema_is_valid_json_schema() -> None:
    for name, schema in document()["components"]["schemas"].items():
        try:
            Draft202012Validator.check_schema(schema)
        except Exception as exc:  # pragma: no cover - the message names the schema
            raise AssertionError(f"{name}: {exc}") from exc


# -- the running API -------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    route: str
    path: str
    query: tuple[tuple[str, str], ...]
    body: bytes | None
    caller: str

    def __repr__(self) -> str:
        body = (self.body or b"")[:300].decode(errors="replace")
        return f"<{self.caller}: {self.path}?{urlencode(self.query)} {body}>"


@dataclass(frozen=True)
class Family:
    """A child in the running stack (`Patient/…`), its parents (`RelatedPerson/…`), a
    consent (`Consent/…`), a note (`DocumentReference/…`) about it and a §33 disclosure of
    the note (`AuditEvent/…`); a route that answers a consent may have one of its own
    (`consents`, by operation name)."""

    child: str
    parents: tuple[str, ...]
    consent: str
    note: str
    disclosure: str
    consents: dict[str, str] = field(default_factory=dict)

    def named_in(self, route: str, path: str) -> str:
        """What the path of `route` names of this family."""
        if path.startswith("/consents/"):
            return self.consents.get(route, self.consent)
        if path.startswith("/disclosures/"):
            return self.disclosure
        return self.child


@dataclass(frozen=True)
class Planted:
    """Real things in the running stack that requests may name, and an instant after
    they were all there."""

    families: list[Family]
    orgnrs: list[str]
    as_of: str


def planted_values(value: Any, family: Family, planted: Planted) -> Any:
    """`value` (generated from the schema) with the fields that name things naming real
    ones, all of one family, recursively: the child, a parent (the one who has not
    answered the family's consent yet, also as the parent heard), a registered recipient,
    a note about the child, an instant when all of them were there."""
    grantor = family.parents[-1] if family.parents else family.child
    real: dict[str, Any] = {
        "patient": family.child,
        "grantor": grantor,
        "by": grantor,
        "parent": family.parents[-1] if family.parents else None,
        "as_of": planted.as_of,
        "fhir_user": grantor if family.parents else None,
        "recipient": planted.orgnrs[0],
        "author": planted.orgnrs[-1],
        "resources": [family.note],
        "recipients": {"organizations": planted.orgnrs[1:]},
    }
    if isinstance(value, dict):
        if "signatures" in value:  # a consent to share names its recipients (a rule
            value = {**value, "recipients": {}}  # between fields the schema cannot state)
        return {
            k: real[k] if k in real and real[k] is not None else planted_values(v, family, planted)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [planted_values(v, family, planted) for v in value]
    return value


def planting(
    values: st.SearchStrategy[Any], family: Family | None, planted: Planted
) -> st.SearchStrategy[Any]:
    """Values as generated, or (for a call about a real family) naming its things."""
    if family is None:
        return values
    return values.map(lambda value: planted_values(value, family, planted))


SCHEMA_KEYS = frozenset(
    {"type", "properties", "required", "additionalProperties", "items", "enum", "const",
     "pattern", "format", "minLength", "maxLength", "minItems", "maxItems", "anyOf", "$ref",
     "default", "title", "description"}
)  # fmt: skip
"""The JSON Schema keywords the document's schemas use (pydantic's); `from_schema` refuses
any other, so a schema it cannot honour fails the test rather than being half generated."""


def from_schema(schema: dict[str, Any], doc: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values valid under `schema` (its `$ref`s resolved in `doc`)."""
    unknown = set(schema) - SCHEMA_KEYS
    assert not unknown, f"from_schema does not know {unknown} in {schema}"
    if "$ref" in schema:
        return from_schema(resolved(doc, schema), doc)
    if "anyOf" in schema:
        return st.one_of(*(from_schema(option, doc) for option in schema["anyOf"]))
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "object":
        return _object(schema, doc)
    if kind == "array":
        return st.lists(
            from_schema(schema.get("items", {"type": "string"}), doc),
            min_size=schema.get("minItems", 0),
            max_size=min(schema.get("maxItems", 4), 4),
        )
    if kind == "string":
        return _string(schema)
    simple: dict[str, st.SearchStrategy[Any]] = {
        "boolean": st.booleans(),
        "integer": st.integers(-(2**31), 2**31),
        "null": st.none(),
    }
    assert kind in simple, f"from_schema does not know the type of {schema}"
    return simple[kind]


PAST = st.datetimes(
    min_value=datetime(2000, 1, 1),
    max_value=datetime(2025, 12, 31),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=1)), timezone(timedelta(hours=-5))]),
)
"""Instants of the past, with a time zone (UTC written Z), to the second or the microsecond."""


def _instant(moment: datetime, precise: bool) -> str:
    text = moment.isoformat(timespec="microseconds" if precise else "seconds")
    return text.replace("+00:00", "Z")


def _string(schema: dict[str, Any]) -> st.SearchStrategy[str]:
    low, high = schema.get("minLength", 0), schema.get("maxLength", 40)
    if schema.get("format") == "date":
        return st.dates().map(lambda d: d.isoformat())
    if schema.get("format") == "date-time":  # its pattern says how it is written
        return st.builds(_instant, PAST, st.booleans())
    assert "format" not in schema, schema
    if "pattern" in schema:
        text = st.from_regex(schema["pattern"], fullmatch=True)
        return text.filter(lambda t: low <= len(t) <= high)
    return st.text(min_size=low, max_size=min(high, 40))


def _object(schema: dict[str, Any], doc: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    properties = schema.get("properties", {})
    required = set(schema.get("required", ()))
    fields = {
        name: from_schema(prop, doc) if name in required else st.none() | from_schema(prop, doc)
        for name, prop in properties.items()
    }
    # An optional field is left out when drawn as None (None is no value a field takes
    # only when its schema allows null: sent then as the field left out, which is alike).
    drawn = st.fixed_dictionaries(fields).map(
        lambda d: {k: v for k, v in d.items() if k in required or v is not None}
    )
    extra = schema.get("additionalProperties", True)
    if extra is False or properties:
        return drawn
    values = from_schema(extra, doc) if isinstance(extra, dict) else st.text(max_size=10)
    return st.dictionaries(st.text(min_size=1, max_size=10), values, max_size=3)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=6,
)


def _query_text(value: Any) -> str:
    return json.dumps(value) if isinstance(value, bool) else str(value)


def call_strategy(
    doc: dict[str, Any], name: str, planted: Planted, callers: list[str]
) -> st.SearchStrategy[Call]:
    """Calls of the route `name` generated from the document: half of them about one of
    the real families (its child or consent in the path, its things in the query and the
    body), some with a body or query the document does not allow."""
    method, path = CONSENT_API_ROUTES[name]
    operation = operations(doc)[(method, path)]
    parameters = operation.get("parameters", [])
    query_parameters = [p for p in parameters if p["in"] == "query"]
    path_schemas = [p["schema"] for p in parameters if p["in"] == "path"]
    body_schema = operation.get("requestBody", {}).get("content", {}).get(JSON_MEDIA)

    def about(family: Family | None) -> st.SearchStrategy[Call]:
        path_ids: st.SearchStrategy[str] = st.just("")
        if path_schemas and family is None:
            # `.` and `..` are valid ids, but an HTTP client resolves them as path segments.
            path_ids = from_schema(path_schemas[0], doc).filter(lambda i: i not in (".", ".."))
        elif path_schemas and family is not None:
            path_ids = st.just(family.named_in(name, path).partition("/")[2])
        query: st.SearchStrategy[tuple[tuple[str, str], ...]] = st.just(())
        if query_parameters:
            object_schema = {
                "type": "object",
                "properties": {p["name"]: p["schema"] for p in query_parameters},
                "required": [p["name"] for p in query_parameters if p["required"]],
                "additionalProperties": False,
            }
            valid = planting(from_schema(object_schema, doc), family, planted).map(
                lambda q: tuple((k, _query_text(v)) for k, v in q.items())
            )
            names = [p["name"] for p in query_parameters]
            malformed = st.lists(
                st.tuples(st.sampled_from(names), st.text(max_size=12)), max_size=3
            ).map(tuple)
            query = st.one_of(valid, valid, valid, malformed)
        body: st.SearchStrategy[bytes | None] = st.just(None)
        if body_schema is not None:
            valid_body = planting(from_schema(body_schema["schema"], doc), family, planted)
            encoded = valid_body.map(lambda b: json.dumps(b).encode())
            body = st.one_of(
                encoded,
                encoded,
                encoded,
                JSON_VALUES.map(lambda b: json.dumps(b).encode()),
                st.binary(max_size=20),
            )
        return st.builds(
            lambda path_id, query_items, body_bytes, caller: Call(
                name, path.replace("{id}", path_id), query_items, body_bytes, caller
            ),
            path_ids,
            query,
            body,
            st.sampled_from(callers),
        )

    return st.one_of(about(None), st.sampled_from(planted.families).flatmap(about))


def examples(strategy: st.SearchStrategy[Call], count: int) -> list[Call]:
    """`count` calls drawn from `strategy`, the same ones on every run."""
    found: list[Call] = []

    @settings(
        max_examples=count,
        derandomize=True,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        deadline=None,
    )
    @given(strategy)
    def collect(call: Call) -> None:
        found.append(call)

    collect()
    return found


HPR = "9144889"
"""The health person at the fastlege who reports under hpl §33."""


async def populated(world: World) -> Planted:
    """Two children, one of 14 whose consent awaits its second parent, one of 17 with an
    active consent of its own; a note about each by the fastlege, who takes part in their
    care and reported each note under hpl §33. The child of 14 has a proposed consent of
    its own for each route that answers one (the second parent signs or withdraws it, the
    child's view or objection is recorded on it, and, one parent being enough for daily
    care, the other is heard on it)."""
    young, youth = await world.child(14), await world.child(17)
    reporter = world.token(GP, hpr=HPR)

    async def consent(child: Child, body: dict[str, Any], status: str) -> str:
        created = await world.api("POST", "consents", body)
        assert created.status == 201, created.body
        assert created.json()["status"] == status, created.json()
        return f"Consent/{created.json()['id']}"

    families = []
    for child, first in ((young, young.mother), (youth, youth.ref)):
        await world.start_care(child, GP)
        status = "proposed" if child is young else "active"
        shared = await consent(child, sharing(child, signature(first), child_view=HEARD), status)
        note = await world.note(child, "Bekymring", by=GP)
        disclosure = {"patient": child.ref, "recipient": BVT, "resources": [note], "reason": "x"}
        reported = await world.api("POST", "disclosures", disclosure, token=reporter)
        assert reported.status == 201, reported.body
        parents = (child.mother, child.father) if child is young else ()
        own: dict[str, str] = {}
        if child is young:
            awaiting = sharing(child, signature(first))
            for route in ("consent-sign", "consent-withdraw", "consent-child-view",
                          "consent-objection"):  # fmt: skip
                own[route] = await consent(child, awaiting, "proposed")
            daily_care = {"patient": child.ref, "purpose": "helsehjelp", "daily_care": True,
                          "categories": ["journal"], "signatures": [signature(first)]}  # fmt: skip
            own["consent-hearing"] = await consent(child, daily_care, "proposed")
        audit_event = f"AuditEvent/{reported.json()['disclosure']['id']}"
        families.append(Family(child.ref, parents, shared, note, audit_event, own))
    as_of = datetime.now(UTC).isoformat(timespec="microseconds")
    return Planted(families=families, orgnrs=[BVT, BUP], as_of=as_of)


def answer_checker(doc: dict[str, Any]) -> Callable[[dict[str, Any], Any], list[str]]:
    registry: Registry[Any] = Registry().with_resource(
        DOCUMENT_URI, DRAFT202012.create_resource(doc)
    )

    def rooted(schema: Any) -> Any:
        """`schema` with its references into the document made absolute."""
        if isinstance(schema, dict):
            return {k: DOCUMENT_URI + v if k == "$ref" else rooted(v) for k, v in schema.items()}
        if isinstance(schema, list):
            return [rooted(v) for v in schema]
        return schema

    def problems(schema: dict[str, Any], body: Any) -> list[str]:
        validator = Draft202012Validator(
            rooted(schema), registry=registry, format_checker=Draft202012Validator.FORMAT_CHECKER
        )
        return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in
                validator.iter_errors(body)]  # fmt: skip

    return problems


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_every_answer_is_documented(world: World) -> None:
    served = await world.stack.call("GET", f"{world.admin}/openapi.json", authenticated=False)
    assert served.status == 200, served.body
    doc = served.json()
    planted = await populated(world)
    mother = planted.families[0].parents[0]
    tokens = {
        "barnevernstjeneste": world.token(BVT),
        "fastlege": world.token(GP, hpr=HPR),
        "bup": world.token(BUP),
        "skole": world.token(SKOLE),
        "auditor": world.token(BVT, scope="system/*.cruds system/AuditEvent.rs"),
        "read-only": world.token(BVT, scope="system/Consent.rs"),
        "parent": world.token(SKOLE, fhir_user=mother),
        "operator": world.stack.operator_token(),
    }
    checker = answer_checker(doc)

    async def answered(call: Call) -> tuple[int, Any]:
        """Send `call`; its answer must be documented for its route, and as documented."""
        method, path = CONSENT_API_ROUTES[call.route]
        responses = operations(doc)[(method, path)]["responses"]
        url = f"{world.admin}{call.path}"
        if call.query:
            url += "?" + urlencode(call.query)
        reply = await world.stack.call(
            method,
            url,
            raw=call.body,
            token=tokens.get(call.caller),
            authenticated=call.caller != NO_TOKEN,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        assert reply.status < 500, (call, reply.status, reply.body)
        documented = responses.get(str(reply.status))
        assert documented is not None, ("undocumented status", call, reply.status, reply.body)
        media = reply.headers.get("Content-Type", "").split(";")[0].strip()
        assert media in documented["content"], (call, reply.status, media)
        schema = documented["content"][media]["schema"]
        wrong = checker(schema, reply.json())
        assert not wrong, (call, reply.status, wrong, reply.body[:2000])
        return reply.status, reply.json()

    seen: dict[str, set[int]] = {}
    for name in CONSENT_API_ROUTES:
        strategy = call_strategy(doc, name, planted, [*tokens, NO_TOKEN])
        sent: set[Call] = set()
        # Which calls a derandomized run draws shifts with any constant in the imported
        # code, so a route that has not yet succeeded is given more calls of the same kind.
        for count in (EXAMPLES_PER_ROUTE, 4 * EXAMPLES_PER_ROUTE):
            for call in examples(strategy, count):
                if call not in sent:
                    sent.add(call)
                    status, _ = await answered(call)
                    seen.setdefault(name, set()).add(status)
            if ROUTES[name].status in seen[name]:
                break
    for name, statuses in seen.items():
        success = ROUTES[name].status
        assert success in statuses, f"{name} never succeeded, only {sorted(statuses)}"

    # Asked as of the planted instant (which generated calls seldom are, and about a real
    # child less often still), the routes that take `as_of` answer as documented too.
    youth = planted.families[1]
    query = (("patient", youth.child), ("purpose", "informasjonsdeling"), ("as_of", planted.as_of))
    question = {"actor": {"orgnr": BUP, "kind": "bup"}, "patient": youth.child,
                "category": "journal", "as_of": planted.as_of}  # fmt: skip
    then = [
        Call("consent-authority", "/authority", query, None, "barnevernstjeneste"),
        Call("access-decide", "/decisions", (), json.dumps(question).encode(), "auditor"),
    ]
    for call in then:
        status, body = await answered(call)
        assert status == 200 and body["as_of"] == planted.as_of, (call, body)
    assert body["consent_versions"] == [f"{youth.consent}/_history/1"], body
