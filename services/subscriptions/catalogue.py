"""Publishing the topic catalogue as SubscriptionTopic resources at start-up: created when
missing, updated when the code's topic has changed, left alone otherwise. Instances that
start together take turns (a transaction lock), so each topic is written once."""

from __future__ import annotations

from services.subscriptions.domain.topics import TOPICS, topic_resource
from services.subscriptions.status import own_request
from shared.fhir.interactions import FhirService
from shared.store.outbox import lock_patient

CATALOGUE_LOCK = "subscription-topic-catalogue"


async def publish_topics(fhir: FhirService, base_url: str) -> int:
    """Write the topics that differ from the stored ones; how many were written."""
    request = own_request(base_url)
    written = 0
    async with fhir.db.transaction() as conn:
        await lock_patient(conn, CATALOGUE_LOCK)
        for topic in TOPICS:
            wanted = topic_resource(topic)
            stored = await fhir.store.read_for_update(conn, "SubscriptionTopic", topic.key)
            if stored is not None and not stored.deleted:
                current = {k: v for k, v in stored.json().items() if k != "meta"}
                if current == wanted:
                    continue
            await fhir.save(conn, request, wanted, previous=stored)
            written += 1
    if written:
        fhir.notify_commit()
    return written
