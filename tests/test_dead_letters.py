"""A message a consumer cannot handle is set aside, not retried for ever; and a deleted
child's access state is emptied instead of failing for ever."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from nats.aio.msg import Msg

from shared.config import Settings
from shared.transport.consumer import DurableConsumer
from shared.transport.dead_letters import dead_letters, replay
from shared.transport.nats_connection import close, connect, ensure_event_stream
from tests.consent_world import BVT, World
from tests.nats_streams import own_streams
from tests.support import wait_for

pytestmark = pytest.mark.services


@pytest.fixture
async def settings() -> AsyncIterator[Settings]:
    async with own_streams("dl") as made:
        yield made


async def test_a_message_that_keeps_failing_is_set_aside_and_can_be_replayed(
    settings: Settings,
) -> None:
    nc = await connect(settings, "barnebro-test-dead-letters")
    await ensure_event_stream(nc, settings)
    handled: list[bytes] = []
    fixed = False

    async def handler(messages: list[Msg]) -> None:
        for message in messages:
            if message.data == b"poison" and not fixed:
                raise ValueError("cannot read this one")
        handled.extend(m.data for m in messages)

    consumer = DurableConsumer(
        nc, stream=settings.stream_name, durable="test-consumer",
        subject=f"{settings.nats_prefix}.events.>", handler=handler,
        dead_letters=settings.nats_prefix, retry_delays=(0.05, 0.05),
    )  # fmt: skip
    await consumer.start()
    try:
        js = nc.jetstream()
        for data in (b"first", b"poison", b"last"):
            await js.publish(f"{settings.nats_prefix}.events.test.x", data, headers={"A": "b"})

        async def settled() -> bool:
            return consumer.set_aside == 1 and sorted(handled) == [b"first", b"last"]

        await wait_for(settled, 15)
        letters = await dead_letters(nc, settings.dead_letter_stream_name)
        assert [(d.consumer, d.data) for d in letters] == [("test-consumer", b"poison")]
        assert "cannot read this one" in letters[0].error
        assert letters[0].subject == f"{settings.nats_prefix}.events.test.x"
        assert letters[0].headers == {"A": "b"}

        fixed = True
        assert await replay(nc, settings.dead_letter_stream_name) == 1

        async def replayed() -> bool:
            return b"poison" in handled

        await wait_for(replayed, 15)
        assert await dead_letters(nc, settings.dead_letter_stream_name) == []
    finally:
        await consumer.stop()
        await close(nc)


async def test_a_deleted_childs_access_state_is_emptied(world: World) -> None:
    """Deleting a child's record (no parents or care order registered) empties its access
    state: the relations it rested on are gone; the directory watch goes on, with nothing
    set aside."""
    created = await world.create({"resourceType": "Patient", "name": [{"family": "Slettes"}]})
    view = world.stack.directory.consent_view
    assert view is not None

    def published_related() -> list[str] | None:
        state = view.published(created["id"])
        return list(state.related) if state is not None else None

    async def related() -> bool:
        return published_related() == [BVT]

    await wait_for(related, 10)
    deleted = await world.fhir("DELETE", f"Patient/{created['id']}", by=BVT)
    assert deleted.status == 204, deleted.body

    async def emptied() -> bool:
        return published_related() == []

    await wait_for(emptied, 10)
    state = view.published(created["id"])
    assert state is not None and not (state.parents or state.grants or state.care_order_holders)
    later = await world.create({"resourceType": "Patient", "name": [{"family": "Etterpå"}]})

    async def still_followed() -> bool:
        return view.state(later["id"]) is not None

    await wait_for(still_followed, 10)
    nc = await connect(world.stack.settings, "barnebro-test-dead-letters")
    try:
        assert await dead_letters(nc, world.stack.settings.dead_letter_stream_name) == []
    finally:
        await close(nc)
