"""The status a partner sees on its Subscription, kept in step with delivery: `requested`
until the handshake succeeds, `active` while notifications arrive, `error` (with the
reason in `Subscription.error`) when the endpoint has failed for longer than the retry
period, and `active` again as soon as a notification gets through. Written as the
service's own update of the resource, so the partner reads it and its history."""

from __future__ import annotations

from typing import Any

from shared.fhir.errors import FhirError
from shared.fhir.service import FhirService
from shared.transport.wire import Caller, FhirRequest

SERVICE_CLIENT = "barnebro-subscriptions"
SERVER_ELEMENTS = ("meta", "status", "error")


def asked(subscription: dict[str, Any]) -> dict[str, Any]:
    """What the partner asks for: the Subscription without what the server keeps."""
    return {k: v for k, v in subscription.items() if k not in SERVER_ELEMENTS}


def own_request(base_url: str) -> FhirRequest:
    """The request of the service's own writes (status changes, the topic catalogue)."""
    return FhirRequest(
        interaction="update",
        base_url=base_url,
        caller=Caller(credential="service", client_id=SERVICE_CLIENT),
    )


class StatusWriter:
    def __init__(self, fhir: FhirService, base_url: str) -> None:
        self._fhir = fhir
        self._request = own_request(base_url)

    async def change(
        self,
        subscription: str,
        expected: tuple[str, ...],
        status: str,
        reason: str | None,
        *,
        as_delivered: dict[str, Any] | None = None,
    ) -> bool:
        """Set `status` (and the error text) if the Subscription is in one of `expected`
        now and, given `as_delivered` (the Subscription the delivery worked with), still
        asks for the same: a partner's change made meanwhile (`off`, a new endpoint that
        has had no handshake) wins."""
        async with self._fhir.unit_of_work(self._request) as uow:
            stored = await uow.read_for_update("Subscription", subscription)
            if stored is None or stored.deleted:
                return False
            resource = stored.json()
            if resource.get("status") not in expected:
                return False
            if as_delivered is not None and asked(resource) != asked(as_delivered):
                return False
            resource["status"] = status
            if reason:
                resource["error"] = reason
            else:
                resource.pop("error", None)
            try:
                await uow.save(resource, previous=stored)
            except FhirError:
                return False
        return True
