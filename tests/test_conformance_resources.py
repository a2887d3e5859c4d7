"""The conformance resources generated from the code: profiles, extension definitions,
value sets, search parameters and operation definitions, served read-only, referenced
from the CapabilityStatement, packed as a FHIR package, and what every answer of the API
is checked against (`tests.support.conforms`)."""

from __future__ import annotations

import ast
import importlib
import json
import pkgutil
import re
import tarfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

import services
import shared
from services.careplan.domain.vocabulary import CATEGORY_SYSTEM
from services.catalogue import PROJECT_CODE_SYSTEMS, all_definitions, project_conformance
from services.cli import main
from services.consent.domain.model import LEGAL_BASIS_SYSTEM
from services.referral.domain.vocabulary import ATTACHMENT_SYSTEM, STEP_SYSTEM
from services.subscriptions.domain.vocabulary import CHANNEL_TYPE_SYSTEM
from shared.codes import CONSENT_PURPOSE_SYSTEM, DATA_CATEGORY_SYSTEM
from shared.config import Settings
from shared.fhir.code_systems import code_system_resource
from shared.fhir.conformance import OPERATION_BASE
from shared.fhir.conformance_check import ConformanceChecker
from shared.fhir.extensions import CONSENT_CIRCUMSTANCE, EXTENSIONS, SUBSCRIPTION_BASE
from shared.fhir.profiles import CORE_PROFILE, NO_BASIS_TYPES, profile_url
from shared.fhir.resources import validate_resource
from tests.careplan_world import CarePlanWorld, member, plan, team
from tests.referral_world import BUP, BVT, GP, KOMMUNE, attachment, referral_bundle
from tests.support import Reply, Stack

ROOT = Path(__file__).resolve().parent.parent
OWN_BASES = ("https://fhir.barnebro.no/StructureDefinition/", f"{SUBSCRIPTION_BASE}/")
KNOWN_BASES = {CORE_PROFILE.format(t) for t in ("Resource", "DomainResource")} | {
    f"http://hl7.no/fhir/StructureDefinition/no-basis-{t}" for t in NO_BASIS_TYPES
}
OWN_SYSTEM = re.compile(r"^https://(fhir\.)?barnebro\.no/(fhir/)?CodeSystem/")
GENERATED_TYPES = ("StructureDefinition", "ValueSet", "SearchParameter", "OperationDefinition")


def resources() -> list[dict[str, Any]]:
    return project_conformance(Settings()).all()


def test_every_conformance_resource_and_code_system_is_valid_r4() -> None:
    """The consent service writes them at start-up without validating them again."""
    for resource in resources():
        validate_resource(resource, resource["resourceType"])
    for source in PROJECT_CODE_SYSTEMS:
        validate_resource(code_system_resource(source), "CodeSystem")
    ids = [(r["resourceType"], r["id"]) for r in resources()]
    assert len(ids) == len(set(ids))


def test_each_type_has_a_constraint_profile_on_a_known_base() -> None:
    definitions = {d.resource_type: d for d in all_definitions(Settings())}
    profiles = {
        r["type"]: r
        for r in resources()
        if r["resourceType"] == "StructureDefinition" and r["kind"] == "resource"
    }
    assert set(profiles) == set(definitions)
    for kind, profile in profiles.items():
        assert profile["url"] == profile_url(kind)
        assert profile["derivation"] == "constraint"
        assert profile["baseDefinition"] in KNOWN_BASES | {CORE_PROFILE.format(kind)}, kind
        if kind in NO_BASIS_TYPES:
            assert "no-basis" in profile["baseDefinition"]
        paths = [e["path"] for e in profile["differential"]["element"]]
        assert paths[0] == kind
        ids = [e["id"] for e in profile["differential"]["element"]]
        assert len(ids) == len(set(ids)), kind  # one element per path, every rule on it
    organization = profiles["Organization"]["differential"]["element"]
    assert {
        "id": "Organization.type",
        "path": "Organization.type",
        "min": 1,
        "binding": {
            "strength": "required",
            "valueSet": "https://fhir.barnebro.no/ValueSet/organisation-kind",
        },
    } in organization
    task = {e["id"]: e for e in profiles["Task"]["differential"]["element"]}
    assert (task["Task.intent"]["min"], task["Task.intent"]["fixedCode"]) == (1, "order")
    assert task["Task.focus"]["min"] == 1
    assert task["Task.businessStatus"]["binding"]["valueSet"].endswith("/referral-step")
    consent = json.dumps(profiles["Consent"])
    assert "ValueSet/data-category" in consent and CONSENT_CIRCUMSTANCE.url in consent


def own_urls_in_source() -> set[str]:
    """Every extension URL of the project the code names: literals under our bases, and
    module constants named *_EXT that hold one."""
    found: set[str] = set()
    pattern = re.compile(
        r"https://(?:fhir\.barnebro\.no|barnebro\.no/fhir)/StructureDefinition/[\w-]+"
    )
    for path in [*ROOT.glob("shared/**/*.py"), *ROOT.glob("services/**/*.py")]:
        text = path.read_text()
        found.update(pattern.findall(text))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.JoinedStr):
                for target in node.targets:
                    if isinstance(target, ast.Name) and target.id.endswith("_EXT"):
                        found.add(f"unregistered f-string constant {path.name}:{target.id}")
    return found


def test_every_extension_url_the_code_uses_has_a_structure_definition() -> None:
    defined = {
        r["url"]
        for r in resources()
        if r["resourceType"] == "StructureDefinition" and r["type"] == "Extension"
    }
    assert defined == {declaration.url for declaration in EXTENSIONS}
    used = own_urls_in_source()
    assert used - defined == set()
    for declaration in EXTENSIONS:
        assert declaration.url.startswith(OWN_BASES)


def test_value_sets_search_parameters_and_operations_follow_the_declarations() -> None:
    by_type: dict[str, list[dict[str, Any]]] = {}
    for resource in resources():
        by_type.setdefault(resource["resourceType"], []).append(resource)
    assert {v["compose"]["include"][0]["system"] for v in by_type["ValueSet"]} == {
        source.url for source in PROJECT_CODE_SYSTEMS
    }
    params = {p["url"]: p for p in by_type["SearchParameter"]}
    purpose = params["https://fhir.barnebro.no/SearchParameter/Consent-purpose"]
    assert (purpose["code"], purpose["base"], purpose["type"]) == ("purpose", ["Consent"], "token")
    assert "expression" in params["https://fhir.barnebro.no/SearchParameter/Patient-identifier"]
    operations = {o["code"]: o for o in by_type["OperationDefinition"]}
    assert set(operations) == {"assign-coordinator", "care-order", "start-care", "review"}
    start = operations["start-care"]
    assert (start["resource"], start["instance"], start["affectsState"]) == (
        ["Patient"], True, True,
    )  # fmt: skip
    assert all(o["url"].startswith(OPERATION_BASE) for o in operations.values())


def _system_constants() -> dict[str, str]:
    """Every `..._SYSTEM` constant of the project's code that names a barnebro code system."""
    found: dict[str, str] = {}
    for package in (services, shared):
        for module_info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            module = importlib.import_module(module_info.name)
            for name, value in vars(module).items():
                if name.endswith("_SYSTEM") and isinstance(value, str) and OWN_SYSTEM.search(value):
                    found[f"{module_info.name}.{name}"] = value
    return found


def test_every_code_system_the_project_writes_is_served() -> None:
    """A `system` URL the code declares is a CodeSystem with a ValueSet: none is left out."""
    served = {source.url: source for source in PROJECT_CODE_SYSTEMS}
    constants = _system_constants()
    assert len(constants) >= 20, constants
    missing = {name: url for name, url in constants.items() if url not in served}
    assert missing == {}
    value_sets = {r["compose"]["include"][0]["system"] for r in resources() if "compose" in r}
    assert value_sets == set(served)
    for url in (STEP_SYSTEM, CATEGORY_SYSTEM, LEGAL_BASIS_SYSTEM, CHANNEL_TYPE_SYSTEM):
        assert all(code.display and code.definition for code in served[url].codes), url


def test_operation_definitions_list_what_each_operation_takes_and_answers() -> None:
    operations = {o["code"]: o for o in resources() if o["resourceType"] == "OperationDefinition"}

    def listed(code: str, use: str) -> dict[str, tuple[str, int, str]]:
        return {
            p["name"]: (p["type"], p["min"], p["max"])
            for p in operations[code]["parameter"]
            if p["use"] == use
        }

    assert listed("care-order", "in") == {
        "action": ("code", 1, "1"),
        "date": ("date", 0, "1"),
        "successor": ("Identifier", 0, "1"),
    }
    assert listed("start-care", "in") == {"reason": ("string", 1, "1")}
    assert listed("assign-coordinator", "in") == {
        "coordinator": ("Reference", 1, "1"),
        "onBehalfOf": ("Reference", 0, "1"),
        "role": ("code", 0, "1"),
        "start": ("date", 0, "1"),
        "reason": ("string", 1, "1"),
        "substituteFor": ("string", 0, "1"),
    }
    assert listed("review", "in") == {
        "conclusion": ("code", 1, "1"),
        "reviewer": ("string", 1, "1"),
        "note": ("string", 0, "1"),
    }
    answers = {code: listed(code, "out") for code in operations}
    assert answers == {
        "care-order": {"return": ("OperationOutcome", 1, "1")},
        "start-care": {"return": ("OperationOutcome", 1, "1")},
        "assign-coordinator": {"return": ("CareTeam", 1, "1")},
        "review": {"return": ("AuditEvent", 1, "1")},
    }
    for operation in operations.values():
        assert all(p["documentation"] for p in operation["parameter"]), operation["code"]


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_each_operation_takes_only_the_parameters_it_declares(
    careplans: CarePlanWorld,
) -> None:
    """The handlers read what they accept from the same declaration: a parameter the
    OperationDefinition does not list is refused (400), naming those it does."""
    world = careplans.world
    child = await world.child(age=10)
    patient = f"Patient/{child.id}"
    bogus = {"resourceType": "Parameters", "parameter": [{"name": "bogus", "valueString": "x"}]}
    calls = [
        (f"{patient}/$care-order", "action, date, successor", world.token(BVT)),
        (f"{patient}/$start-care", "reason", world.token(BVT)),
        ("CareTeam/no-such-team/$assign-coordinator", "coordinator", world.token(BVT)),
        ("AuditEvent/no-such-event/$review", "conclusion, note, reviewer", None),
    ]
    for path, takes, token in calls:
        token = token or world.stack.operator_token()
        reply = await world.stack.call("POST", path, bogus, token=token)
        assert reply.status == 400, (path, reply.body)
        assert takes in reply.json()["issue"][0]["diagnostics"], (path, reply.body)
        assert "bogus" in reply.json()["issue"][0]["diagnostics"], (path, reply.body)


def test_the_checker_finds_what_breaks_a_profile() -> None:
    checker = ConformanceChecker.of(all_definitions(Settings()), PROJECT_CODE_SYSTEMS)
    consent: dict[str, Any] = {
        "resourceType": "Consent",
        "id": "c1",
        "meta": {"profile": [profile_url("Consent")]},
        "extension": [{"url": CONSENT_CIRCUMSTANCE.url, "valueCode": "to-barnevern"}],
        "category": [{"coding": [{"system": CONSENT_PURPOSE_SYSTEM, "code": "helsehjelp"}]}],
        "provision": {"class": [{"system": DATA_CATEGORY_SYSTEM, "code": "journal"}]},
    }
    assert checker.violations(consent) == []
    assert checker.violations({"resourceType": "Bundle", "entry": [{"resource": consent}]}) == []
    broken = json.loads(json.dumps(consent))
    broken["meta"] = {}
    broken["extension"] = [
        {"url": CONSENT_CIRCUMSTANCE.url, "valueString": "to-barnevern"},
        {"url": "https://fhir.barnebro.no/StructureDefinition/made-up", "valueString": "x"},
    ]
    broken["provision"]["class"] = [
        {"system": DATA_CATEGORY_SYSTEM, "code": "no-such-category"},
        {"system": CONSENT_PURPOSE_SYSTEM, "code": "helsehjelp"},
    ]
    found = checker.violations(broken)
    assert len(found) == 5, found
    assert any("meta.profile" in v for v in found)
    assert any("no-such-category" in v for v in found)
    assert any("made-up has no declaration" in v for v in found)
    assert any("valueString" in v for v in found)
    assert any("bound to" in v for v in found)
    organization = {
        "resourceType": "Organization",
        "meta": {"profile": [profile_url("Organization")]},
    }
    assert checker.violations(organization) == [
        "Organization/None: type is required by its profile"
    ]
    task = {
        "resourceType": "Task",
        "id": "t1",
        "meta": {"profile": [profile_url("Task")]},
        "intent": "plan",
        "businessStatus": {"coding": [{"system": STEP_SYSTEM, "code": "sendt"}]},
        **{path: {"reference": "x"} for path in ("focus", "for", "owner", "requester")},
        "authoredOn": "2026-01-01",
        "code": {"text": "fulfill"},
    }
    assert checker.violations(task) == ["Task/t1: intent is fixed to 'order', not 'plan'"]
    loinc = {"system": "http://loinc.org", "code": "11488-4"}
    document = {
        "resourceType": "DocumentReference",
        "id": "d1",
        "meta": {"profile": [profile_url("DocumentReference")]},
        "type": {"coding": [loinc, {"system": ATTACHMENT_SYSTEM, "code": "annet"}]},
    }
    assert checker.violations(document) == []  # a required binding: one coding from it
    document["type"] = {"coding": [loinc]}
    assert checker.violations(document) == [
        f"DocumentReference/d1: type is bound to {ATTACHMENT_SYSTEM}, not {document['type']}"
    ]


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_every_declared_rule_is_enforced_by_the_api(careplans: CarePlanWorld) -> None:
    """Each element a profile requires or fixes, taken out of (or changed in) a write the
    server otherwise accepts, gets the write refused with a 4xx, or (an element the server
    keeps, such as a referral Task's) kept as it was: the profiles declare nothing the
    server does not hold to."""
    world = careplans.world
    child = await world.child()
    await world.start_care(child, KOMMUNE)
    referral = await world.submit(child)
    task, _ = await world.task(referral)

    async def update_task(body: dict[str, Any]) -> Reply:
        _, etag = await world.task(referral)  # the current version: a kept write moves it on
        path = f"Task/{task['id']}"
        return await world.fhir("PUT", path, body, by=BUP, headers={"If-Match": etag})

    request = referral_bundle(child, by=GP, attachments=())["entry"][-1]["resource"]
    writes: dict[str, tuple[dict[str, Any], Callable[[dict[str, Any]], Awaitable[Reply]]]] = {
        "ServiceRequest": (request, lambda body: world.fhir("POST", "ServiceRequest", body, by=GP)),
        "DocumentReference": (
            attachment(child, "annet"),
            lambda body: world.fhir("POST", "DocumentReference", body, by=GP),
        ),
        "CarePlan": (plan(child, "kriseplan"), lambda body: careplans.create(body, by=KOMMUNE)),
        "Task": (task, update_task),
    }
    profiles = {d.resource_type: d.profile for d in all_definitions(Settings())}
    for kind, (valid, write) in writes.items():
        rules = profiles[kind]
        broken = [(path, _without(valid, path)) for path in rules.required]
        broken += [(path, {**valid, path: "plan"}) for path, _ in rules.fixed]
        broken += [
            (path, {**valid, path: _unknown_code(valid[path], system)})
            for path, system in rules.bindings
        ]
        assert broken, kind
        for path, body in broken:
            reply = await write(body)
            if reply.status in (200, 201):
                assert reply.json()[path] == valid[path], (kind, path, reply.body)
            else:
                assert 400 <= reply.status < 500 and reply.status != 412, (kind, path, reply.body)
        accepted = await write(valid)
        assert accepted.status in (200, 201), (kind, accepted.body)


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_care_team_role_must_be_a_code_of_care_role(careplans: CarePlanWorld) -> None:
    """A role from the care-role system that the CodeSystem does not hold is refused, so
    no answer carries a code of a project system that its CodeSystem does not define."""
    world = careplans.world
    child = await world.child()
    await world.start_care(child, KOMMUNE)
    made_up = await careplans.create(team(child, member(KOMMUNE, "deltaker")), by=KOMMUNE)
    assert made_up.status == 422, made_up.body
    assert "deltaker" in made_up.json()["issue"][0]["diagnostics"]
    real = await careplans.create(team(child, member(KOMMUNE, "behandler")), by=KOMMUNE)
    assert real.status == 201, real.body


def _unknown_code(value: Any, system: str) -> Any:
    """`value` (a CodeableConcept, or a list of them) with a code its system does not hold."""
    concept = {"coding": [{"system": system, "code": "no-such-code"}]}
    return [concept] if isinstance(value, list) else concept


def _without(resource: dict[str, Any], path: str) -> dict[str, Any]:
    return {key: value for key, value in resource.items() if key != path}


async def test_conformance_resources_are_served_and_found_by_url(stack: Stack) -> None:
    wanted = {(r["resourceType"], r["url"]): r for r in resources()}
    samples = [
        ("StructureDefinition", profile_url("Patient")),
        ("StructureDefinition", CONSENT_CIRCUMSTANCE.url),
        ("ValueSet", "https://fhir.barnebro.no/ValueSet/consent-purpose"),
        ("SearchParameter", "https://fhir.barnebro.no/SearchParameter/Consent-purpose"),
        ("OperationDefinition", f"{OPERATION_BASE}start-care"),
    ]
    for kind, url in samples:
        reply = await stack.call("GET", f"{kind}?url={quote(url, safe='')}")
        assert reply.status == 200, reply.body
        entries = reply.json()["entry"]
        assert len(entries) == 1
        served = entries[0]["resource"]
        assert {k: v for k, v in served.items() if k != "meta"} == wanted[(kind, url)]
        assert served["meta"]["profile"] == [profile_url(kind)]
        read = await stack.call("GET", f"{kind}/{served['id']}")
        assert read.status == 200 and read.json()["url"] == url
    by_type = await stack.call("GET", "SearchParameter?base=Patient&code=identifier")
    assert [e["resource"]["id"] for e in by_type.json()["entry"]] == ["Patient-identifier"]
    extensions = await stack.call("GET", "StructureDefinition?type=Extension&_count=100")
    assert len(extensions.json()["entry"]) == len(EXTENSIONS)
    write = await stack.call("POST", "ValueSet", wanted[samples[2]])
    assert write.status == 405


async def test_metadata_references_the_profiles_parameters_and_operations(stack: Stack) -> None:
    statement = (await stack.call("GET", "metadata", authenticated=False)).json()
    resources_ = {r["type"]: r for r in statement["rest"][0]["resource"]}
    assert set(GENERATED_TYPES) <= set(resources_)
    patient = resources_["Patient"]
    assert patient["profile"] == profile_url("Patient")
    assert patient["supportedProfile"] == [profile_url("Patient")]
    served = {(r["resourceType"], r["url"]) for r in resources()}
    for entry in resources_.values():
        if entry["type"] == "Provenance":
            continue  # derived at the edge, not stored
        assert ("StructureDefinition", entry["profile"]) in served
        for param in entry["searchParam"]:
            definition = param["definition"]
            assert definition.startswith("http://hl7.org/fhir/SearchParameter/Resource-") or (
                ("SearchParameter", definition) in served
            ), definition
        for operation in entry["operation"]:
            if operation["definition"].startswith(OPERATION_BASE):
                assert ("OperationDefinition", operation["definition"]) in served
    patient_ops = {o["name"]: o["definition"] for o in patient["operation"]}
    assert patient_ops["start-care"] == f"{OPERATION_BASE}start-care"


async def test_stored_resources_name_their_profile(stack: Stack) -> None:
    organization = await stack.call("GET", "Organization?_count=1")
    found = organization.json()["entry"][0]["resource"]
    assert found["meta"]["profile"] == [profile_url("Organization")]


def test_the_package_export_writes_a_fhir_package(tmp_path: Path, capsys: Any) -> None:
    main(["package", "export", "--out", str(tmp_path)])
    written = Path(capsys.readouterr().out.strip())
    assert written.parent == tmp_path and written.name.endswith(".tgz")
    with tarfile.open(written) as archive:
        files = {
            member.name: json.loads(archive.extractfile(member).read())  # type: ignore[union-attr]
            for member in archive.getmembers()
        }
    manifest = files["package/package.json"]
    assert manifest["name"] == "barnebro.fhir"
    assert manifest["fhirVersions"] == ["4.0.1"]
    assert {"hl7.fhir.r4.core", "hl7.fhir.no.basis"} <= set(manifest["dependencies"])
    assert manifest["version"]
    index = files["package/.index.json"]
    assert index["index-version"] == 1
    listed = {f"package/{row['filename']}" for row in index["files"]}
    assert listed == set(files) - {"package/package.json", "package/.index.json"}
    kinds = {row["resourceType"] for row in index["files"]}
    assert kinds == {"CodeSystem", *GENERATED_TYPES}
    for row in index["files"]:
        content = files[f"package/{row['filename']}"]
        assert (content["resourceType"], content["id"]) == (row["resourceType"], row["id"])
        validate_resource(content, content["resourceType"])
