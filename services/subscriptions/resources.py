"""The FHIR types of the subscriptions service: `Subscription` (partners write their own)
and `SubscriptionTopic` (the fixed catalogue, read-only).

A Subscription is its owner's alone: it is kept under the data category `subscription`
with no patient, so the consent step shows it only to the organisation that made it (its
endpoint and headers may carry credentials). Only an organisation may subscribe, for
itself, and only to a topic whose resources its token may read. A partner sets `status`
to `off` to stop, and anything else (re)activates it: a new handshake, then delivery
from where it stopped. `active` and `error` are the server's to set.
"""

from __future__ import annotations

from typing import Any

from services.subscriptions.channels import partner_subject
from services.subscriptions.domain.settings import channel_type, read_settings
from services.subscriptions.domain.vocabulary import NATS
from services.subscriptions.queue import DeliveryQueue
from shared.access.permissions import permits
from shared.auth.scopes import granted
from shared.fhir.definitions import Change, ResourceDefinition, WriteContext
from shared.fhir.elements import set_extension
from shared.fhir.errors import Issue, error
from shared.fhir.extensions import SUBSCRIPTION_NATS_SUBJECT
from shared.fhir.search_params import ParamType, SearchParam
from shared.rules import refuse
from shared.transport.egress import EgressPolicy, Refused
from shared.transport.wire import Caller

SUBSCRIPTION_CATEGORY = "subscription"
NATS_SUBJECT_EXT = SUBSCRIPTION_NATS_SUBJECT.url
BACKPORT_OPERATIONS = "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/"
TOPIC_WRITER = "the subscriptions service (the topics are fixed)"


class SubscriptionDefinition(ResourceDefinition):
    resource_type = "Subscription"
    documentation = (
        "A partner's topic-based subscription (R5 Backport on R4B): topic in criteria,"
        " backport-filter-criteria, channel rest-hook or nats, payload content, heartbeat,"
        " timeout, max count; readable only by the organisation that made it"
    )
    data_category = SUBSCRIPTION_CATEGORY
    operations = (
        ("status", BACKPORT_OPERATIONS + "backport-subscription-status"),
        ("events", BACKPORT_OPERATIONS + "backport-subscription-events"),
    )
    search_params = (
        SearchParam(
            "url",
            ParamType.TOKEN,
            ("channel.endpoint",),
            "The endpoint notifications go to. R4B's Subscription has no identifier: a"
            " create is repeated safely as `If-None-Exist: url=<endpoint>&criteria=<topic>`",
        ),
        SearchParam("status", ParamType.TOKEN, ("status",), "requested, active, error or off"),
        SearchParam("criteria", ParamType.TOKEN, ("criteria",), "The topic's canonical URL"),
        SearchParam("type", ParamType.TOKEN, ("channel.type",), "The channel type"),
    )

    def __init__(
        self, queue: DeliveryQueue, prefix: str, allow_http: bool, policy: EgressPolicy
    ) -> None:
        self._queue = queue
        self._prefix = prefix
        self._allow_http = allow_http
        self._policy = policy

    def prepare(self, resource: dict[str, Any], caller: Caller) -> list[Issue]:
        if caller.fhir_user or not caller.orgnr:
            raise error(
                403,
                "forbidden",
                "Only an organisation subscribes, for itself: the token names no organisation",
            )
        settings, problems = read_settings(resource, allow_http=self._allow_http)
        refuse(problems)
        assert settings is not None
        types = settings.topic.resource_types
        missing = [t for t in types if not granted(caller.scopes, t, "r")]
        if missing:
            needed = ", ".join(f"system/{t}.r" for t in missing)
            raise error(
                403,
                "forbidden",
                f"Topic {settings.topic.url} tells of {', '.join(types)}; the token may not"
                f" read {', '.join(missing)} ({needed} is needed)",
            )
        refused = [t for t in types if not permits(caller, t, "read")]
        if refused:
            raise error(
                403,
                "forbidden",
                f"Topic {settings.topic.url} tells of {', '.join(refused)}, which an"
                f" organisation of kind {caller.org_kind} may not read (see the permission"
                " table)",
            )
        return []

    async def check_write(self, resource: dict[str, Any], context: WriteContext) -> list[Issue]:
        before = context.before
        if before is not None and before.get("criteria") != resource.get("criteria"):
            raise error(
                422,
                "business-rule",
                "The topic of a Subscription cannot change (events already queued belong to"
                " the old one): create a new Subscription",
                "Subscription.criteria",
            )
        endpoint = (resource.get("channel") or {}).get("endpoint")
        if isinstance(endpoint, str):
            try:
                await self._policy.check_url(endpoint)
            except Refused as exc:
                raise error(422, "value", str(exc), "Subscription.channel.endpoint") from exc
        resource["status"] = "off" if resource.get("status") == "off" else "requested"
        resource.pop("error", None)
        channel = resource.setdefault("channel", {})
        if channel_type(channel) == NATS:  # `prepare` has checked the rest
            owner = context.author or context.request.caller.orgnr or ""
            set_extension(
                channel, NATS_SUBJECT_EXT, "valueString", partner_subject(self._prefix, owner)
            )
        return []

    async def after_write(self, change: Change, context: WriteContext) -> None:
        if change.after is None:
            await self._queue.stop(context.conn, change.resource_id)
            return
        caller = context.request.caller
        await self._queue.sync(
            context.conn,
            change.resource_id,
            context.author or caller.orgnr or "",
            caller.org_kind,
            change.after,
            restart=change.after.get("status") == "requested",
            resumed=(change.before or {}).get("status") == "off",
        )


class SubscriptionTopicDefinition(ResourceDefinition):
    resource_type = "SubscriptionTopic"
    documentation = "The topics partners subscribe to (DOMAIN §8), with their filters"
    written_by = TOPIC_WRITER
    search_params = (
        SearchParam("url", ParamType.TOKEN, ("url",), "The topic's canonical URL"),
        SearchParam("status", ParamType.TOKEN, ("status",), "Always active"),
        SearchParam("title", ParamType.STRING, ("title",), "The topic's name"),
    )


def subscription_definitions(
    queue: DeliveryQueue, prefix: str, allow_http: bool, policy: EgressPolicy
) -> list[ResourceDefinition]:
    return [
        SubscriptionDefinition(queue, prefix, allow_http, policy),
        SubscriptionTopicDefinition(),
    ]
