"""The resource of a `full-resource` notification, read from the service that owns it as
the subscribing organisation: that service's own consent step decides and audits the
release, exactly as for a read by the partner. What it will not release is not sent."""

from __future__ import annotations

from typing import Any

import orjson

from services.subscriptions.status import SERVICE_CLIENT
from shared.fhir.errors import error
from shared.transport.forwarding import Forwarder
from shared.transport.wire import Caller, FhirRequest, request_subject


def subscriber_caller(orgnr: str, kind: str | None) -> Caller:
    """The caller a notification is decided and read for: the subscribing organisation.
    (Its token could read every type of the topic when it subscribed; each read is given
    the read scope of the one type it reads.)"""
    return Caller(orgnr=orgnr, org_kind=kind, client_id=SERVICE_CLIENT)


class ResourceReader:
    def __init__(self, forwarder: Forwarder, prefix: str, base_url: str) -> None:
        self._forwarder = forwarder
        self._prefix = prefix
        self._base_url = base_url

    async def version(self, caller: Caller, focus: str) -> dict[str, Any] | None:
        """`Type/id/_history/v` as `caller` may read it; None when it may not. Raises a
        FhirError (503/504) when the owning service cannot answer: try again later."""
        resource_type, res_id, _, version = focus.split("/")
        request = FhirRequest(
            interaction="vread",
            resource_type=resource_type,
            id=res_id,
            version=version,
            base_url=self._base_url,
            caller=caller.model_copy(update={"scopes": [f"system/{resource_type}.r"]}),
        )
        response = await self._forwarder.send(
            request_subject(self._prefix, resource_type), request, b""
        )
        if response.status == 200 and response.body:
            found: dict[str, Any] = orjson.loads(response.body)
            return found
        if response.status in (403, 404, 410):
            return None
        raise error(503, "transient", f"{focus} could not be read ({response.status})")
