"""Reads by id made together share one statement, and each is answered as a read of its
own would be: its own resource, a missing one as missing, a deleted one as gone, and
never a version older than one committed before the read was asked for."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from shared.fhir.service import FhirService
from tests.support import BACKENDS, store_database
from tests.test_engine import BasicDefinition, basic, call

pytestmark = pytest.mark.services


@pytest.fixture(params=BACKENDS)
async def service(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[FhirService]:
    async with store_database(request.param, tmp_path, "curreads") as db:
        yield FhirService("unit", [BasicDefinition()], db, prefix="unit")


async def _text(service: FhirService, res_id: str) -> tuple[int, str | None]:
    reply = await call(service, "read", id=res_id)
    body = orjson.loads(reply.body)
    return reply.status, body["code"]["text"] if reply.status == 200 else None


async def test_reads_made_together_share_statements_and_each_gets_its_own(
    service: FhirService,
) -> None:
    for n in range(20):
        assert (await call(service, "update", basic(f"r{n}", id=f"b{n}"), id=f"b{n}")).status in (
            200,
            201,
        )
    assert (await call(service, "delete", id="b19")).status in (200, 204)
    asked = [f"b{n}" for n in range(20)] + ["b3", "b3", "nobody", "b7"]
    before = service.current.runs

    answers = await asyncio.gather(*(_text(service, res_id) for res_id in asked))

    expected = [(200, f"r{n}") for n in range(19)] + [(410, None)]
    expected += [(200, "r3"), (200, "r3"), (404, None), (200, "r7")]
    assert answers == expected
    statements = service.current.runs - before
    assert 1 <= statements < len(asked) // 2, f"{statements} statements for {len(asked)} reads"


async def test_a_read_asked_after_a_commit_sees_it_though_gathered_with_earlier_ones(
    service: FhirService,
) -> None:
    assert (await call(service, "update", basic("old", id="x"), id="x")).status == 201
    first = [asyncio.create_task(_text(service, "x")) for _ in range(5)]
    assert (await call(service, "update", basic("new", id="x"), id="x")).status == 200
    after = await _text(service, "x")
    assert after == (200, "new")
    assert {answer[1] for answer in await asyncio.gather(*first)} <= {"old", "new"}
