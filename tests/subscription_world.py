"""A world for subscription scenarios: the referral world plus the subscriptions service
(fast retries and leases for tests), partner HTTP servers that record what they are sent
and can be made to fail, and builders for Subscriptions."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from services.stack import free_port
from services.subscriptions import subscriptions_spec
from services.subscriptions.domain.signature import verify
from services.subscriptions.domain.topics import TOPIC_BASE
from services.subscriptions.domain.vocabulary import (
    CHANNEL_TYPE_EXT,
    CHANNEL_TYPE_SYSTEM,
    FILTER_CRITERIA_EXT,
    HEARTBEAT_EXT,
    MAX_COUNT_EXT,
    PAYLOAD_CONTENT_EXT,
    SIGNATURE_HEADER,
    SIGNING_SECRET_EXT,
)
from shared.config import Settings
from shared.runtime import ServiceRuntime
from tests.referral_world import GP, Child, ReferralWorld
from tests.support import Reply, wait_for

SECRET = "s3cret-for-tests-0123456789abcdef-XYZ"
FAST = {
    "subscription_retry_first_seconds": 0.05,
    "subscription_retry_max_seconds": 0.4,
    "subscription_poll_seconds": 0.1,
    "subscription_lease_seconds": 2.0,
    "subscription_allow_http": True,
}


def subscription_settings(settings: Settings, **overrides: Any) -> Settings:
    return settings.model_copy(update={**FAST, **overrides})


@dataclass
class Received:
    """One notification a partner received."""

    headers: dict[str, str]
    body: bytes
    signed: bool

    @property
    def bundle(self) -> dict[str, Any]:
        found: dict[str, Any] = orjson.loads(self.body)
        return found

    @property
    def status(self) -> dict[str, Any]:
        resource: dict[str, Any] = self.bundle["entry"][0]["resource"]
        return resource

    @property
    def kind(self) -> str:
        return str(self.status["type"])

    @property
    def numbers(self) -> list[int]:
        return [int(e["eventNumber"]) for e in self.status.get("notificationEvent", [])]

    @property
    def focus(self) -> list[str]:
        return [e["focus"]["reference"] for e in self.status.get("notificationEvent", [])]

    @property
    def resources(self) -> list[dict[str, Any]]:
        return [e["resource"] for e in self.bundle["entry"][1:] if "resource" in e]


@dataclass
class Partner:
    """A partner's HTTP endpoint: records every POST; answers `answer` (503 to fail)."""

    secret: str = SECRET
    answer: int = 200
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)
    arrived: list[bytes] = field(default_factory=list)
    """Every request body as it arrives, before any delay or failure."""
    refused: int = 0
    port: int = 0
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        self.port = self.port or free_port()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.arrived.append(body)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.answer >= 300:
            self.refused += 1
            return web.Response(status=self.answer)
        signature = request.headers.get(SIGNATURE_HEADER, "")
        signed = verify(self.secret, body, signature, int(time.time()))
        self.received.append(Received(dict(request.headers), body, signed))
        return web.Response(status=200)

    def notifications(self) -> list[Received]:
        return [r for r in self.received if r.kind == "event-notification"]

    def numbers(self) -> list[int]:
        return [n for r in self.notifications() for n in r.numbers]

    def focus(self) -> list[str]:
        return [f for r in self.notifications() for f in r.focus]

    def resources(self) -> list[dict[str, Any]]:
        return [resource for r in self.notifications() for resource in r.resources]

    async def wait_for_numbers(self, count: int, limit: float = 15.0) -> list[int]:
        """Every number received (repeats included) once `count` different ones have."""

        async def enough() -> bool:
            return len(set(self.numbers())) >= count

        await wait_for(enough, limit)
        return self.numbers()


def subscription(
    topic: str,
    *,
    endpoint: str | None = None,
    filters: tuple[str, ...] = (),
    content: str = "id-only",
    channel: str = "rest-hook",
    secret: str | None = SECRET,
    heartbeat: int | None = None,
    max_count: int | None = None,
    headers: tuple[str, ...] = (),
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "Følge henvisninger",
        "criteria": topic if topic.startswith("http") else TOPIC_BASE + topic,
        "channel": {
            "type": "rest-hook" if channel == "rest-hook" else "message",
            "payload": "application/fhir+json",
            "_payload": {"extension": [{"url": PAYLOAD_CONTENT_EXT, "valueCode": content}]},
        },
    }
    if filters:
        body["_criteria"] = {
            "extension": [{"url": FILTER_CRITERIA_EXT, "valueString": f} for f in filters]
        }
    chan = body["channel"]
    if channel != "rest-hook":
        chan["_type"] = {
            "extension": [
                {
                    "url": CHANNEL_TYPE_EXT,
                    "valueCoding": {"system": CHANNEL_TYPE_SYSTEM, "code": channel},
                }
            ]
        }
    if endpoint is not None:
        chan["endpoint"] = endpoint
    extensions: list[dict[str, Any]] = []
    if secret is not None:
        extensions.append({"url": SIGNING_SECRET_EXT, "valueString": secret})
    if heartbeat is not None:
        extensions.append({"url": HEARTBEAT_EXT, "valueUnsignedInt": heartbeat})
    if max_count is not None:
        extensions.append({"url": MAX_COUNT_EXT, "valuePositiveInt": max_count})
    if extensions:
        chan["extension"] = extensions
    if headers:
        chan["header"] = list(headers)
    return body


@dataclass
class SubscriptionWorld:
    referrals: ReferralWorld
    service: ServiceRuntime
    partners: list[Partner] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        return self.service.settings

    async def partner(self, **options: Any) -> Partner:
        found = Partner(**options)
        await found.start()
        self.partners.append(found)
        return found

    async def subscribe(self, body: dict[str, Any], *, by: str) -> str:
        reply = await self.referrals.fhir("POST", "Subscription", body, by=by)
        assert reply.status == 201, reply.body
        return str(reply.json()["id"])

    async def active(self, body: dict[str, Any], by: str) -> str:
        """Subscribe and wait for the handshake to make the subscription active."""
        sub_id = await self.subscribe(body, by=by)
        await self.wait_for_status(sub_id, "active", by=by)
        return sub_id

    async def subscription(self, sub_id: str, *, by: str) -> dict[str, Any]:
        reply = await self.referrals.fhir("GET", f"Subscription/{sub_id}", by=by)
        assert reply.status == 200, reply.body
        found: dict[str, Any] = reply.json()
        return found

    async def wait_for_status(self, sub_id: str, status: str, by: str, limit: float = 15) -> None:
        async def reached() -> bool:
            return bool((await self.subscription(sub_id, by=by))["status"] == status)

        await wait_for(reached, limit)

    async def status(self, sub_id: str, *, by: str) -> dict[str, Any]:
        reply = await self.referrals.fhir("GET", f"Subscription/{sub_id}/$status", by=by)
        assert reply.status == 200, reply.body
        found: dict[str, Any] = reply.json()["entry"][0]["resource"]
        return found

    async def events(self, sub_id: str, *, by: str, query: str = "") -> Reply:
        return await self.referrals.fhir("GET", f"Subscription/{sub_id}/$events{query}", by=by)

    async def withdraw(self, consent: str, child: Child, limit: float = 10.0) -> None:
        """A parent withdraws the consent; waits (at most `limit` s) until this service's
        consent view has it."""
        reply = await self.referrals.consent_api(
            "POST",
            f"consents/{consent.split('/')[1]}/withdrawal",
            {"by": child.parents[0], "reason": "Vil ikke dele"},
            by=GP,
        )
        assert reply.status == 200, reply.body
        view = self.service.consent_view
        assert view is not None

        async def withdrawn() -> bool:
            state = view.state(child.id)
            return state is not None and not state.grants

        await wait_for(withdrawn, limit)

    async def failing(self, partner: Partner, attempts: int = 1) -> None:
        """Wait until `partner` has refused `attempts` notifications."""

        async def refused() -> bool:
            return partner.refused >= attempts

        await wait_for(refused)

    async def restart(self, **overrides: Any) -> None:
        """Stop the service and start a new instance (the queue is in the database)."""
        await self.service.stop()
        settings = self.settings.model_copy(update=overrides)
        self.service = ServiceRuntime(subscriptions_spec(settings), settings)
        await self.service.start()
