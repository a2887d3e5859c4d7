"""A unit of work asks the directory each question once (`one_answer_per_question`): a
referral with three attachments names its child four times, and each time cost a request
to the directory, a search there and an audit record. Outside a unit of work, and in the
next one, every question is asked afresh; an answer that failed is never used again."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from shared.directory_answers import one_answer_per_question
from shared.directory_client import DirectoryClient, service_caller
from shared.fhir.errors import FhirError
from shared.fhir.service import FhirService
from shared.identifiers import FNR_SYSTEM
from shared.store.database import SqliteDatabase
from shared.store.schema import create_schema
from shared.transport.wire import Caller, FhirRequest, FhirResponse

FNR = "13091596547"
GP = Caller(credential="organisation", orgnr="974589095", org_kind="fastlege")
BUP = Caller(credential="organisation", orgnr="974760673", org_kind="bup")


class CountingDirectory:
    """Answers every search with the one child, counting the requests sent."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.sent: list[FhirRequest] = []

    async def send(self, subject: str, request: FhirRequest, body: bytes) -> FhirResponse:
        self.sent.append(request)
        child = {"resourceType": "Patient", "id": "child-1",
                 "identifier": [{"system": FNR_SYSTEM, "value": FNR}]}  # fmt: skip
        bundle = {"resourceType": "Bundle", "type": "searchset",
                  "entry": [{"resource": child, "search": {"mode": "match"}}]}  # fmt: skip
        return FhirResponse(status=self.status, body=orjson.dumps(bundle))


def client(directory: CountingDirectory) -> DirectoryClient:
    return DirectoryClient(
        directory, "t", "http://127.0.0.1/fhir", service_caller("referral", "Patient")
    )


async def test_outside_a_unit_of_work_every_question_is_sent() -> None:
    directory = CountingDirectory()
    reads = client(directory)
    for _ in range(2):
        assert (await reads.patient_by_identifier(FNR_SYSTEM, FNR, GP) or {})["id"] == "child-1"
    assert len(directory.sent) == 2


async def test_within_one_the_same_question_is_sent_once_and_each_caller_gets_a_copy() -> None:
    directory = CountingDirectory()
    reads = client(directory)
    with one_answer_per_question():
        first = await reads.patient_by_identifier(FNR_SYSTEM, FNR, GP)
        assert first is not None
        first["id"] = "changed by its caller"
        again = await reads.patient_by_identifier(FNR_SYSTEM, FNR, GP)
        assert again is not None and again["id"] == "child-1"
        assert len(directory.sent) == 1
        await reads.patient_by_identifier(FNR_SYSTEM, FNR, BUP)
        await reads.patient_by_identifier(FNR_SYSTEM, "04810883885", GP)
        assert len(directory.sent) == 3, "another caller, another child: other questions"
    await reads.patient_by_identifier(FNR_SYSTEM, FNR, GP)
    assert len(directory.sent) == 4, "after the block the question is asked afresh"


async def test_a_failed_answer_is_not_used_again() -> None:
    directory = CountingDirectory(status=503)
    reads = client(directory)
    with one_answer_per_question():
        for _ in range(2):
            with pytest.raises(FhirError) as refused:  # no answer is not "not registered"
                await reads.patient_by_identifier(FNR_SYSTEM, FNR, GP)
            assert refused.value.status == 503
    assert len(directory.sent) == 2


async def test_an_operation_is_sent_every_time() -> None:
    directory = CountingDirectory()
    reads = client(directory)
    with one_answer_per_question():
        for _ in range(2):
            await reads.ask(reads.request(interaction="operation", operation="relate"))
    assert len(directory.sent) == 2


@pytest.mark.parametrize("units", [1, 2])
async def test_a_unit_of_work_is_one_block(tmp_path: Path, units: int) -> None:
    directory = CountingDirectory()
    reads = client(directory)
    db = await SqliteDatabase.connect(tmp_path / "t.sqlite")
    try:
        await create_schema(db)
        service = FhirService("t", [], db, prefix="t")
        request = FhirRequest(interaction="transaction", base_url="http://127.0.0.1/fhir")
        for _ in range(units):
            async with service.unit_of_work(request):
                for _ in range(3):
                    await reads.patient_by_identifier(FNR_SYSTEM, FNR, GP)
    finally:
        await db.close()
    assert len(directory.sent) == units


async def test_a_task_started_in_a_unit_of_work_asks_afresh_once_it_has_ended() -> None:
    directory = CountingDirectory()
    reads = client(directory)
    go_on = asyncio.Event()

    async def later() -> None:
        await reads.patient_by_identifier(FNR_SYSTEM, FNR, GP)
        await go_on.wait()
        await reads.patient_by_identifier(FNR_SYSTEM, FNR, GP)
        await reads.patient_by_identifier(FNR_SYSTEM, FNR, GP)

    with one_answer_per_question():
        await reads.patient_by_identifier(FNR_SYSTEM, FNR, GP)
        task = asyncio.create_task(later())
        await asyncio.sleep(0.01)
        assert len(directory.sent) == 1, "within the block the task shares its answers"
    go_on.set()
    await task
    assert len(directory.sent) == 3, "after the block, each question is sent"


async def test_no_answer_is_never_read_as_not_there_or_as_no_relation() -> None:
    """A directory that could not answer (busy, its database down) makes the asker answer
    503, never 404 for a child that is there or "no relation" for one that has one."""
    reads = client(CountingDirectory(status=503))
    for asking in (reads.read("Patient", "p1"), reads.relation(GP, "p1")):
        with pytest.raises(FhirError) as refused:
            await asking
        assert refused.value.status == 503
