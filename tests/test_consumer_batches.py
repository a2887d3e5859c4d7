"""A durable consumer hands a message on at once, with what JetStream said was waiting
behind it, and asks the server again only for messages that were waiting."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from nats.aio.msg import Msg

from shared.config import Settings
from shared.transport.consumer import DurableConsumer
from shared.transport.nats_connection import close, connect, ensure_event_stream
from tests.nats_streams import own_streams
from tests.support import wait_for

pytestmark = pytest.mark.services


@pytest.fixture
async def settings() -> AsyncIterator[Settings]:
    async with own_streams("cb") as made:
        yield made


async def test_one_message_at_a_time_costs_one_pull_each(settings: Settings) -> None:
    nc = await connect(settings, "barnebro-test-consumer-batches")
    await ensure_event_stream(nc, settings)
    pulls: list[bytes] = []
    durable = "test-batches"

    async def pulled(msg: Msg) -> None:
        pulls.append(msg.data)

    watch = await nc.subscribe(
        f"$JS.API.CONSUMER.MSG.NEXT.{settings.stream_name}.{durable}", cb=pulled
    )
    batches: list[list[bytes]] = []

    async def handler(messages: list[Msg]) -> None:
        batches.append([m.data for m in messages])

    consumer = DurableConsumer(
        nc, stream=settings.stream_name, durable=durable,
        subject=f"{settings.nats_prefix}.events.>", handler=handler,
    )  # fmt: skip
    js = nc.jetstream()
    subject = f"{settings.nats_prefix}.events.test.x"
    try:
        # Waiting before it starts: one batch, taken as JetStream counted it.
        for n in range(5):
            await js.publish(subject, f"early {n}".encode())
        await consumer.start()

        async def first_batch() -> bool:
            return sum(len(b) for b in batches) == 5

        await wait_for(first_batch, 10)
        assert batches[0] == [b"early 0", b"early 1", b"early 2", b"early 3", b"early 4"]
        # Then one at a time: each is handed on alone, at the cost of the one pull that
        # delivered it (and the next one, left waiting), not a second pull for more.
        pulled_before = len(pulls)
        for n in range(5):
            await js.publish(subject, f"late {n}".encode())

            async def handled(count: int = 2 + n) -> bool:
                return len(batches) == count

            await wait_for(handled, 10)
            await asyncio.sleep(0.05)
        assert batches[1:] == [[f"late {n}".encode()] for n in range(5)]
        assert len(pulls) - pulled_before <= 6, pulls[pulled_before:]
    finally:
        await consumer.stop()
        await watch.unsubscribe()
        await close(nc)
