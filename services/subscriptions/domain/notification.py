"""The notification Bundle (R5 Backport on R4B): a `history` Bundle whose first entry is a
SubscriptionStatus saying what kind of notification it is, how many events the
subscription has had, and the number of each event it carries; then one entry per event,
with the resource (`full-resource`), only its address (`id-only`), or nothing (`empty`)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class NotifiedEvent:
    number: int
    timestamp: str
    focus: str
    """`Type/id/_history/version` of the resource the event is about."""
    resource: dict[str, Any] | None = None


def status_resource(
    *,
    subscription: str,
    topic: str,
    status: str,
    kind: str,
    events_since_start: int,
    events: list[NotifiedEvent],
    content: str,
    base_url: str,
    errors: tuple[str, ...] = (),
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "SubscriptionStatus",
        "id": str(uuid.uuid4()),
        "status": status,
        "type": kind,
        "eventsSinceSubscriptionStart": str(events_since_start),
        "subscription": {"reference": f"{base_url}/Subscription/{subscription}"},
        "topic": topic,
    }
    if events:
        notified = []
        for event in events:
            entry: dict[str, Any] = {"eventNumber": str(event.number), "timestamp": event.timestamp}
            if content != "empty":
                entry["focus"] = {"reference": f"{base_url}/{event.focus}"}
            notified.append(entry)
        resource["notificationEvent"] = notified
    if errors:
        resource["error"] = [{"text": text} for text in errors]
    return resource


def notification_bundle(
    status: dict[str, Any], events: list[NotifiedEvent], content: str, base_url: str
) -> dict[str, Any]:
    entries: list[dict[str, Any]] = [
        {
            "fullUrl": f"urn:uuid:{status['id']}",
            "resource": status,
            "request": {"method": "GET", "url": f"{status['subscription']['reference']}/$status"},
            "response": {"status": "200"},
        }
    ]
    if content != "empty":
        for event in events:
            entry: dict[str, Any] = {
                "fullUrl": f"{base_url}/{event.focus.split('/_history/')[0]}",
                "request": {"method": "PUT", "url": event.focus.split("/_history/")[0]},
                "response": {"status": "200"},
            }
            if content == "full-resource" and event.resource is not None:
                entry["resource"] = event.resource
            entries.append(entry)
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "type": "history",
        "entry": entries,
    }
