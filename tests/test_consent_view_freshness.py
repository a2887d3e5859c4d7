"""A request is decided on a consent view that holds every revision the bucket held when it
arrived: a watch that delivers late is waited for, one question to the bucket serves the
requests that arrived before it was sent, and a bucket that cannot be asked or a watch that
stays behind refuses (503) rather than deciding on an old state."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.js.kv import KeyValue

from shared.access import view as view_module
from shared.access.freshness import BucketRevision, BucketUnreadable
from shared.access.state import Grant, PatientAccessState
from shared.access.view import ConsentView
from shared.fhir.errors import FhirError

pytestmark = pytest.mark.services

GRANTED = PatientAccessState(
    patient="p1", grants=[Grant(consent="Consent/c1", categories=["journal"], orgs=["910000012"])]
)
WITHDRAWN = PatientAccessState(patient="p1")


class LateWatch:
    """A real watch that hands on each entry after the start's replay `delay` seconds late."""

    def __init__(self, watcher: Any, delay: float) -> None:
        self._watcher = watcher
        self._delay = delay
        self._replayed = False

    async def stop(self) -> None:
        await self._watcher.stop()

    def __aiter__(self) -> LateWatch:
        return self

    async def __anext__(self) -> Any:
        entry = await self._watcher.__anext__()
        if entry is None:
            self._replayed = True
        elif self._replayed:
            await asyncio.sleep(self._delay)
        return entry


@pytest.fixture
async def nc() -> AsyncIterator[NATS]:
    connection = await nats.connect(os.environ.get("NATS_URL", "nats://127.0.0.1:4222"))
    yield connection
    await connection.close()


@pytest.fixture
async def bucket(nc: NATS) -> AsyncIterator[KeyValue]:
    name = f"test_fresh_{uuid.uuid4().hex[:10]}"
    kv = await nc.jetstream().create_key_value(bucket=name)
    await kv.put("p1", GRANTED.model_dump_json().encode())
    yield kv
    await nc.jetstream().delete_key_value(name)


async def late_view(
    nc: NATS, kv: KeyValue, monkeypatch: pytest.MonkeyPatch, delay: float
) -> ConsentView:
    real_watchall = KeyValue.watchall

    async def watchall(self: KeyValue, **kwargs: Any) -> Any:
        return LateWatch(await real_watchall(self, **kwargs), delay)

    monkeypatch.setattr(KeyValue, "watchall", watchall)
    view = ConsentView(nc, kv._name)
    await view.start()
    return view


async def test_a_withdrawal_in_the_bucket_is_waited_for_before_deciding(
    nc: NATS, bucket: KeyValue, monkeypatch: pytest.MonkeyPatch
) -> None:
    view = await late_view(nc, bucket, monkeypatch, delay=0.3)
    try:
        assert view.state("p1") == GRANTED
        await bucket.put("p1", WITHDRAWN.model_dump_json().encode())
        assert view.state("p1") == GRANTED, "the watch has not delivered it yet"
        await view.caught_up()
        assert view.state("p1") == WITHDRAWN
        await view.caught_up()  # nothing newer: answered without waiting for the watch
    finally:
        await view.stop()


async def test_a_watch_that_stays_behind_refuses(
    nc: NATS, bucket: KeyValue, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(view_module, "CATCH_UP_PATIENCE", 0.2)
    view = await late_view(nc, bucket, monkeypatch, delay=5.0)
    try:
        await bucket.put("p1", WITHDRAWN.model_dump_json().encode())
        with pytest.raises(FhirError) as refused:
            await view.caught_up()
        assert refused.value.status == 503
        assert refused.value.headers == {"Retry-After": "1"}
        assert view.state("p1") == GRANTED, "still behind: nothing was decided on it"
    finally:
        await view.stop()


async def test_a_bucket_that_cannot_be_asked_refuses(
    nc: NATS, bucket: KeyValue, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(BucketUnreadable):
        await BucketRevision(nc, f"missing_{uuid.uuid4().hex[:8]}").last()
    view = ConsentView(nc, bucket._name)
    await view.start()
    try:
        broken = BucketRevision(nc, f"missing_{uuid.uuid4().hex[:8]}")
        monkeypatch.setattr(view, "_bucket_revision", broken)
        with pytest.raises(FhirError) as refused:
            await view.caught_up()
        assert refused.value.status == 503
    finally:
        await view.stop()


async def test_one_question_serves_the_requests_that_arrived_before_it(
    nc: NATS, bucket: KeyValue
) -> None:
    revision = BucketRevision(nc, bucket._name)
    asked: list[int] = []
    answered = asyncio.Event()
    hold = asyncio.Event()
    real_ask = revision._ask

    async def counted() -> int:
        asked.append(1)
        found = await real_ask()
        if len(asked) == 2:  # the second question's answer is held back
            answered.set()
            await hold.wait()
        return found

    revision._ask = counted  # type: ignore[method-assign]
    last = (await nc.jetstream().stream_info(f"KV_{bucket._name}")).state.last_seq
    answers = await asyncio.gather(*(revision.last() for _ in range(50)))
    assert answers == [last] * 50
    assert len(asked) == 1, "fifty callers that arrived together, one question"
    first = asyncio.create_task(revision.last())
    await answered.wait()  # the second question has its answer, from before the put
    newer = await bucket.put("p1", WITHDRAWN.model_dump_json().encode())
    later = [asyncio.create_task(revision.last()) for _ in range(20)]
    await asyncio.sleep(0.05)
    hold.set()
    assert await first == last
    assert await asyncio.gather(*later) == [newer] * 20, "callers after a question went out"
    assert len(asked) == 3
    await revision.stop()


async def test_a_last_revision_purged_from_the_stream_does_not_stop_decisions(
    nc: NATS, bucket: KeyValue
) -> None:
    """A stream purge keeps the stream's last sequence but removes its message, which no
    watch then delivers: the view counts what its watch's replay covered."""
    await bucket.put("p2", WITHDRAWN.model_dump_json().encode())
    await nc.jetstream().purge_stream(f"KV_{bucket._name}")
    view = ConsentView(nc, bucket._name)
    await view.start()
    try:
        await view.caught_up()
        assert view.state("p1") is None, "purged: nothing is mirrored"
        newer = PatientAccessState(patient="p1", related=["910000012"])
        await bucket.put("p1", newer.model_dump_json().encode())
        await view.caught_up()
        assert view.state("p1") == newer
    finally:
        await view.stop()
