"""A durable consumer hands on what is waiting in one batch, and asks the server for more
than the first message only when the first says more are waiting (or was delivered
again, since the count leaves those out)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from nats.aio.msg import Msg

from shared.config import Settings
from shared.transport.consumer import DurableConsumer
from shared.transport.consumer import _waiting_after as waiting_after
from shared.transport.nats_connection import close, connect, ensure_event_stream
from tests.nats_streams import own_streams
from tests.support import wait_for

pytestmark = pytest.mark.services


@pytest.fixture
async def settings() -> AsyncIterator[Settings]:
    async with own_streams("dc") as made:
        yield made


async def test_what_is_waiting_comes_in_one_batch_and_a_lone_message_alone(
    settings: Settings,
) -> None:
    nc = await connect(settings, "barnebro-test-durable-consumer")
    await ensure_event_stream(nc, settings)
    js = nc.jetstream()
    subject = f"{settings.nats_prefix}.events.test.x"
    for n in range(10):
        await js.publish(subject, f"waiting-{n}".encode())
    batches: list[list[bytes]] = []

    async def handler(messages: list[Msg]) -> None:
        batches.append([m.data for m in messages])

    consumer = DurableConsumer(
        nc, stream=settings.stream_name, durable="test-batches",
        subject=f"{settings.nats_prefix}.events.>", handler=handler,
    )  # fmt: skip
    asked_for_more: list[int] = []
    await consumer.start()  # its loop first runs at this test's next await
    subscription = consumer._subscription  # the real pull subscription, watched
    fetch = subscription.fetch

    async def watched(batch: int = 1, *args: Any, **kwargs: Any) -> list[Msg]:
        if batch > 1:
            asked_for_more.append(batch)
        return await fetch(batch, *args, **kwargs)

    subscription.fetch = watched  # type: ignore[method-assign]
    try:

        async def handed_on() -> bool:
            return consumer.handled == 10

        await wait_for(handed_on, 15)
        assert [data for batch in batches for data in batch] == [
            f"waiting-{n}".encode() for n in range(10)
        ]
        assert asked_for_more[:1] == [9], "the first told of nine more waiting"
        asked = list(asked_for_more)

        await js.publish(subject, b"alone")

        async def alone() -> bool:
            return consumer.handled == 11

        await wait_for(alone, 15)
        assert batches[-1] == [b"alone"]
        assert asked_for_more == asked, "nothing was waiting behind it: no more asked for"
    finally:
        await consumer.stop()
        await close(nc)


def _delivered(times: int, pending: int) -> Msg:
    """A message as JetStream hands it over: its metadata is in the reply subject."""
    reply = f"$JS.ACK.S.c.{times}.10.11.1700000000000000000.{pending}"
    return Msg(_client=None, subject="x", reply=reply, data=b"")  # type: ignore[arg-type]


def test_more_is_asked_for_when_waiting_or_after_a_redelivery() -> None:
    assert waiting_after(_delivered(1, 0), 99) == 0, "nothing waiting behind it"
    assert waiting_after(_delivered(1, 5), 99) == 5
    assert waiting_after(_delivered(1, 500), 99) == 99, "at most a batch"
    # num_pending leaves out messages due again: after a redelivery, ask for a batch.
    assert waiting_after(_delivered(2, 0), 99) == 99
