"""Sending a notification Bundle to a partner: HTTP POST (rest-hook) or the partner's
subject in the partner stream (nats). A channel answers None when the partner has the
notification, or why it does not; it never raises for a partner's failure.

rest-hook: `Content-Type: application/fhir+json`, the signature header, the subscription
id, the partner's own headers; any 2xx is success, and nothing is followed (a redirect is
a failure to fix in the subscription, not a hop to take). nats: a JetStream publish to
`<prefix>.partner.<orgnr>` with a message id that repeats for a repeated notification,
so JetStream drops the duplicate; the partner reads it with its own durable consumer.
"""

from __future__ import annotations

import time

import aiohttp
from nats.aio.client import Client as NATS

from services.subscriptions.domain.settings import SubscriptionSettings
from services.subscriptions.domain.signature import sign
from services.subscriptions.domain.vocabulary import SIGNATURE_HEADER, SUBSCRIPTION_HEADER
from shared.fhir.resources import FHIR_JSON
from shared.transport.egress import EgressPolicy, Refused, pinned_connector

MAX_REASON = 300


def partner_subject(prefix: str, orgnr: str) -> str:
    return f"{prefix}.partner.{orgnr}"


def partner_subjects(prefix: str) -> str:
    return f"{prefix}.partner.>"


class RestHook:
    """Posts notifications to partners' endpoints: public addresses only, unless the
    operator allows one (`EgressPolicy`), connecting to exactly the addresses checked and
    following no redirect."""

    def __init__(self, policy: EgressPolicy) -> None:
        self.policy = policy
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=pinned_connector(self.policy, limit=256, limit_per_host=16)
        )

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def send(
        self, subscription: str, settings: SubscriptionSettings, body: bytes
    ) -> str | None:
        assert self._session is not None and settings.endpoint is not None
        headers = {name: value for name, value in settings.headers}
        headers["Content-Type"] = FHIR_JSON
        headers[SUBSCRIPTION_HEADER] = subscription
        if settings.secret:
            headers[SIGNATURE_HEADER] = sign(settings.secret, body, int(time.time()))
        try:
            await self.policy.check_url(settings.endpoint)
        except Refused as exc:
            return f"The endpoint is not sent to: {exc}"[:MAX_REASON]
        try:
            async with self._session.post(
                settings.endpoint,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=settings.timeout),
                allow_redirects=False,
            ) as response:
                await response.read()
                if 200 <= response.status < 300:
                    return None
                return f"The endpoint answered HTTP {response.status}"
        except TimeoutError:
            return f"The endpoint did not answer within {settings.timeout} s"
        except aiohttp.ClientError as exc:
            return f"The endpoint could not be reached: {exc}"[:MAX_REASON]
        except Exception as exc:  # whatever it is, it counts as a failure the partner sees
            return f"The notification could not be sent: {exc!r}"[:MAX_REASON]


class NatsChannel:
    def __init__(self, nc: NATS, prefix: str, timeout: float) -> None:
        self._js = nc.jetstream()
        self._prefix = prefix
        self._timeout = timeout

    async def send(self, subscription: str, orgnr: str, message_id: str, body: bytes) -> str | None:
        try:
            await self._js.publish(
                partner_subject(self._prefix, orgnr),
                body,
                headers={"Nats-Msg-Id": message_id, SUBSCRIPTION_HEADER: subscription},
                timeout=self._timeout,
            )
        except Exception as exc:
            return f"The partner stream did not take the notification: {exc!r}"[:MAX_REASON]
        return None
