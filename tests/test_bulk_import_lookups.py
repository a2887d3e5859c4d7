"""What `barnebro import` checks of a line costs the line's own references, however many
resources the import (or its state file) already holds: the checks look ids up, they never
walk them. Walking them made an import slow down with every resource it had written."""

from __future__ import annotations

from typing import Any, NoReturn

from services.operator.bulk_import import NdjsonImporter
from services.operator.import_state import StateFile
from services.operator.ndjson import Line


class LookupsOnly(dict[str, str]):
    """The ids written so far, refusing to be walked."""

    def _walked(self, *_: Any) -> NoReturn:
        raise AssertionError("the state's ids were walked")

    keys = values = items = __iter__ = _walked


def importer_with(written: dict[str, str], in_import: set[str]) -> NdjsonImporter:
    state = StateFile(None)
    state.ids = LookupsOnly(written)
    importer = NdjsonImporter(None, "http://127.0.0.1:9/fhir", "token", state=state)  # type: ignore[arg-type]
    importer._in_import = in_import
    return importer


def line(resource: dict[str, Any]) -> Line:
    return Line("children.ndjson:1", resource)


async def test_a_line_whose_references_were_written_is_sent_without_walking_the_state() -> None:
    written = {f"Patient/{n}": f"Patient/new-{n}" for n in range(1000)}
    importer = importer_with(written, set(written))
    parent = {"resourceType": "RelatedPerson", "id": "p", "patient": {"reference": "Patient/7"}}
    assert await importer._sendable(line(parent))
    assert importer.report.failures == []


async def test_a_reference_further_on_in_the_import_is_refused_without_walking_it() -> None:
    importer = importer_with({"Patient/1": "Patient/new-1"}, {"Patient/1", "Patient/2"})
    parent = {"resourceType": "RelatedPerson", "id": "p", "patient": {"reference": "Patient/2"}}
    assert not await importer._sendable(line(parent))
    [(_, _, refusal)] = importer.report.failures
    assert "Patient/2, which comes later in the import" in refusal
