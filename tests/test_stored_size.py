"""A version too large to be answered is refused before anything is written: a create, an
update and a transaction's entry that would store more than the service's body limit (what
the server adds counted) answer 413 and leave the stored data as it was."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from shared.fhir.service import FhirService
from tests.support import BACKENDS, store_database
from tests.test_engine import BasicDefinition, basic, call

pytestmark = pytest.mark.services

LIMIT = 4_000


@pytest.fixture(params=BACKENDS)
async def service(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[FhirService]:
    async with store_database(request.param, tmp_path, "storedsize") as db:
        yield FhirService("unit", [BasicDefinition()], db, prefix="unit", body_limit=LIMIT)


def sized(code: str, note_bytes: int, **extra: Any) -> dict[str, Any]:
    return basic(code, note="n" * note_bytes, **extra)


async def stored_codes(service: FhirService) -> list[str]:
    reply = await call(service, "search", params=[])
    assert reply.status == 200, reply.body
    return sorted(e["resource"]["code"]["text"] for e in orjson.loads(reply.body).get("entry", []))


async def test_a_create_too_large_as_stored_is_refused_and_nothing_is_written(
    service: FhirService,
) -> None:
    overhead = len(orjson.dumps(sized("big", 1))) - 1
    sent = sized("big", LIMIT - overhead - 20)
    assert len(orjson.dumps(sent)) == LIMIT - 20, "the body as sent is within the limit"
    refused = await call(service, "create", sent)
    assert refused.status == 413, refused.body
    assert b"BARNEBRO_MAX_BODY_BYTES" in refused.body
    assert await stored_codes(service) == []

    fits = await call(service, "create", sized("small", LIMIT // 2))
    assert fits.status == 201, fits.body
    assert await stored_codes(service) == ["small"]


async def test_an_update_too_large_as_stored_leaves_the_version_before(
    service: FhirService,
) -> None:
    assert (await call(service, "update", sized("v1", 100, id="b1"), id="b1")).status == 201
    refused = await call(service, "update", sized("v2", LIMIT, id="b1"), id="b1")
    assert refused.status == 413, refused.body
    current = await call(service, "read", id="b1")
    assert current.status == 200
    assert orjson.loads(current.body)["meta"]["versionId"] == "1"
    assert orjson.loads(current.body)["code"]["text"] == "v1"
