"""The subscriptions service over HTTP: topics, subscribing, bad requests, a referral's
lifecycle delivered to a partner's endpoint, filters, consent, replay and status."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from services.subscriptions.domain.topics import TOPIC_BASE, TOPICS
from services.subscriptions.domain.vocabulary import SUBSCRIPTION_HEADER
from tests.referral_world import BUP, BUP2, BVT, GP, SKOLE
from tests.subscription_world import SubscriptionWorld, subscription
from tests.support import wait_for


async def test_referral_lifecycle_reaches_the_receiver_in_order(
    subscriptions: SubscriptionWorld,
) -> None:
    world = subscriptions.referrals
    partner = await subscriptions.partner()
    body = subscription(
        "referral-status",
        endpoint=partner.url,
        filters=(f"performer={BUP}",),
        content="full-resource",
        headers=("Authorization: Bearer partner-key",),
    )
    sub_id = await subscriptions.active(body, BUP)
    handshake = partner.received[0]
    assert handshake.kind == "handshake" and handshake.signed
    assert handshake.headers["Authorization"] == "Bearer partner-key"
    assert handshake.headers[SUBSCRIPTION_HEADER] == sub_id
    child = await world.child()
    referral = await world.submit(child)
    assert (await world.accept(referral)).status == 200
    assert (await world.move(referral, "in-progress")).status == 200
    assert await partner.wait_for_numbers(4) == [1, 2, 3, 4]
    notifications = partner.notifications()
    assert all(r.signed for r in partner.received)
    resources = partner.resources()
    assert resources[0]["resourceType"] == "ServiceRequest"
    assert [r.get("status") for r in resources[1:]] == ["received", "accepted", "in-progress"]
    assert [r["id"] for r in resources[1:]] == [referral.task_id] * 3
    last = notifications[-1].status
    assert last["eventsSinceSubscriptionStart"] == "4"
    assert last["topic"] == TOPIC_BASE + "referral-status"
    assert last["subscription"]["reference"].endswith(f"Subscription/{sub_id}")
    # history Bundle: the entry names the version the event is about
    assert notifications[-1].bundle["type"] == "history"
    assert last["notificationEvent"][-1]["focus"]["reference"].endswith(
        f"Task/{referral.task_id}/_history/{resources[-1]['meta']['versionId']}"
    )


async def test_the_topics_are_published_and_read_only(subscriptions: SubscriptionWorld) -> None:
    world = subscriptions.referrals
    found = await world.fhir("GET", "SubscriptionTopic", by=GP)
    assert found.status == 200
    topics = {e["resource"]["url"]: e["resource"] for e in found.json()["entry"]}
    assert set(topics) == {topic.url for topic in TOPICS}
    for key in ("referral-status", "referral-deadline", "careplan", "coordinator",
                "careteam-membership", "consent", "institution-registered"):  # fmt: skip
        assert TOPIC_BASE + key in topics
    filters = {f["filterParameter"] for f in topics[TOPIC_BASE + "referral-status"]["canFilterBy"]}
    assert filters == {"patient", "event", "requester", "performer", "status"}
    one = await world.fhir("GET", f"SubscriptionTopic?url={TOPIC_BASE}coordinator", by=GP)
    assert [e["resource"]["id"] for e in one.json()["entry"]] == ["coordinator"]
    reply = await world.fhir("POST", "SubscriptionTopic", topics[TOPIC_BASE + "consent"], by=GP)
    assert reply.status == 405, reply.body
    statement = (await world.fhir("GET", "metadata", by=GP)).json()
    served = {r["type"]: r for r in statement["rest"][0]["resource"]}
    assert {"Subscription", "SubscriptionTopic"} <= set(served)
    operations = {o["name"] for o in served["Subscription"]["operation"]}
    assert {"status", "events"} <= operations


BAD_REQUESTS = [
    ("unknown topic", {"topic": "https://example.org/topic/x"}, 422, "Unknown topic"),
    (
        "undeclared filter",
        {"filters": ("diagnosis=F32",)},
        422,
        "cannot be filtered by 'diagnosis'",
    ),
    ("modifier", {"filters": ("patient:identifier=x|1",)}, 422, "modifiers are not supported"),
    ("filter on another type", {"filters": ("CarePlan?patient=1",)}, 422, "is about CarePlan"),
    ("no value", {"filters": ("status=",)}, 422, "needs name=value"),
    ("ftp endpoint", {"endpoint": "ftp://partner.example/hook"}, 422, "absolute https or http URL"),
    ("relative endpoint", {"endpoint": "/hook"}, 422, "absolute https or http URL"),
    ("no endpoint", {"endpoint": None}, 422, "needs an endpoint"),
    ("credentials in URL", {"endpoint": "https://u:p@partner.example/h"}, 422, "credentials"),
    ("metadata service", {"endpoint": "https://169.254.169.254/latest"}, 422, "link-local"),
    ("private address", {"endpoint": "https://10.20.30.40/hook"}, 422, "private"),
    ("loopback not allowed", {"endpoint": "http://127.0.0.2:9/hook"}, 422, "loopback"),
    ("mapped private", {"endpoint": "https://[::ffff:192.168.0.1]/hook"}, 422, "private"),
    ("no secret", {"secret": None}, 422, "signing secret"),
    ("short secret", {"secret": "short"}, 422, "signing secret"),
    ("unknown channel", {"channel": "websocket"}, 422, "is not offered"),
    ("unknown content", {"content": "everything"}, 422, "Content 'everything'"),
    ("reserved header", {"headers": ("Content-Type: text/plain",)}, 422, "set by the server"),
    ("malformed header", {"headers": ("no colon here",)}, 422, "'Name: value'"),
    ("control character in a header", {"headers": ("X-Key: a\rb",)}, 422, "'Name: value'"),
    ("header name not a token", {"headers": ("X Key: a",)}, 422, "'Name: value'"),
    ("broken IPv6 endpoint", {"endpoint": "https://[::1/hook"}, 422, "absolute https or http"),
    ("port out of range", {"endpoint": "https://p.example:99999/h"}, 422, "absolute https or"),
    ("CRLF in the endpoint", {"endpoint": "https://p.example/h\r\nX: y"}, 422, "absolute https"),
    ("leap-second end", {"end": "2026-12-31T23:59:60Z"}, 422, "must be an instant"),
    ("end without zone", {"end": "2026-12-31T10:00:00"}, 422, "Instant value string"),
]


@pytest.mark.parametrize(("case", "changes", "status", "message"), BAD_REQUESTS)
async def test_bad_subscriptions_are_refused_with_the_reason(
    subscriptions: SubscriptionWorld, case: str, changes: dict[str, Any], status: int,
    message: str,
) -> None:  # fmt: skip
    world = subscriptions.referrals
    options: dict[str, Any] = {"endpoint": "https://partner.example/hook", **changes}
    topic = options.pop("topic", "referral-status")
    end = options.pop("end", None)
    body = subscription(topic, **options)
    if end is not None:
        body["end"] = end
    reply = await world.fhir("POST", "Subscription", body, by=BUP)
    assert reply.status == status, (case, reply.body)
    assert any(message in issue["diagnostics"] for issue in reply.issues()), reply.body


async def test_only_an_organisation_that_may_read_the_topic_subscribes_for_itself(
    subscriptions: SubscriptionWorld,
) -> None:
    stack = subscriptions.referrals.stack
    body = subscription("referral-status", endpoint="https://partner.example/hook")
    no_scope = stack.token(orgnr=BUP, kind="bup", scope="system/Subscription.cruds")
    reply = await stack.call("POST", "Subscription", body, token=no_scope)
    assert reply.status == 403
    assert "system/Task.r" in reply.issues()[0]["diagnostics"]
    parent = stack.token(orgnr="", kind="", fhir_user="RelatedPerson/1")
    reply = await stack.call("POST", "Subscription", body, token=parent)
    assert reply.status == 403, reply.body
    task_only = stack.token(orgnr=BUP, kind="bup", scope="system/Subscription.cruds system/Task.r")
    reply = await stack.call("POST", "Subscription", body, token=task_only)
    assert reply.status == 403, "the topic tells of ServiceRequests too"
    assert "system/ServiceRequest.r" in reply.issues()[0]["diagnostics"]
    scoped = stack.token(
        orgnr=BUP, kind="bup",
        scope="system/Subscription.cruds system/Task.r system/ServiceRequest.r",
    )  # fmt: skip
    reply = await stack.call("POST", "Subscription", body, token=scoped)
    assert reply.status == 201, reply.body
    created = reply.json()
    created["criteria"] = TOPIC_BASE + "referral-deadline"
    reply = await stack.call("PUT", f"Subscription/{created['id']}", created, token=scoped)
    assert reply.status == 422 and "cannot change" in reply.issues()[0]["diagnostics"]
    school = stack.token(orgnr=SKOLE, kind="skole")
    consents = subscription("consent", endpoint="https://partner.example/hook")
    reply = await stack.call("POST", "Subscription", consents, token=school)
    assert reply.status == 403, "a school may not read consent records, nor hear of them"
    assert "permission table" in reply.issues()[0]["diagnostics"]


async def test_a_subscription_is_its_owners_alone(subscriptions: SubscriptionWorld) -> None:
    world = subscriptions.referrals
    body = subscription("referral-status", endpoint="https://partner.example/hook")
    sub_id = await subscriptions.subscribe(body, by=BUP)
    own = await subscriptions.subscription(sub_id, by=BUP)
    assert own["status"] in ("requested", "error", "active")
    for method, path in (("GET", f"Subscription/{sub_id}"),
                         ("GET", f"Subscription/{sub_id}/$status"),
                         ("GET", f"Subscription/{sub_id}/$events")):  # fmt: skip
        reply = await world.fhir(method, path, by=GP)
        assert reply.status == 404, (path, reply.body)
    own["status"] = "off"
    reply = await world.fhir("PUT", f"Subscription/{sub_id}", own, by=GP)
    assert reply.status == 405, reply.body  # answered as for an id that does not exist
    assert "does not exist" in reply.issues()[0]["diagnostics"]
    assert (await world.fhir("DELETE", f"Subscription/{sub_id}", by=GP)).status == 404
    assert (await subscriptions.subscription(sub_id, by=BUP))["status"] != "off"
    found = await world.fhir("GET", "Subscription", by=GP)
    assert found.json()["entry"] == []
    found = await world.fhir("GET", "Subscription", by=BUP)
    assert [e["resource"]["id"] for e in found.json()["entry"]] == [sub_id]
    # a write operation is not reached with GET, nor a read one refused with POST
    parameters = {"resourceType": "Parameters"}
    reply = await world.fhir("POST", f"Subscription/{sub_id}/$status", parameters, by=BUP)
    assert reply.status == 200, reply.body


async def test_filters_narrow_the_topic(subscriptions: SubscriptionWorld) -> None:
    world = subscriptions.referrals
    first, second = await world.child(), await world.child()
    by_patient = await subscriptions.partner()
    by_status = await subscriptions.partner()
    other_receiver = await subscriptions.partner()
    await subscriptions.active(subscription(
        "referral-status", endpoint=by_patient.url, filters=(f"patient=Patient/{second.id}",)
    ), BUP)  # fmt: skip
    await subscriptions.active(subscription(
        "referral-status", endpoint=by_status.url,
        filters=("Task?status=accepted,rejected", f"performer={BUP}"),
    ), BUP)  # fmt: skip
    await subscriptions.active(subscription(
        "referral-status", endpoint=other_receiver.url, filters=(f"performer={BUP2}",)
    ), BUP2)  # fmt: skip
    referrals = []
    for child in (first, second):
        referral = await world.submit(child)
        referrals.append(referral)
        assert (await world.accept(referral)).status == 200
    await by_status.wait_for_numbers(2)
    await by_patient.wait_for_numbers(3)
    await asyncio.sleep(0.5)  # anything more would have arrived by now
    assert by_status.numbers() == [1, 2]
    assert [f.split("/")[-3] for f in by_status.focus()] == [r.task_id for r in referrals]
    second_referral = referrals[1]
    assert by_patient.numbers() == [1, 2, 3]
    assert [f.split("/")[-3] for f in by_patient.focus()] == [
        second_referral.id,
        second_referral.task_id,
        second_referral.task_id,
    ]
    assert other_receiver.numbers() == []


async def test_consent_decides_at_delivery_and_withdrawal_stops_it(
    subscriptions: SubscriptionWorld,
) -> None:
    world = subscriptions.referrals
    barnevern = await subscriptions.partner()
    await subscriptions.active(subscription("referral-status", endpoint=barnevern.url), BVT)
    hidden, shared = await world.child(), await world.child()
    consent = await world.consent(shared, "informasjonsdeling", BVT)
    await world.submit(hidden)
    await world.submit(shared)
    await barnevern.wait_for_numbers(1)
    await asyncio.sleep(0.5)
    assert len(barnevern.numbers()) == 1, "no event of the child without consent"
    await subscriptions.withdraw(consent, shared, limit=1.0)  # reaches delivery within 1 s
    await world.submit(shared)
    marker = await world.child()
    await world.consent(marker, "informasjonsdeling", BVT)
    await world.submit(marker)
    await barnevern.wait_for_numbers(2)
    await asyncio.sleep(0.3)
    assert barnevern.numbers() == [1, 2], "nothing of the child after withdrawal; no gap"


async def test_replay_fills_a_gap_and_status_tells_where_delivery_stands(
    subscriptions: SubscriptionWorld,
) -> None:
    world = subscriptions.referrals
    partner = await subscriptions.partner()
    sub_id = await subscriptions.active(
        subscription("referral-status", endpoint=partner.url, filters=(f"performer={BUP}",)),
        BUP,
    )
    child = await world.child()
    referral = await world.submit(child)
    assert (await world.accept(referral)).status == 200
    await partner.wait_for_numbers(3)
    status = await subscriptions.status(sub_id, by=BUP)
    assert status["type"] == "query-status"
    assert status["status"] == "active"
    assert status["eventsSinceSubscriptionStart"] == "3"
    assert "error" not in status
    replay = await subscriptions.events(
        sub_id, by=BUP, query="?eventsSinceNumber=2&eventsUntilNumber=3&content=full-resource"
    )
    assert replay.status == 200, replay.body
    bundle = replay.json()
    replayed = bundle["entry"][0]["resource"]
    assert replayed["type"] == "query-event"
    assert [e["eventNumber"] for e in replayed["notificationEvent"]] == ["2", "3"]
    assert [e["resource"]["status"] for e in bundle["entry"][1:]] == ["received", "accepted"]
    everything = await subscriptions.events(sub_id, by=BUP)
    assert _numbers(everything.json()) == [1, 2, 3]
    for query in ("?eventsSinceNumber=x", "?eventsSinceNumber=3&eventsUntilNumber=1",
                  "?content=everything", "?eventsSinceNumber=%C2%B2",
                  "?eventsSinceNumber=9223372036854775808"):  # fmt: skip
        reply = await subscriptions.events(sub_id, by=BUP, query=query)
        assert reply.status == 400, (query, reply.body)
    beyond = await subscriptions.events(sub_id, by=BUP, query="?eventsSinceNumber=4")
    assert beyond.status == 200 and len(beyond.json()["entry"]) == 1, "nothing yet, no error"


async def test_off_stops_and_reactivation_handshakes_again(
    subscriptions: SubscriptionWorld,
) -> None:
    world = subscriptions.referrals
    partner = await subscriptions.partner()
    body = subscription("referral-status", endpoint=partner.url, filters=(f"performer={BUP}",))
    sub_id = await subscriptions.active(body, BUP)
    stored = await subscriptions.subscription(sub_id, by=BUP)
    stored["status"] = "off"
    reply = await world.fhir("PUT", f"Subscription/{sub_id}", stored, by=BUP)
    assert reply.status == 200 and reply.json()["status"] == "off", reply.body
    await world.submit(await world.child())
    await asyncio.sleep(0.6)
    assert partner.numbers() == []
    stored = reply.json()
    stored["status"] = "active"  # the server decides: a handshake first
    reply = await world.fhir("PUT", f"Subscription/{sub_id}", stored, by=BUP)
    assert reply.json()["status"] == "requested", reply.body
    await subscriptions.wait_for_status(sub_id, "active", by=BUP)
    assert [r.kind for r in partner.received] == ["handshake", "handshake"]
    await world.submit(await world.child())
    assert await partner.wait_for_numbers(1) == [1]
    assert (await world.fhir("DELETE", f"Subscription/{sub_id}", by=BUP)).status in (200, 204)
    assert (await world.fhir("GET", f"Subscription/{sub_id}", by=BUP)).status in (404, 410)
    await world.submit(await world.child())
    await asyncio.sleep(0.5)
    assert partner.numbers() == [1], "a deleted subscription takes no more events"


async def test_heartbeats_while_nothing_happens(subscriptions: SubscriptionWorld) -> None:
    partner = await subscriptions.partner()
    await subscriptions.active(
        subscription("institution-registered", endpoint=partner.url, heartbeat=1),
        BUP,
    )

    async def two_heartbeats() -> bool:
        return sum(r.kind == "heartbeat" for r in partner.received) >= 2

    await wait_for(two_heartbeats, limit=6)
    assert all(r.signed for r in partner.received)


async def test_an_institution_registered_reaches_every_subscriber_of_its_municipality(
    subscriptions: SubscriptionWorld,
) -> None:
    from tests.support import organisation

    partner = await subscriptions.partner()
    elsewhere = await subscriptions.partner()
    await subscriptions.active(subscription(
        "institution-registered", endpoint=partner.url, filters=("municipality=0301",)
    ), BUP)  # fmt: skip
    await subscriptions.active(subscription(
        "institution-registered", endpoint=elsewhere.url, filters=("municipality=4601",)
    ), BUP)  # fmt: skip
    stack = subscriptions.referrals.stack
    reply = await stack.call(
        "POST", "Organization",
        organisation("barneverninstitusjon", "Nytt barnehjem", "910000071", "0301"),
        token=stack.operator_token(),
    )  # fmt: skip
    assert reply.status == 201, reply.body
    await partner.wait_for_numbers(1)
    assert partner.focus()[0].split("/")[-3] == reply.json()["id"]
    await asyncio.sleep(0.3)
    assert elsewhere.numbers() == []


async def test_the_nats_channel_puts_notifications_on_the_partners_subject(
    subscriptions: SubscriptionWorld,
) -> None:
    import nats
    from nats.js.api import ConsumerConfig

    world = subscriptions.referrals
    settings = subscriptions.settings
    sub_id = await subscriptions.subscribe(
        subscription("referral-status", channel="nats", secret=None,
                     filters=(f"performer={BUP}",)),
        by=BUP,
    )  # fmt: skip
    stored = await subscriptions.subscription(sub_id, by=BUP)
    subject = f"{settings.nats_prefix}.partner.{BUP}"
    assert any(e["valueString"] == subject for e in stored["channel"]["extension"])
    await subscriptions.wait_for_status(sub_id, "active", by=BUP)
    child = await world.child()
    await world.accept(await world.submit(child))
    nc = await nats.connect(settings.nats_url)
    try:
        js = nc.jetstream()
        reader = await js.pull_subscribe(
            subject, durable="bup-epj", stream=settings.partner_stream_name,
            config=ConsumerConfig(filter_subject=subject),
        )  # fmt: skip
        bundles: list[dict[str, Any]] = []

        async def three_events() -> bool:
            try:
                messages = await reader.fetch(10, timeout=0.5)
            except Exception:
                messages = []
            for message in messages:
                assert message.headers and message.headers[SUBSCRIPTION_HEADER] == sub_id
                bundles.append(json.loads(message.data))
                await message.ack()
            numbers = [n for b in bundles for n in _numbers(b)]
            return len(numbers) >= 3

        await wait_for(three_events)
        kinds = [b["entry"][0]["resource"]["type"] for b in bundles]
        assert kinds[0] == "handshake"
        assert [n for b in bundles for n in _numbers(b)] == [1, 2, 3]
    finally:
        await nc.close()


def _numbers(bundle: dict[str, Any]) -> list[int]:
    status = bundle["entry"][0]["resource"]
    return [int(e["eventNumber"]) for e in status.get("notificationEvent", [])]


async def test_nothing_after_the_subscriptions_end(subscriptions: SubscriptionWorld) -> None:
    world = subscriptions.referrals
    ended, open_ended = await subscriptions.partner(), await subscriptions.partner()
    body = subscription("referral-status", endpoint=ended.url, filters=(f"performer={BUP}",))
    body["end"] = "2026-01-01T00:00:00Z"
    await subscriptions.active(body, BUP)
    await subscriptions.active(
        subscription("referral-status", endpoint=open_ended.url, filters=(f"performer={BUP}",)),
        BUP,
    )
    await world.submit(await world.child())
    await open_ended.wait_for_numbers(1)
    await asyncio.sleep(0.3)
    assert ended.numbers() == []


async def test_the_reading_operations_need_the_read_scope_whatever_the_method(
    subscriptions: SubscriptionWorld,
) -> None:
    """`$status` and `$events` only read: POST and HEAD need the read scope as GET does,
    and a scope to update Subscriptions does not reach them."""
    world = subscriptions.referrals
    partner = await subscriptions.partner()
    body = subscription("referral-status", endpoint=partner.url, filters=(f"performer={BUP}",))
    sub_id = await subscriptions.active(body, BUP)
    updating = world.token(BUP, scope="system/Subscription.u")
    reading = world.token(BUP, scope="system/Subscription.r")
    empty = {"resourceType": "Parameters"}
    for operation in ("$status", "$events"):
        path = f"Subscription/{sub_id}/{operation}"
        for method, payload in (("GET", None), ("HEAD", None), ("POST", empty)):
            refused = await world.fhir(method, path, payload, by=BUP, token=updating)
            assert refused.status == 403, (method, operation, refused.status)
            allowed = await world.fhir(method, path, payload, by=BUP, token=reading)
            assert allowed.status == 200, (method, operation, allowed.status, allowed.body)


async def test_a_reading_operation_refuses_what_it_does_not_take_for_every_id(
    subscriptions: SubscriptionWorld,
) -> None:
    """A malformed body or an unknown parameter is a 400, the same for the caller's own
    Subscription and for one that does not exist."""
    world = subscriptions.referrals
    partner = await subscriptions.partner()
    body = subscription("referral-status", endpoint=partner.url, filters=(f"performer={BUP}",))
    own = await subscriptions.active(body, BUP)
    answers = []
    for res_id in (own, "no-such-subscription"):
        for method, path, payload in (
            ("POST", f"Subscription/{res_id}/$status", None),
            ("GET", f"Subscription/{res_id}/$events?foo=bar", None),
            ("GET", f"Subscription/{res_id}/$status?content=full-resource", None),
            ("GET", f"Subscription/{res_id}/$events?content=everything", None),
        ):
            headers = {"Content-Type": "application/fhir+json"}
            raw = b"{bad json" if method == "POST" else None
            reply = await world.stack.call(
                method, path, payload, token=world.token(BUP), headers=headers, raw=raw
            )
            answers.append((path.split("/", 2)[2], reply.status, reply.body))
    assert all(status == 400 for _, status, _ in answers), answers
    half = len(answers) // 2
    assert [(p, b) for p, _, b in answers[:half]] == [(p, b) for p, _, b in answers[half:]]


async def test_a_partner_header_cannot_change_how_a_notification_travels(
    subscriptions: SubscriptionWorld,
) -> None:
    partner = await subscriptions.partner()
    world = subscriptions.referrals
    for header in ("Upgrade: h2c", "TE: trailers", "Keep-Alive: 5", "Expect: 100-continue",
                   "Proxy-Authorization: Basic eA==", "X-Forwarded-For: 10.0.0.1",
                   "Forwarded: for=10.0.0.1", "X-Note: æøå", "Proxy-Foo: x",
                   "X-Forwarded-Client-Cert: By=spiffe://x", "x-forwarded-port: 1",
                   "X-Real-IP: 10.0.0.1", "Content-Encoding: gzip",
                   "X-Barnebro-Own: 1"):  # fmt: skip
        body = subscription("referral-status", endpoint=partner.url)
        body["channel"]["header"] = [header]
        reply = await world.fhir("POST", "Subscription", body, by=BUP)
        assert reply.status == 422, (header, reply.status, reply.body)
        assert "Subscription.channel.header" in reply.body.decode(), reply.body
    accepted = subscription("referral-status", endpoint=partner.url)
    accepted["channel"]["header"] = ["Authorization: Bearer partner-token"]
    assert (await world.fhir("POST", "Subscription", accepted, by=BUP)).status == 201


async def test_an_endpoint_every_url_parser_reads_alike(subscriptions: SubscriptionWorld) -> None:
    """An endpoint that parsers could read with different hosts is refused, so the host
    checked is the host connected to."""
    world = subscriptions.referrals
    for endpoint in (
        "https://127.0.0.1[2606:4700::1]/hook",
        "https://[2606:4700::1].127.0.0.1/hook",
        "https://[2606:4700::1]127.0.0.1/hook",
        "https://[2606:4700::1]x/hook",
        "https://[2606:4700::1]:0/hook",
        "https://[2606:4700::1%25eth0]/hook",
        "https://@[2606:4700::1]/hook",
        "https://:@[2606:4700::1]/hook",
    ):
        body = subscription("referral-status", endpoint=endpoint)
        reply = await world.fhir("POST", "Subscription", body, by=BUP)
        assert reply.status == 422, (endpoint, reply.status, reply.body)
        assert "Subscription.channel.endpoint" in reply.body.decode(), reply.body


async def test_a_header_list_is_short_and_names_each_header_once(
    subscriptions: SubscriptionWorld,
) -> None:
    world = subscriptions.referrals
    partner = await subscriptions.partner()
    for headers in (
        [f"X-Note-{n}: x" for n in range(21)],
        ["Authorization: Bearer a", "authorization: Bearer b"],
    ):
        body = subscription("referral-status", endpoint=partner.url)
        body["channel"]["header"] = headers
        reply = await world.fhir("POST", "Subscription", body, by=BUP)
        assert reply.status == 422, (headers[:2], reply.status, reply.body)
