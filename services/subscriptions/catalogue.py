"""Publishing the topic catalogue as SubscriptionTopic resources at start-up: created when
missing, updated when the code's topic has changed, left alone otherwise. Instances that
start together take turns (a transaction lock), so each topic is written once."""

from __future__ import annotations

from services.subscriptions.domain.topics import TOPICS, topic_resource
from services.subscriptions.status import own_request
from shared.fhir.service import FhirService

CATALOGUE_LOCK = "subscription-topic-catalogue"


async def publish_topics(fhir: FhirService, base_url: str) -> int:
    """Write the topics that differ from the stored ones; how many were written."""
    request = own_request(base_url)
    written = 0
    async with fhir.unit_of_work(request) as uow:
        await uow.lock_patient(CATALOGUE_LOCK)
        for topic in TOPICS:
            wanted = topic_resource(topic)
            stored = await uow.read_for_update("SubscriptionTopic", topic.key)
            if stored is not None and not stored.deleted:
                current = {k: v for k, v in stored.json().items() if k != "meta"}
                if current == wanted:
                    continue
            await uow.save(wanted, previous=stored)
            written += 1
    return written
