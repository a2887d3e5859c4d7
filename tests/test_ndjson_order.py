"""Reading FHIR NDJSON and ordering it so that every resource follows those it refers to."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.operator import ndjson
from services.operator.ndjson import (
    Line,
    in_dependency_order,
    keys_in,
    read_chunks,
    references,
    rewrite,
)


def line(key: str, *refers_to: str) -> Line:
    resource_type, res_id = key.split("/")
    resource = {
        "resourceType": resource_type,
        "id": res_id,
        "extension": [{"valueReference": {"reference": r}} for r in refers_to],
    }
    return Line(key, resource)


def keys(lines: list[Line]) -> list[str]:
    return [str(x.key) for x in lines]


def test_levels_put_each_resource_after_what_it_refers_to() -> None:
    chunk = [
        line("RelatedPerson/p", "Patient/c"),
        line("Patient/c", "Organization/o", "Organization/elsewhere"),
        line("Organization/o"),
    ]
    ordered = in_dependency_order(chunk)
    assert [keys(level) for level in ordered.levels] == [
        ["Organization/o"],
        ["Patient/c"],
        ["RelatedPerson/p"],
    ]
    assert ordered.refused == []


def test_cycles_and_self_references_are_refused_and_the_rest_is_ordered() -> None:
    ordered = in_dependency_order(
        [
            line("Organization/a", "Organization/b"),
            line("Organization/b", "Organization/a"),
            line("Organization/self", "Organization/self"),
            line("Organization/under", "Organization/self"),
            line("Patient/c"),
        ]
    )
    # what refers to the self-referring one is left to the importer, which names it
    assert [keys(level) for level in ordered.levels] == [["Organization/under", "Patient/c"]]
    assert [(x.key, reason.split(",")[0]) for x, reason in ordered.refused] == [
        ("Organization/self", "it refers to itself"),
        ("Organization/a", "its references lead into a cycle among the import's resources"),
        ("Organization/b", "its references lead into a cycle among the import's resources"),
    ]


def test_only_relative_references_are_found_and_rewritten() -> None:
    resource = {
        "subject": {"reference": "Patient/1/_history/3"},
        "performer": [{"reference": "https://old.example/fhir/Organization/2"}],
        "owner": {"reference": "Organization/2"},
        "contained": [{"reference": "#inner"}],
        "basedOn": [{"reference": "urn:uuid:9"}],
        "note": [{"text": "Patient/1"}],
    }
    assert references(resource) == {"Patient/1", "Organization/2"}
    rewritten = rewrite(resource, {"Patient/1": "Patient/a", "Organization/2": "Organization/b"})
    assert rewritten == {
        "subject": {"reference": "Patient/a"},
        "performer": [{"reference": "https://old.example/fhir/Organization/2"}],
        "owner": {"reference": "Organization/b"},
        "contained": [{"reference": "#inner"}],
        "basedOn": [{"reference": "urn:uuid:9"}],
        "note": [{"text": "Patient/1"}],
    }


def test_lines_are_read_in_chunks_and_each_bad_line_says_why(tmp_path: Path) -> None:
    path = tmp_path / "mixed.ndjson"
    path.write_bytes(
        b'{"resourceType": "Patient", "id": "a"}\n\n[1]\n{"id": "b"}\n'
        b'{"resourceType": "Patient", "id": "has space"}\n{broken\n'
        b'{"resourceType": "Patient", "id": 7}\n{"resourceType": "Patient"}\n'
    )
    chunks = list(read_chunks(path, 2, file_index=3))
    assert [len(chunk) for chunk in chunks] == [2, 2, 2, 1]
    lines = [x for chunk in chunks for x in chunk]
    assert [(x.where, x.position, x.problem.split(" (")[0]) for x in lines] == [
        ("mixed.ndjson:1", (3, 1), ""),
        ("mixed.ndjson:3", (3, 3), "not a JSON object"),
        ("mixed.ndjson:4", (3, 4), "no resourceType"),
        ("mixed.ndjson:5", (3, 5), 'its id "has space" is not a FHIR id'),
        ("mixed.ndjson:6", (3, 6), "not JSON"),
        ("mixed.ndjson:7", (3, 7), "its id 7 is not a FHIR id"),
        ("mixed.ndjson:8", (3, 8), ""),
    ]
    assert [x.key for x in lines] == ["Patient/a", None, None, None, None, None, None]
    assert keys_in([path]) == {"Patient/a"}


def test_a_line_longer_than_a_request_takes_is_skipped_unread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ndjson, "MAX_LINE_BYTES", 64)
    path = tmp_path / "long.ndjson"
    path.write_bytes(
        b'{"resourceType": "Patient", "id": "' + b"x" * 500 + b'"}\n'
        b'{"resourceType": "Patient", "id": "after"}\n'
    )
    lines = [x for chunk in read_chunks(path, 10) for x in chunk]
    assert [(x.where, x.problem.split(",")[0]) for x in lines] == [
        ("long.ndjson:1", "longer than 64 bytes"),
        ("long.ndjson:2", ""),
    ]
    assert lines[1].key == "Patient/after"
