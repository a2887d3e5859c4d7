"""What `barnebro import` does when the server cannot say whether a batch was written.

A stand-in server on loopback answers every transaction with the status under test and
counts what it is sent: a batch is sent again only after an answer that says nothing was
written (503, 429), never after a 504 or no answer, which may follow a commit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from services.operator import bulk_import
from services.operator.bulk_import import NdjsonImporter
from services.operator.import_command import import_files
from services.operator.import_state import StateFile

Answer = tuple[int, bytes]


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, list[bytes], list[Answer]]]:
    """(base URL, the bodies received, the answers still to give: the last one repeats)."""
    received: list[bytes] = []
    answers: list[Answer] = []

    async def transaction(request: web.Request) -> web.Response:
        received.append(await request.read())
        status, body = answers.pop(0) if len(answers) > 1 else answers[0]
        if status == 0:  # no answer: the connection is closed
            assert request.transport is not None
            request.transport.close()
        return web.Response(status=status or 500, body=body, content_type="application/fhir+json")

    app = web.Application()
    app.router.add_post("/fhir", transaction)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/fhir", received, answers
    finally:
        await runner.cleanup()


def outcome(text: str) -> bytes:
    return orjson.dumps({"resourceType": "OperationOutcome", "issue": [{"diagnostics": text}]})


async def imported(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> NdjsonImporter:
    monkeypatch.setattr(bulk_import, "BACKOFF_SECONDS", 0.0)
    path = tmp_path / "Practitioner.ndjson"
    path.write_bytes(b'{"resourceType": "Practitioner", "id": "a"}\n')
    async with aiohttp.ClientSession() as session:
        importer = NdjsonImporter(session, url, "token")
        await importer.run([path])
    return importer


@pytest.mark.parametrize("status", [504, 502, 500, 0])
async def test_a_batch_that_may_have_been_written_is_never_sent_again(
    server: tuple[str, list[bytes], list[Answer]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    status: int,
) -> None:
    url, received, answers = server
    answers.append((status, outcome("The service did not answer within 10.0s")))
    importer = await imported(url, tmp_path, monkeypatch)
    assert len(received) == 1
    [(_, where, reason)] = importer.report.failures
    assert where == "Practitioner.ndjson:1"
    assert "whether the batch was written is unknown" in reason


@pytest.mark.parametrize("status", [503, 429])
async def test_a_batch_the_server_wrote_nothing_of_is_sent_again(
    server: tuple[str, list[bytes], list[Answer]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    status: int,
) -> None:
    url, received, answers = server
    created = {"resourceType": "Bundle", "type": "transaction-response", "entry": [
        {"response": {"status": "201", "location": "Practitioner/new/_history/1"}}]}  # fmt: skip
    answers += [(status, outcome("busy")), (200, orjson.dumps(created))]
    importer = await imported(url, tmp_path, monkeypatch)
    assert len(received) == 2 and received[0] == received[1]
    assert importer.report.created == 1 and importer.report.failures == []
    assert importer.state.ids == {"Practitioner/a": "Practitioner/new"}


async def test_an_interrupted_import_sends_nothing_more(
    server: tuple[str, list[bytes], list[Answer]], tmp_path: Path
) -> None:
    url, received, _ = server
    path = tmp_path / "Practitioner.ndjson"
    path.write_bytes(b'{"resourceType": "Practitioner"}\n' * 3)
    async with aiohttp.ClientSession() as session:
        importer = NdjsonImporter(session, url, "token")
        importer.stop()
        report = await importer.run([path])
    assert received == [] and report.unsent == 3
    assert "3 not sent (interrupted)" in report.summary()


async def test_an_answer_that_does_not_list_the_batch_says_nothing_certain(
    server: tuple[str, list[bytes], list[Answer]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, received, answers = server
    elsewhere = {"resourceType": "Bundle", "type": "transaction-response", "entry": [
        {"response": {"status": "201", "location": "Patient/../x y/_history/1"}}]}  # fmt: skip
    answers.append((200, orjson.dumps(elsewhere)))
    importer = await imported(url, tmp_path, monkeypatch)
    assert len(received) == 1 and importer.state.ids == {}
    [(_, _, reason)] = importer.report.failures
    assert "does not list the batch's resources" in reason


async def test_an_unusable_state_file_stops_the_import_before_anything_is_sent(
    server: tuple[str, list[bytes], list[Answer]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, received, _ = server
    path = tmp_path / "Practitioner.ndjson"
    path.write_bytes(b'{"resourceType": "Practitioner", "id": "a"}\n')
    mixed = tmp_path / "mixed.ndjson"
    mixed.write_bytes(b'["CarePlan/s1", "Goal/g1"]\n')
    held = tmp_path / "held.ndjson"
    with StateFile(held):  # another import holds it
        for state, expected in (
            (tmp_path / "missing" / "state.ndjson", "cannot use"),
            (mixed, "mixed.ndjson:1 is not a line this command wrote"),
            (held, "another import is using the state file"),
        ):
            status = await import_files(url, "t", [path], batch=1, parallel=1, state=state)
            assert status == 2 and expected in capsys.readouterr().err
    assert received == []


async def test_a_server_that_cannot_be_reached_stops_the_import(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bulk_import, "BACKOFF_SECONDS", 0.0)
    path = tmp_path / "Practitioner.ndjson"
    path.write_bytes(b'{"resourceType": "Practitioner", "id": "a"}\n')
    status = await import_files(
        "http://127.0.0.1:9/fhir", "t", [path], batch=1, parallel=1, state=None
    )
    assert status == 2
    assert "cannot reach http://127.0.0.1:9/fhir" in capsys.readouterr().err


def created(*ids: str) -> bytes:
    return orjson.dumps({"resourceType": "Bundle", "type": "transaction-response", "entry": [
        {"response": {"status": "201", "location": f"Practitioner/{i}/_history/1"}}
        for i in ids]})  # fmt: skip


async def test_what_may_have_been_written_is_not_sent_by_a_later_run(
    server: tuple[str, list[bytes], list[Answer]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, received, answers = server
    answers.append((504, outcome("The service did not answer within 10.0s")))
    monkeypatch.setattr(bulk_import, "BACKOFF_SECONDS", 0.0)
    path = tmp_path / "Practitioner.ndjson"
    path.write_bytes(b'{"resourceType": "Practitioner", "id": "a"}\n')
    state = tmp_path / "state.ndjson"
    for _ in range(2):
        with StateFile(state) as recorded:
            async with aiohttp.ClientSession() as session:
                importer = NdjsonImporter(session, url, "t", state=recorded)
                await importer.run([path])
    assert len(received) == 1, "the second run sent nothing"
    assert state.read_bytes() == b'["Practitioner/a",null]\n'
    [(_, _, reason)] = importer.report.failures
    assert reason.startswith("an earlier run may have written it")


async def test_a_busy_server_is_asked_four_times_in_all_without_narrowing(
    server: tuple[str, list[bytes], list[Answer]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, received, answers = server
    answers.append((429, outcome("slow down")))
    monkeypatch.setattr(bulk_import, "BACKOFF_SECONDS", 0.0)
    path = tmp_path / "Practitioner.ndjson"
    path.write_bytes(
        b"".join(b'{"resourceType": "Practitioner", "id": "p%d"}\n' % n for n in range(16))
    )
    async with aiohttp.ClientSession() as session:
        importer = NdjsonImporter(session, url, "t", batch=16)
        await importer.run([path])
    assert len(received) == bulk_import.RETRIES
    assert len(importer.report.failures) == 16


async def test_a_stop_sends_no_batch_that_was_waiting_for_its_turn(
    server: tuple[str, list[bytes], list[Answer]], tmp_path: Path
) -> None:
    url, received, answers = server
    answers.append((200, created("x")))
    path = tmp_path / "Practitioner.ndjson"
    path.write_bytes(
        b"".join(b'{"resourceType": "Practitioner", "id": "p%d"}\n' % n for n in range(3))
    )
    async with aiohttp.ClientSession() as session:
        importer = NdjsonImporter(session, url, "t", batch=1, parallel=1)
        original = importer._recorded

        def stop_after_first(*args: Any) -> None:
            original(*args)
            importer.stop()

        importer._recorded = stop_after_first  # type: ignore[method-assign,assignment]
        report = await importer.run([path])
    assert len(received) == 1
    assert (report.created, report.unsent) == (1, 2)


async def test_a_batch_in_flight_when_the_import_is_stopped_for_good_is_recorded_as_unknown(
    tmp_path: Path,
) -> None:
    arrived = asyncio.Event()

    async def never(request: web.Request) -> web.Response:
        arrived.set()
        await asyncio.sleep(60)
        return web.Response(status=500)

    app = web.Application()
    app.router.add_post("/fhir", never)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    path = tmp_path / "Practitioner.ndjson"
    path.write_bytes(b'{"resourceType": "Practitioner", "id": "a"}\n')
    state = tmp_path / "state.ndjson"
    try:
        with StateFile(state) as recorded:
            async with aiohttp.ClientSession() as session:
                importer = NdjsonImporter(
                    session, f"http://127.0.0.1:{port}/fhir", "t", state=recorded
                )
                running = asyncio.create_task(importer.run([path]))
                await arrived.wait()
                running.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await running
    finally:
        await runner.cleanup()
    assert state.read_bytes() == b'["Practitioner/a",null]\n'
    [(_, _, reason)] = importer.report.failures
    assert "stopped while in flight" in reason
