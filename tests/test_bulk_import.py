"""`barnebro import`: FHIR NDJSON brought in through the API as its caller, against the
gateway and directory on real NATS and both database backends.

Each file is imported with the token of the party entitled to write what it holds, as a
real migration would: organisations by the operator, children by a health organisation,
parental responsibility by the population register. References between the files follow
the state file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from services.operator.bulk_import import NdjsonImporter
from services.operator.import_command import import_files
from services.operator.import_state import StateFile
from tests.support import Stack
from tests.test_directory_api import (
    FNR,
    FNR_2,
    INVALID_FNR,
    ORGNR_BUP,
    ORGNR_GP,
    organization,
    patient,
    related_person,
)

CLIENT_ORGNR = "974760673"


def ndjson(path: Path, *lines: Any) -> Path:
    path.write_bytes(
        b"".join(
            (line if isinstance(line, bytes) else orjson.dumps(line)) + b"\n" for line in lines
        )
    )
    return path


def with_id(resource: dict[str, Any], res_id: str, **fields: Any) -> dict[str, Any]:
    return {**resource, "id": res_id, **fields}


async def run(stack: Stack, files: list[Path], token: str, state: Path | None) -> Any:
    importer = NdjsonImporter(stack.session, stack.base, token, batch=2, state=StateFile(state))
    return await importer.run(files)


async def matches(stack: Stack, query: str, token: str) -> list[dict[str, Any]]:
    reply = await stack.call("GET", query, token=token)
    assert reply.status == 200, reply.body
    return [e["resource"] for e in reply.json().get("entry", []) if e["search"]["mode"] == "match"]


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    department = organization("974760746", "bup", "BUP poliklinikk")
    return {
        "organisations": ndjson(
            tmp_path / "Organization.ndjson",
            # the unit comes before the organisation it is part of
            with_id(department, "src-unit", partOf={"reference": "Organization/src-bup"}),
            with_id(organization(ORGNR_BUP, "bup", "BUP Oslo"), "src-bup"),
            b"{not json",
            with_id(organization(ORGNR_GP, "fastlege", "Legekontoret"), "src-gp"),
            with_id(organization(ORGNR_GP, "fastlege", "Legekontoret igjen"), "src-gp"),
        ),
        "children": ndjson(
            tmp_path / "Patient.ndjson",
            with_id(
                patient(FNR),
                "src-child",
                managingOrganization={"reference": "Organization/src-bup"},
            ),
            with_id(patient(INVALID_FNR), "src-invalid"),
            with_id(patient(FNR_2, family="Hansen"), "src-child-2"),
        ),
        "parents": ndjson(
            tmp_path / "RelatedPerson.ndjson",
            with_id(related_person("src-child"), "src-mother"),
            with_id(related_person("src-child-2", "mor"), "src-father"),
        ),
    }


async def test_an_import_writes_each_file_as_its_caller_in_dependency_order(
    stack: Stack, files: dict[str, Path], tmp_path: Path
) -> None:
    state = tmp_path / "state.ndjson"
    await stack.admit(CLIENT_ORGNR, "bup")
    operator = stack.operator_token()

    organisations = await run(stack, [files["organisations"]], operator, state)
    assert organisations.created == 3
    assert [where for _, where, _ in organisations.failures] == [
        "Organization.ndjson:3",
        "Organization.ndjson:5",
    ]
    assert "appears more than once" in organisations.failures[1][2]
    ids = StateFile(state).ids
    [unit] = await matches(stack, "Organization?identifier=974760746", operator)
    assert unit["partOf"]["reference"] == ids["Organization/src-bup"]

    children = await run(stack, [files["children"]], stack.token(), state)
    assert children.created == 2
    [(_, where, reason)] = children.failures
    assert where == "Patient.ndjson:2" and reason.startswith("HTTP 422: Invalid identifier")
    child = (await matches(stack, f"Patient?identifier={FNR}", stack.token()))[0]
    assert child["managingOrganization"]["reference"] == ids["Organization/src-bup"]

    parents = await run(stack, [files["parents"]], stack.register_token(), state)
    assert (parents.created, parents.failures) == (2, [])
    ids = StateFile(state).ids
    held = await matches(
        stack, f"RelatedPerson?patient={ids['Patient/src-child']}", stack.register_token()
    )
    assert [p["id"] for p in held] == [ids["RelatedPerson/src-mother"].split("/")[1]]


async def test_importing_again_duplicates_nothing(
    stack: Stack, files: dict[str, Path], tmp_path: Path
) -> None:
    """With the state file a second run skips what the first wrote; without it, the
    server's business keys refuse a second child with the same fødselsnummer."""
    state = tmp_path / "state.ndjson"
    await stack.admit(CLIENT_ORGNR, "bup")
    await run(stack, [files["organisations"]], stack.operator_token(), state)
    first = await run(stack, [files["children"]], stack.token(), state)
    assert first.created == 2

    again = await run(stack, [files["children"]], stack.token(), state)
    assert (again.created, again.skipped, len(again.failures)) == (0, 2, 1)
    forgotten = await run(stack, [files["children"]], stack.token(), tmp_path / "other.ndjson")
    assert forgotten.created == 0
    assert [
        (where, reason.split(":")[0][:40]) for _, where, reason in sorted(forgotten.failures)
    ] == [
        ("Patient.ndjson:1", "it refers to Organization/src-bup, which"),
        ("Patient.ndjson:2", "HTTP 422"),
        ("Patient.ndjson:3", "HTTP 409"),
    ]
    assert len(await matches(stack, f"Patient?identifier={FNR}", stack.token())) == 1


async def test_nothing_is_matched_by_an_identifier_two_resources_share(
    stack: Stack, tmp_path: Path
) -> None:
    """Twins sharing a case number are two children, and one parent of two children holds
    responsibility for each."""
    await stack.admit(CLIENT_ORGNR, "bup")
    case = {"system": "urn:epj:local", "value": "1"}
    twins = ndjson(
        tmp_path / "Patient.ndjson",
        *(
            with_id(patient(fnr), f"src-{n}", identifier=[case, *patient(fnr)["identifier"]])
            for n, fnr in enumerate((FNR, FNR_2))
        ),
    )
    state = tmp_path / "state.ndjson"
    assert (await run(stack, [twins], stack.token(), state)).created == 2
    mother = {"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": "15076500565"}
    parents = ndjson(
        tmp_path / "RelatedPerson.ndjson",
        *(
            with_id(related_person(f"src-{n}"), f"mother-{n}", identifier=[mother])
            for n in range(2)
        ),
    )
    assert (await run(stack, [parents], stack.register_token(), state)).created == 2
    ids = StateFile(state).ids
    assert ids["Patient/src-0"] != ids["Patient/src-1"]
    for n in range(2):
        held = await matches(
            stack, f"RelatedPerson?patient={ids[f'Patient/src-{n}']}", stack.register_token()
        )
        assert [p["id"] for p in held] == [ids[f"RelatedPerson/mother-{n}"].split("/")[1]]


async def test_an_import_states_only_what_its_caller_may_state(
    stack: Stack, files: dict[str, Path], tmp_path: Path
) -> None:
    """A health organisation cannot import parental responsibility, and a refused batch
    writes nothing: every resource is reported, none is created."""
    state = tmp_path / "state.ndjson"
    await stack.admit(CLIENT_ORGNR, "bup")
    await run(stack, [files["organisations"]], stack.operator_token(), state)
    await run(stack, [files["children"]], stack.token(), state)

    refused = await run(stack, [files["parents"]], stack.token(), state)
    assert refused.created == 0
    assert [where for _, where, _ in refused.failures] == [
        "RelatedPerson.ndjson:1",
        "RelatedPerson.ndjson:2",
    ]
    assert all("HTTP 403" in reason for _, _, reason in refused.failures)
    ids = StateFile(state).ids
    assert "RelatedPerson/src-mother" not in ids
    child = ids["Patient/src-child"]
    assert await matches(stack, f"RelatedPerson?patient={child}", stack.register_token()) == []


async def test_a_resource_referring_to_a_refused_one_is_not_sent(
    stack: Stack, tmp_path: Path
) -> None:
    await stack.admit(CLIENT_ORGNR, "bup")
    mixed = ndjson(
        tmp_path / "mixed.ndjson",
        with_id(related_person("src-invalid"), "src-parent"),
        with_id(patient(INVALID_FNR), "src-invalid"),
    )
    report = await run(stack, [mixed], stack.token(), None)
    reasons = {where: reason for _, where, reason in report.failures}
    assert "check digit" in reasons["mixed.ndjson:2"]
    assert reasons["mixed.ndjson:1"] == "it refers to Patient/src-invalid, which was not imported"


async def test_the_command_reports_failures_and_exits_1(
    stack: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await stack.admit(CLIENT_ORGNR, "bup")
    bad = ndjson(tmp_path / "Patient.ndjson", with_id(patient(INVALID_FNR), "x"), b"[1]")
    status = await import_files(stack.base, stack.token(), [bad], batch=10, parallel=2, state=None)
    printed = capsys.readouterr().out
    assert status == 1
    assert "Patient.ndjson:2: failed (not a JSON object)" in printed
    assert "0 created, 0 skipped (in the state file), 2 failed" in printed
    missing = await import_files(
        stack.base, stack.token(), [tmp_path / "nowhere.ndjson"], batch=10, parallel=2, state=None
    )
    assert missing == 2


async def test_a_forward_reference_is_refused_not_sent_unchanged(
    stack: Stack, files: dict[str, Path], tmp_path: Path
) -> None:
    await stack.admit(CLIENT_ORGNR, "bup")
    state = tmp_path / "state.ndjson"
    await run(stack, [files["organisations"]], stack.operator_token(), state)
    # the parents' file first: what it refers to comes later
    report = await run(stack, [files["parents"], files["children"]], stack.register_token(), state)
    reasons = {where: reason for _, where, reason in report.failures}
    assert reasons["RelatedPerson.ndjson:1"].startswith(
        "it refers to Patient/src-child, which comes later in the import"
    )


async def test_a_subsetted_resource_is_refused_as_a_single_post_is(
    stack: Stack, tmp_path: Path
) -> None:
    await stack.admit(CLIENT_ORGNR, "bup")
    tag = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
           "code": "SUBSETTED"}  # fmt: skip
    cut = with_id(patient(FNR), "cut", meta={"tag": [tag], "versionId": "7"})
    report = await run(stack, [ndjson(tmp_path / "Patient.ndjson", cut)], stack.token(), None)
    assert report.created == 0
    [(_, _, reason)] = report.failures
    single = await stack.call("POST", "Patient", {**cut, "id": None} | {"meta": {"tag": [tag]}})
    assert single.status == 422 and reason.startswith("HTTP 422")


async def test_a_refused_token_or_an_unreadable_state_file_stops_the_import(
    stack: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    children = ndjson(tmp_path / "Patient.ndjson", with_id(patient(FNR), "c"))
    refused = await import_files(
        stack.base, "not-a-token", [children], batch=10, parallel=2, state=None
    )
    assert refused == 2
    assert "the server refused the token" in capsys.readouterr().err
    state = tmp_path / "state.ndjson"
    state.write_bytes(b'["Patient/a", "Patient/b"]\n["Patient/c", "Pat')
    broken = await import_files(
        stack.base, stack.token(), [children], batch=10, parallel=2, state=state
    )
    assert broken == 2
    assert "state.ndjson:2 is not a line this command wrote" in capsys.readouterr().err
