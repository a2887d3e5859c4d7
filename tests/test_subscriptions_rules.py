"""The rules of subscriptions without I/O: topic resources and filters, criteria,
settings, the retry schedule, signatures and the notification Bundle, each checked
against the FHIR R4B models where it is FHIR."""

from __future__ import annotations

import random
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.subscription import Subscription
from fhir.resources.R4B.subscriptiontopic import SubscriptionTopic

from services.subscriptions.domain.criteria import matches, parse_criteria
from services.subscriptions.domain.notification import (
    NotifiedEvent,
    notification_bundle,
    status_resource,
)
from services.subscriptions.domain.retry import RetryPolicy
from services.subscriptions.domain.settings import read_settings
from services.subscriptions.domain.signature import sign, verify
from services.subscriptions.domain.topics import BY_URL, TOPIC_BASE, TOPICS, topic_resource
from shared.events import DomainEvent
from tests.subscription_world import SECRET, subscription

REFERRAL = BY_URL[TOPIC_BASE + "referral-status"]


def event(kind: str, patient: str | None = "p1", **data: Any) -> DomainEvent:
    service, resource_type, _ = kind.split(".")
    return DomainEvent(
        type=kind, source=service, resource_type=resource_type, resource_id="r1",
        version_id="2", patient=patient, data=data,
    )  # fmt: skip


@pytest.mark.parametrize("topic", TOPICS, ids=lambda t: t.key)
def test_every_topic_is_a_valid_subscription_topic(topic: Any) -> None:
    resource = topic_resource(topic)
    SubscriptionTopic.model_validate(resource)
    filters = {f["filterParameter"] for f in resource["canFilterBy"]}
    assert {"patient", "event"} <= filters
    assert resource["url"] == TOPIC_BASE + topic.key
    assert resource["resourceTrigger"], "every topic is raised by some event"


MATCHING = [
    ([], event("referral.Task.accepted"), True),
    ([], event("referral.Task.updated"), False),  # not a trigger of the topic
    (["patient=Patient/p1"], event("referral.Task.accepted"), True),
    (["patient=p1"], event("referral.Task.accepted"), True),
    (["patient=Patient/p2"], event("referral.Task.accepted"), False),
    (["patient=Patient/p1"], event("referral.Task.accepted", patient=None), False),
    (["status=accepted,rejected"], event("referral.Task.rejected", status="rejected"), True),
    (["status=accepted"], event("referral.Task.rejected", status="rejected"), False),
    (["Task?performer=910000012&status=accepted"],
     event("referral.Task.accepted", status="accepted", performer="910000012"), True),
    (["performer=910000012", "requester=889640782"],
     event("referral.Task.accepted", performer="910000012", requester="1"), False),
    (["event=submitted"], event("referral.ServiceRequest.submitted"), True),
    (["event=submitted"], event("referral.Task.accepted"), False),
]  # fmt: skip


@pytest.mark.parametrize(("texts", "happened", "expected"), MATCHING)
def test_criteria_match_events(texts: list[str], happened: DomainEvent, expected: bool) -> None:
    criteria, problems = parse_criteria(REFERRAL, texts)
    assert problems == []
    assert matches(REFERRAL, criteria, happened) is expected


def test_team_filters_read_members_and_the_participant() -> None:
    topic = BY_URL[TOPIC_BASE + "coordinator"]
    criteria, _ = parse_criteria(topic, ["organization=910000012", "role=koordinator"])
    happened = event(
        "careplan.CareTeam.coordinator-assigned",
        members=["974760673", "910000012"],
        participant={"role": "koordinator", "organization": "974760673"},
    )
    assert matches(topic, criteria, happened)
    criteria, _ = parse_criteria(topic, ["role=barnekoordinator"])
    assert not matches(topic, criteria, happened)


def test_https_is_required_unless_allowed() -> None:
    body = subscription("referral-status", endpoint="http://partner.example/hook")
    settings, problems = read_settings(body, allow_http=False)
    assert settings is None
    assert "absolute https URL" in problems[0].message
    settings, problems = read_settings(body, allow_http=True)
    assert settings is not None and problems == []
    Subscription.model_validate(body)


def test_settings_defaults_and_bounds() -> None:
    body = subscription("referral-status", endpoint="https://partner.example/hook")
    settings, _ = read_settings(body, allow_http=False)
    assert settings is not None
    assert (settings.content, settings.timeout, settings.max_count, settings.heartbeat) == (
        "id-only", 10, 20, None,
    )  # fmt: skip
    assert settings.secret == SECRET
    too_many = subscription("referral-status", endpoint="https://p.example/h", max_count=501)
    _, problems = read_settings(too_many, allow_http=False)
    assert "backport-max-count must be 1 to 500" in problems[0].message


def test_retries_back_off_with_jitter_up_to_the_ceiling() -> None:
    policy = RetryPolicy(first=1.0, ceiling=600.0, give_up_after=24 * 3600)
    rng = random.Random(7)
    for failures in range(1, 40):
        base = min(600.0, 2.0 ** (failures - 1))
        delay = policy.delay(failures, rng.random())
        assert base / 2 <= delay <= base
    assert policy.delay(1, 0.0) == 0.5 and policy.delay(1, 0.999) < 1.0
    assert policy.delay(10_000, 0.5) <= 600.0
    assert not policy.in_error(23 * 3600) and policy.in_error(24 * 3600)


def test_signatures_verify_and_refuse_tampering_and_replay() -> None:
    body = b'{"resourceType":"Bundle"}'
    header = sign(SECRET, body, 1_700_000_000)
    assert verify(SECRET, body, header, 1_700_000_100)
    assert not verify(SECRET, body + b" ", header, 1_700_000_100)
    assert not verify("another-secret-another-secret-xx", body, header, 1_700_000_100)
    assert not verify(SECRET, body, header, 1_700_000_000 + 301), "too old"
    assert not verify(SECRET, body, "t=x,v1=00", 1_700_000_000)
    assert not verify(SECRET, body, "", 1_700_000_000)


@pytest.mark.parametrize("content", ["empty", "id-only", "full-resource"])
def test_the_notification_is_a_valid_history_bundle(content: str) -> None:
    task = {"resourceType": "Task", "id": "t1", "status": "accepted", "intent": "order",
            "meta": {"versionId": "3"}}  # fmt: skip
    events = [NotifiedEvent(7, "2026-11-24T10:00:00+00:00", "Task/t1/_history/3", task)]
    status = status_resource(
        subscription="s1", topic=REFERRAL.url, status="active", kind="event-notification",
        events_since_start=7, events=events, content=content, base_url="https://x/fhir",
    )  # fmt: skip
    bundle = notification_bundle(status, events, content, "https://x/fhir")
    Bundle.model_validate(bundle)
    assert bundle["type"] == "history"
    first = bundle["entry"][0]["resource"]
    assert first["resourceType"] == "SubscriptionStatus"
    assert first["eventsSinceSubscriptionStart"] == "7"
    assert first["notificationEvent"][0]["eventNumber"] == "7"
    assert len(bundle["entry"]) == (1 if content == "empty" else 2)
    assert ("focus" in first["notificationEvent"][0]) is (content != "empty")
    carried = [entry for entry in bundle["entry"][1:] if "resource" in entry]
    assert len(carried) == (1 if content == "full-resource" else 0)
