"""Reading FHIR NDJSON and ordering it so that every resource follows those it refers to."""

from __future__ import annotations

from pathlib import Path

from services.operator.ndjson import Line, in_dependency_order, read_chunks, references, rewrite


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
        line("Organization/self", "Organization/self"),
    ]
    ordered = in_dependency_order(chunk)
    assert [keys(level) for level in ordered.levels] == [
        ["Organization/o", "Organization/self"],
        ["Patient/c"],
        ["RelatedPerson/p"],
    ]
    assert ordered.cyclic == []


def test_a_cycle_is_set_aside_and_the_rest_is_ordered() -> None:
    ordered = in_dependency_order(
        [
            line("Organization/a", "Organization/b"),
            line("Organization/b", "Organization/a"),
            line("Patient/c"),
        ]
    )
    assert [keys(level) for level in ordered.levels] == [["Patient/c"]]
    assert keys(ordered.cyclic) == ["Organization/a", "Organization/b"]


def test_references_in_every_form_are_found_and_rewritten() -> None:
    resource = {
        "subject": {"reference": "Patient/1/_history/3"},
        "performer": [{"reference": "https://old.example/fhir/Organization/2"}],
        "contained": [{"reference": "#inner"}],
        "basedOn": [{"reference": "urn:uuid:9"}],
        "note": [{"text": "Patient/1"}],
    }
    assert references(resource) == {"Patient/1", "Organization/2"}
    rewritten = rewrite(resource, {"Patient/1": "Patient/a", "Organization/2": "Organization/b"})
    assert rewritten == {
        "subject": {"reference": "Patient/a"},
        "performer": [{"reference": "Organization/b"}],
        "contained": [{"reference": "#inner"}],
        "basedOn": [{"reference": "urn:uuid:9"}],
        "note": [{"text": "Patient/1"}],
    }


def test_lines_are_read_in_chunks_and_each_bad_line_says_why(tmp_path: Path) -> None:
    path = tmp_path / "mixed.ndjson"
    path.write_bytes(
        b'{"resourceType": "Patient", "id": "a"}\n\n[1]\n{"id": "b"}\n'
        b'{"resourceType": "Patient", "id": "has space"}\n{broken\n'
    )
    chunks = list(read_chunks(path, 2))
    assert [len(chunk) for chunk in chunks] == [2, 2, 1]
    lines = [x for chunk in chunks for x in chunk]
    assert [(x.where, x.problem.split(":")[0]) for x in lines] == [
        ("mixed.ndjson:1", ""),
        ("mixed.ndjson:3", "not a JSON object"),
        ("mixed.ndjson:4", "no resourceType"),
        ("mixed.ndjson:5", ""),
        ("mixed.ndjson:6", "not JSON"),
    ]
    assert [x.key for x in lines] == ["Patient/a", None, None, None, None]
