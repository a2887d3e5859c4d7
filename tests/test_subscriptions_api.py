"""The subscriptions service over HTTP: topics, subscribing, bad requests, a referral's
lifecycle delivered to a partner's endpoint, filters, consent, replay and status."""

from __future__ import annotations

from services.subscriptions.domain.topics import TOPICS
from tests.referral_world import BUP, GP
from tests.subscription_world import SubscriptionWorld, subscription


async def test_referral_lifecycle_reaches_the_receiver_in_order(
    subscriptions: SubscriptionWorld,
) -> None:
    world = subscriptions.referrals
    partner = await subscriptions.partner()
    sub_id = await subscriptions.subscribe(
        subscription("referral-status", endpoint=partner.url, filters=(f"performer={BUP}",),
                     content="full-resource"),
        by=BUP,
    )  # fmt: skip
    await subscriptions.wait_for_status(sub_id, "active", by=BUP)
    assert partner.received[0].kind == "handshake"
    child = await world.child()
    referral = await world.submit(child)
    reply = await world.accept(referral)
    assert reply.status == 200, reply.body
    numbers = await partner.wait_for_numbers(3)
    assert numbers == [1, 2, 3]
    assert all(r.signed for r in partner.received)
    kinds = [r.resources[0]["resourceType"] for r in partner.notifications()]
    assert kinds[0] == "ServiceRequest"
    assert [r.resources[0].get("status") for r in partner.notifications()][1:] == [
        "received",
        "accepted",
    ]
    assert len(TOPICS) >= 7
