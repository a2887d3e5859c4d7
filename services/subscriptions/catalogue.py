"""Publishing the topic catalogue as SubscriptionTopic resources at start-up: created when
missing, updated when the code's topic has changed, left alone otherwise. Instances that
start together take turns (a transaction lock), so each topic is written once."""

from __future__ import annotations

from services.subscriptions.domain.topics import TOPICS, topic_resource
from services.subscriptions.status import own_request
from shared.fhir.fixed_resources import publish_fixed
from shared.fhir.service import FhirService

CATALOGUE_LOCK = "subscription-topic-catalogue"


async def publish_topics(fhir: FhirService, base_url: str) -> int:
    """Write the topics that differ from the stored ones; how many were written."""
    wanted = [topic_resource(topic) for topic in TOPICS]
    return await publish_fixed(
        fhir, own_request(base_url), CATALOGUE_LOCK, "SubscriptionTopic", wanted
    )
