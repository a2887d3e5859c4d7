"""Nothing is lost: an endpoint that is down for a long time (compressed by configuration),
a delivery worker killed in the middle of a notification, and a NATS restart. In each
case the partner ends up with every event, numbered without gaps, in order of first
arrival, and can de-duplicate by number what was sent again."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from services.operator.status import gather, report
from services.subscriptions import subscriptions_spec
from shared.config import Settings
from shared.runtime import ServiceRuntime
from tests.referral_world import BUP, ReferralWorld
from tests.servers import NatsProcess
from tests.subscription_world import Partner, SubscriptionWorld, subscription, subscription_settings
from tests.support import (
    drop_test_resources,
    start_stack,
    stop_stack,
    wait_for,
)
from tests.support import test_settings as make_settings


def first_arrivals(numbers: list[int]) -> list[int]:
    """The numbers in the order they first arrived (a repeat is a duplicate to drop)."""
    seen: list[int] = []
    for number in numbers:
        if number not in seen:
            seen.append(number)
    return seen


async def _active(world: SubscriptionWorld, partner: Partner) -> str:
    body = subscription("referral-status", endpoint=partner.url, filters=(f"performer={BUP}",))
    return await world.active(body, BUP)


async def test_an_endpoint_down_past_the_retry_period_shows_error_and_then_catches_up(
    subscriptions: SubscriptionWorld,
) -> None:
    """One hour down, compressed: retries every 0.05-0.3 s, `error` after 1.5 s."""
    await subscriptions.restart(subscription_retry_hours=1.5 / 3600)
    world = subscriptions.referrals
    partner = await subscriptions.partner()
    sub_id = await _active(subscriptions, partner)
    partner.answer = 503
    referrals = [await world.submit(await world.child()) for _ in range(3)]
    await subscriptions.wait_for_status(sub_id, "error", by=BUP)
    stored = await subscriptions.subscription(sub_id, by=BUP)
    assert "HTTP 503" in stored["error"]
    status = await subscriptions.status(sub_id, by=BUP)
    texts = " ".join(e["text"] for e in status["error"])
    assert "Failing since" in texts and "HTTP 503" in texts
    assert "Events numbered and waiting to be delivered: 3" in texts
    stack = world.stack
    assert stack.gateway.gateway is not None and stack.gateway.gateway.nc is not None
    operator_view = await gather(stack.gateway.gateway.nc, stack.settings)
    [in_error] = operator_view.subscriptions_in_error
    assert in_error["id"] == sub_id and "HTTP 503" in in_error["error"]
    assert f"Subscription/{sub_id} of {BUP}, failing since" in report(operator_view)
    assert partner.refused >= 5, "retried, not given up"
    refused = partner.refused
    await asyncio.sleep(0.8)
    assert partner.refused > refused, "still retried in error"
    for referral in referrals:
        assert (await world.accept(referral)).status == 200
    partner.answer = 200
    numbers = await partner.wait_for_numbers(9)
    assert first_arrivals(numbers) == list(range(1, 10))
    await subscriptions.wait_for_status(sub_id, "active", by=BUP)
    submitted = [f.split("/")[-3] for f in partner.focus()[:3]]
    assert submitted == [r.id for r in referrals], "in the order they happened"


def _environment(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias.choices[0]  # type: ignore[union-attr]
        value = getattr(settings, name)
        env[str(alias)] = str(value).lower() if isinstance(value, bool) else str(value)
    env["BARNEBRO_LOG_FORMAT"] = "text"
    return env


def _serve(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "services.cli", "serve", "subscriptions"],
            env=_environment(settings),
            stdout=out,
            stderr=out,
        )


async def _serving(referrals: ReferralWorld) -> None:
    """Wait until a subscriptions process of the test's own answers through the gateway."""

    async def answers() -> bool:
        reply = await referrals.fhir("GET", "SubscriptionTopic", by=BUP)
        return reply.status == 200

    await wait_for(answers, limit=30)


async def test_a_delivery_worker_killed_mid_notification_loses_nothing(
    referrals: ReferralWorld, tmp_path: Path
) -> None:
    settings = subscription_settings(referrals.stack.settings, subscription_lease_seconds=2.0)
    world = SubscriptionWorld(referrals, ServiceRuntime(subscriptions_spec(settings), settings))
    first = _serve(settings, tmp_path / "first.log")
    second: subprocess.Popen[bytes] | None = None
    partner = await world.partner()
    try:
        await _serving(referrals)
        sub_id = await _active(world, partner)
        partner.delay = 3.0
        referral = await referrals.submit(await referrals.child())
        assert (await referrals.accept(referral)).status == 200

        async def in_flight() -> bool:
            return len(partner.arrived) >= 2  # the handshake and a notification

        await wait_for(in_flight)
        cut = orjson.loads(partner.arrived[-1])["entry"][0]["resource"]
        cut_numbers = [int(e["eventNumber"]) for e in cut["notificationEvent"]]
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
        partner.delay = 0
        second = _serve(settings, tmp_path / "second.log")
        numbers = await partner.wait_for_numbers(3, limit=30)
        assert first_arrivals(numbers) == [1, 2, 3]
        assert numbers[: len(cut_numbers)] == cut_numbers, "sent again with the same numbers"
        status = await world.status(sub_id, by=BUP)
        assert status["eventsSinceSubscriptionStart"] == "3"
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(15)
        await partner.stop()


async def test_a_standby_instance_takes_over_from_a_killed_one_within_seconds(
    referrals: ReferralWorld, tmp_path: Path
) -> None:
    """With the default lease (3 s): the killed instance led the fan-out and held the
    subscription in the middle of a send; the standby carries on within the lease plus a
    poll, not after the 15 s the lease used to be, and numbers each event once."""
    defaults = {
        name: Settings.model_fields[name].default
        for name in ("subscription_lease_seconds", "subscription_poll_seconds")
    }
    settings = subscription_settings(referrals.stack.settings, **defaults)
    world = SubscriptionWorld(referrals, ServiceRuntime(subscriptions_spec(settings), settings))
    leader = _serve(settings, tmp_path / "leader.log")
    standby: subprocess.Popen[bytes] | None = None
    partner = await world.partner()
    try:
        await _serving(referrals)
        await _active(world, partner)
        standby = _serve(settings, tmp_path / "standby.log")

        async def standing_by() -> bool:
            return "service subscriptions started" in (tmp_path / "standby.log").read_text()

        await wait_for(standing_by, limit=30)
        partner.delay = 3.0
        first = await referrals.submit(await referrals.child())

        async def in_flight() -> bool:
            return len(partner.arrived) >= 2  # the handshake and a notification

        await wait_for(in_flight)
        os.kill(leader.pid, signal.SIGKILL)
        killed = time.monotonic()
        leader.wait(10)
        partner.delay = 0
        assert (await referrals.accept(first)).status == 200
        numbers = await partner.wait_for_numbers(3, limit=30)
        taken_over = time.monotonic() - killed
        assert first_arrivals(numbers) == [1, 2, 3]
        # The documented bound with the defaults (lease plus poll, 4 s), and time to accept
        # the referral and deliver on a busy machine.
        assert taken_over < 7.0, f"took {taken_over:.1f} s to take over"
    finally:
        for process in (leader, standby):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(15)
        await partner.stop()


@pytest.fixture
async def world_on_own_nats(tmp_path: Path, backend: str) -> AsyncIterator[Any]:
    from services.referral import referral_spec
    from tests.conftest import register
    from tests.referral_world import KINDS, organisation

    server = NatsProcess(tmp_path / "nats-store")
    server.start()
    settings = make_settings(tmp_path, backend, server.url)
    stack = await start_stack(settings)
    referrals = ReferralWorld(stack, ServiceRuntime(referral_spec(settings), settings), {})
    await referrals.referral.start()
    service_settings = subscription_settings(settings)
    world = SubscriptionWorld(
        referrals, ServiceRuntime(subscriptions_spec(service_settings), service_settings)
    )
    await world.service.start()
    try:
        referrals.organisations = await register(stack, [organisation(o) for o in KINDS])
        yield world, server
    finally:
        await world.service.stop()
        await referrals.referral.stop()
        for partner in world.partners:
            await partner.stop()
        await stop_stack(stack)
        server.start() if server.process is None else None
        await drop_test_resources(settings)
        server.stop()


async def test_a_nats_restart_loses_no_notification(world_on_own_nats: Any) -> None:
    """Events wait in JetStream across the restart (the service was stopped when they
    were raised), others are between outbox, stream, queue and partner when it stops."""
    world, server = world_on_own_nats
    referrals = world.referrals
    partner = await world.partner()
    await _active(world, partner)
    children = [await referrals.child() for _ in range(6)]
    await world.service.stop()
    waiting = [await referrals.submit(child) for child in children[:2]]
    await world.restart()
    in_flight = await asyncio.gather(*(referrals.submit(child) for child in children[2:]))
    server.stop()
    await asyncio.sleep(1.5)
    server.start()
    submitted = [*waiting, *in_flight]
    for referral in submitted:

        async def received(referral: Any = referral) -> bool:
            try:  # the services reconnect within a second or two
                reply = await referrals.move(referral, "received")
            except AssertionError:
                return False
            return bool(reply.status == 200)

        await wait_for(received, limit=20, interval=0.3)
    numbers = await partner.wait_for_numbers(12, limit=30)
    assert first_arrivals(numbers) == list(range(1, 13))
    focus = [f.split("/")[-3] for f in partner.focus()]
    assert set(focus) == {r.id for r in submitted} | {r.task_id for r in submitted}


def _in_version_order(focus: list[str]) -> bool:
    """Each resource's versions arrive in the order they were written."""
    last: dict[str, int] = {}
    for reference in focus:
        resource, version = reference.split("/_history/")
        if int(version) <= last.get(resource, 0):
            return False
        last[resource] = int(version)
    return True


async def test_two_instances_deliver_every_event_once_in_order_and_take_over(
    subscriptions: SubscriptionWorld,
) -> None:
    settings = subscriptions.settings
    second = ServiceRuntime(subscriptions_spec(settings), settings)
    await second.start()
    world = subscriptions.referrals
    partners = [await subscriptions.partner() for _ in range(3)]
    for partner in partners:
        await _active(subscriptions, partner)
    submitted = [await world.submit(await world.child()) for _ in range(4)]
    for referral in submitted:
        assert (await world.accept(referral)).status == 200
    for partner in partners:
        assert await partner.wait_for_numbers(12) == list(range(1, 13)), "once each, in order"
        assert _in_version_order(partner.focus())
    await subscriptions.service.stop()  # the other instance carries on alone
    subscriptions.service = second
    for referral in submitted:
        assert (await world.move(referral, "in-progress")).status == 200
    for partner in partners:
        assert await partner.wait_for_numbers(16) == list(range(1, 17))
        assert _in_version_order(partner.focus())


async def test_delivered_events_are_kept_for_replay_for_the_retention_period_only(
    subscriptions: SubscriptionWorld,
) -> None:
    from services.subscriptions.queue import DeliveryQueue

    world = subscriptions.referrals
    partner = await subscriptions.partner()
    sub_id = await _active(subscriptions, partner)
    partner.answer = 503
    await world.submit(await world.child())
    await world.submit(await world.child())

    await subscriptions.failing(partner)
    assert subscriptions.service.db is not None
    queue = DeliveryQueue()
    queue.db = subscriptions.service.db
    assert await queue.prune(3600) == 0, "nothing delivered yet, nothing old"
    assert await queue.prune(0) == 0, "waiting events are never pruned"
    partner.answer = 200
    await partner.wait_for_numbers(2)
    assert await queue.prune(3600) == 0
    replay = await subscriptions.events(sub_id, by=BUP)
    assert replay.status == 200 and len(replay.json()["entry"]) == 3
    assert await queue.prune(0) == 2
    replay = await subscriptions.events(sub_id, by=BUP)
    assert len(replay.json()["entry"]) == 1, "only the status: the events are forgotten"


async def test_a_failing_event_withheld_after_withdrawal_does_not_block_the_next(
    subscriptions: SubscriptionWorld,
) -> None:
    from tests.referral_world import BVT

    world = subscriptions.referrals
    barnevern = await subscriptions.partner()
    await subscriptions.active(subscription("referral-status", endpoint=barnevern.url), BVT)
    withdrawn, marker = await world.child(), await world.child()
    consent = await world.consent(withdrawn, "informasjonsdeling", BVT)
    await world.consent(marker, "informasjonsdeling", BVT)
    barnevern.answer = 503
    await world.submit(withdrawn)

    await subscriptions.failing(barnevern, 2)
    await subscriptions.withdraw(consent, withdrawn)
    barnevern.answer = 200
    referral = await world.submit(marker)
    numbers = await barnevern.wait_for_numbers(1)
    assert [f.split("/")[-3] for f in barnevern.focus()] == [referral.id]
    assert numbers == [2], "number 1 went to the withheld event and is never sent"


async def publish_task_events(settings: Settings, count: int, prefix: str = "t") -> None:
    """Publish `count` Task events for BUP straight to the event stream, as the referral
    service's relay would."""
    import nats

    from shared.events import DomainEvent, EventAccess
    from tests.referral_world import GP

    nc = await nats.connect(settings.nats_url)
    try:
        js = nc.jetstream()
        for i in range(count):
            event = DomainEvent(
                type="referral.Task.accepted", source="referral", resource_type="Task",
                resource_id=f"{prefix}{i}", version_id="2", patient="backlog-child",
                data={"performer": BUP, "status": "accepted"},
                access=EventAccess(category="referral", author=GP, parties=[GP, BUP]),
            )  # fmt: skip
            await js.publish(
                event.subject(settings.nats_prefix),
                event.model_dump_json().encode(),
                headers={"Nats-Msg-Id": event.id},
            )
    finally:
        await nc.close()


async def test_a_long_backlog_is_delivered_complete_and_in_order(
    subscriptions: SubscriptionWorld,
) -> None:
    """1000 events raised while the service was down: more than the fan-out holds in
    memory at once, more than a notification carries."""

    partner = await subscriptions.partner()
    body = subscription(
        "referral-status", endpoint=partner.url, filters=(f"performer={BUP}",), max_count=100
    )
    await subscriptions.active(body, BUP)
    await subscriptions.service.stop()
    await publish_task_events(subscriptions.settings, 1000)
    await subscriptions.restart()
    numbers = await partner.wait_for_numbers(1000, limit=90)
    assert first_arrivals(numbers) == list(range(1, 1001))
    assert [f.split("/")[-3] for f in partner.focus()][:1000] == [f"t{i}" for i in range(1000)]


@pytest.mark.parametrize("linger", [1.0, 0.0])
async def test_events_that_follow_closely_share_a_notification(
    subscriptions: SubscriptionWorld, linger: float
) -> None:
    """Five events 50 ms apart: within the linger they go in one notification; without
    it each goes as soon as it is queued, so in more than one."""
    await subscriptions.restart(subscription_linger_seconds=linger)
    partner = await subscriptions.partner()
    body = subscription(
        "referral-status", endpoint=partner.url, filters=(f"performer={BUP}",), max_count=100
    )
    await subscriptions.active(body, BUP)
    for i in range(5):
        await publish_task_events(subscriptions.settings, 1, prefix=f"close{i}-")
        await asyncio.sleep(0.05)
    numbers = await partner.wait_for_numbers(5)
    assert first_arrivals(numbers) == [1, 2, 3, 4, 5]
    notifications = len(partner.notifications())
    assert notifications == 1 if linger else notifications > 1, notifications


async def _lease_owner(subscriptions: SubscriptionWorld, sub_id: str) -> str | None:
    assert subscriptions.service.db is not None
    async with subscriptions.service.db.reader() as conn:
        row = await conn.fetchrow(
            "SELECT lease_owner FROM subscription_delivery WHERE subscription = ?", sub_id
        )
    assert row is not None
    return None if row[0] is None else str(row[0])


async def test_a_delivery_holds_its_subscription_for_the_events_that_follow(
    subscriptions: SubscriptionWorld,
) -> None:
    """With a hold (and a poll) of 8 s: after its notification the instance keeps the
    subscription, and an event queued meanwhile goes at once, in the same turn, not when
    the hold or the poll runs out."""
    partner = await subscriptions.partner()
    body = subscription("referral-status", endpoint=partner.url, filters=(f"performer={BUP}",))
    sub_id = await subscriptions.active(body, BUP)
    await subscriptions.restart(
        subscription_hold_seconds=8.0,
        subscription_poll_seconds=8.0,
        subscription_linger_seconds=0.0,
    )
    await publish_task_events(subscriptions.settings, 1, prefix="held-a")
    await partner.wait_for_numbers(1)
    await asyncio.sleep(1.0)
    assert await _lease_owner(subscriptions, sub_id) is not None, "kept after its notification"
    queued = time.monotonic()
    await publish_task_events(subscriptions.settings, 1, prefix="held-b")
    assert first_arrivals(await partner.wait_for_numbers(2)) == [1, 2]
    assert time.monotonic() - queued < 3.0, "woken by the event, not by the hold's end"

    await subscriptions.restart(subscription_hold_seconds=0.0)
    await publish_task_events(subscriptions.settings, 1, prefix="held-c")
    assert first_arrivals(await partner.wait_for_numbers(3)) == [1, 2, 3]

    async def given_back() -> bool:
        return await _lease_owner(subscriptions, sub_id) is None

    await wait_for(given_back, limit=3)


async def test_an_event_stream_made_anew_is_followed_from_its_start(
    subscriptions: SubscriptionWorld,
) -> None:
    import nats

    from shared.transport.nats_connection import ensure_event_stream

    partner = await subscriptions.partner()
    await _active(subscriptions, partner)
    await subscriptions.referrals.submit(await subscriptions.referrals.child())
    await partner.wait_for_numbers(1)
    await subscriptions.service.stop()
    settings = subscriptions.settings
    nc = await nats.connect(settings.nats_url)
    try:
        await nc.jetstream().delete_stream(settings.stream_name)
        await ensure_event_stream(nc, settings)
    finally:
        await nc.close()
    # more events than the old stream held: the new one is recognised by its identity
    await publish_task_events(settings, 150, prefix="anew")
    await subscriptions.restart()
    assert await partner.wait_for_numbers(151) == list(range(1, 152))
    assert [f.split("/")[-3] for f in partner.focus()][1:] == [f"anew{i}" for i in range(150)]


async def test_status_tells_nothing_of_events_the_partner_has_no_basis_for(
    subscriptions: SubscriptionWorld,
) -> None:
    from tests.referral_world import BVT

    world = subscriptions.referrals
    down = await subscriptions.partner()
    child = await world.child()
    sub_id = await subscriptions.active(
        subscription("referral-status", endpoint=down.url, filters=(f"patient={child.id}",)), BVT
    )
    down.answer = 503
    await world.submit(child)
    await world.submit(child)
    await asyncio.sleep(1.0)
    status = await subscriptions.status(sub_id, by=BVT)
    assert status["eventsSinceSubscriptionStart"] == "0"
    assert "error" not in status, "no count, no failure: nothing was due to be sent"
    assert down.refused == 0


async def test_a_bad_time_on_the_stream_does_not_stop_the_fan_out(
    subscriptions: SubscriptionWorld,
) -> None:
    import nats

    from shared.events import DomainEvent

    partner = await subscriptions.partner()
    await _active(subscriptions, partner)
    settings = subscriptions.settings
    bad = DomainEvent(
        type="referral.Task.accepted", source="referral", resource_type="Task",
        resource_id="naive", version_id="2", patient=None, time="2026-11-24T10:00:00",
        data={"performer": BUP},
    )  # fmt: skip
    nc = await nats.connect(settings.nats_url)
    try:
        await nc.jetstream().publish(
            bad.subject(settings.nats_prefix), bad.model_dump_json().encode()
        )
    finally:
        await nc.close()
    referral = await subscriptions.referrals.submit(await subscriptions.referrals.child())
    await partner.wait_for_numbers(1)
    assert [f.split("/")[-3] for f in partner.focus()] == [referral.id]


async def test_a_new_endpoint_gets_its_own_handshake_before_any_event(
    subscriptions: SubscriptionWorld,
) -> None:
    world = subscriptions.referrals
    old, new = await subscriptions.partner(delay=1.5), await subscriptions.partner()
    body = subscription("referral-status", endpoint=old.url, filters=(f"performer={BUP}",))
    sub_id = await subscriptions.subscribe(body, by=BUP)

    async def handshake_in_flight() -> bool:
        return bool(old.arrived)

    await wait_for(handshake_in_flight)
    stored = await subscriptions.subscription(sub_id, by=BUP)
    stored["channel"]["endpoint"] = new.url
    reply = await world.fhir("PUT", f"Subscription/{sub_id}", stored, by=BUP)
    assert reply.status == 200, reply.body
    await subscriptions.wait_for_status(sub_id, "active", by=BUP)
    await world.submit(await world.child())
    await new.wait_for_numbers(1)
    assert [r.kind for r in new.received] == ["handshake", "event-notification"]


async def test_off_takes_effect_within_a_delivery_turn(subscriptions: SubscriptionWorld) -> None:
    world = subscriptions.referrals
    partner = await subscriptions.partner()
    body = subscription(
        "referral-status", endpoint=partner.url, filters=(f"performer={BUP}",), max_count=1
    )
    sub_id = await subscriptions.active(body, BUP)
    partner.delay = 0.5
    for _ in range(4):
        await world.submit(await world.child())
    await partner.wait_for_numbers(1)
    stored = await subscriptions.subscription(sub_id, by=BUP)
    stored["status"] = "off"
    reply = await world.fhir("PUT", f"Subscription/{sub_id}", stored, by=BUP)
    assert reply.status == 200, reply.body
    arrived = len(partner.arrived)
    await asyncio.sleep(1.5)
    assert len(partner.arrived) <= arrived + 1, "at most the one already on its way"


async def test_events_waiting_for_an_off_subscription_are_pruned_in_time(
    subscriptions: SubscriptionWorld,
) -> None:
    from services.subscriptions.queue import DeliveryQueue

    world = subscriptions.referrals
    partner = await subscriptions.partner()
    sub_id = await _active(subscriptions, partner)
    partner.answer = 503
    await world.submit(await world.child())

    await subscriptions.failing(partner)
    assert (await world.fhir("DELETE", f"Subscription/{sub_id}", by=BUP)).status == 204
    assert subscriptions.service.db is not None
    queue = DeliveryQueue()
    queue.db = subscriptions.service.db
    assert await queue.prune(3600) == 0
    assert await queue.prune(0) == 1
