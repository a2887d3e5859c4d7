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

from services.operator.bulk_import import NdjsonImporter, StateFile, import_files
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
    assert sorted(where for where, _ in organisations.failures) == [
        "Organization.ndjson:3",
        "Organization.ndjson:5",
    ]
    assert "appears more than once" in dict(organisations.failures)["Organization.ndjson:5"]
    ids = StateFile(state).ids
    [unit] = await matches(stack, "Organization?identifier=974760746", operator)
    assert unit["partOf"]["reference"] == ids["Organization/src-bup"]

    children = await run(stack, [files["children"]], stack.token(), state)
    assert (children.created, children.matched) == (2, 0)
    [(where, reason)] = children.failures
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
    state = tmp_path / "state.ndjson"
    await stack.admit(CLIENT_ORGNR, "bup")
    await run(stack, [files["organisations"]], stack.operator_token(), state)
    first = await run(stack, [files["children"]], stack.token(), state)
    assert first.created == 2

    again = await run(stack, [files["children"]], stack.token(), state)
    assert (again.created, again.matched, again.skipped) == (0, 0, 2)
    forgotten = await run(stack, [files["children"]], stack.token(), tmp_path / "other.ndjson")
    assert (forgotten.created, forgotten.matched) == (0, 2)  # matched by fødselsnummer
    found = await matches(stack, f"Patient?identifier={FNR}", stack.token())
    assert len(found) == 1
    assert (
        StateFile(tmp_path / "other.ndjson").ids["Patient/src-child"] == f"Patient/{found[0]['id']}"
    )


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
    assert [where for where, _ in refused.failures] == [
        "RelatedPerson.ndjson:1",
        "RelatedPerson.ndjson:2",
    ]
    assert all("HTTP 403" in reason for _, reason in refused.failures)
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
    reasons = dict(report.failures)
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
    assert "0 created, 0 already there, 0 skipped (in the state file), 2 failed" in printed
    missing = await import_files(
        stack.base, stack.token(), [tmp_path / "nowhere.ndjson"], batch=10, parallel=2, state=None
    )
    assert missing == 2
