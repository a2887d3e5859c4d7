"""What a service has read of the register of organisations, kept until the register changes.

Writes that name an organisation ask the directory what it is: registered, in use, of which
kind, under which HER-id (a referral submit asks four or five times). The register changes
rarely and only by the operator, so a service keeps the directory's answers to its reads
and searches of Organizations instead of asking over NATS each time (`RegisterSender`,
beneath its directory client):

- an answer is kept for a minute, "not found" or "no match" for a second;
- an answer is forgotten as soon as the directory reports a change to an Organization it
  holds, and every "not found" at any change (it may be a registration). It reports it
  twice: on `<prefix>.register.changed` after the commit and
  before it answers the writer (`announce_register_change`), so the writer's next
  request already meets the change, and with the Organization's events from its outbox;
  if both reports are lost (a reconnect), the change takes effect within the minute. The
  gateway keeps callers' kinds the same way (`services.gateway.callers`);
- an answer that was under way when a change to one of its Organizations was reported is
  not kept (the latest changes are remembered with a count), so nothing older than the
  change is kept;
- a failing directory (an error, a timeout, any other status) is never kept: the next
  request asks again;
- at most `MAX_ANSWERS` answers are kept (searches can name any HER-id), then all are
  dropped.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from nats.aio.client import Client as NATS

from shared.transport.forwarding import Sender
from shared.transport.wire import FhirRequest, FhirResponse

log = logging.getLogger(__name__)

Answer = tuple[int, bytes]
"""The directory's status and body."""
ANNOUNCE_TIMEOUT = 1
MAX_ANSWERS = 10_000
RECENT_CHANGES = 256
KEPT = ("read", "search")
"""The interactions on Organizations whose answers are kept."""
FOUND_SECONDS = 60.0
MISSED_SECONDS = 1.0


_changed: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar(
    "register_changed", default=frozenset()
)


def register_changed_subject(prefix: str) -> str:
    return f"{prefix}.register.changed"


def note_register_change(res_id: str) -> None:
    """Remember, for this request, that its unit of work changes the Organization `res_id`."""
    _changed.set(_changed.get() | {res_id})


async def announce_register_change(nc: NATS, prefix: str) -> None:
    """After the commit, before the answer: if the request changed Organizations, tell
    every service to forget what it kept of them (flushed, so the server has passed it on
    before the writer hears its answer)."""
    changed = _changed.get()
    if not changed:
        return
    _changed.set(frozenset())
    try:
        await nc.publish(register_changed_subject(prefix), orjson.dumps(sorted(changed)))
        await nc.flush(timeout=ANNOUNCE_TIMEOUT)
    except Exception as exc:
        # The Organization's events carry the change shortly; only the shortcut failed.
        log.info("could not announce a change to the register: %r", exc)


def changed_organisations(subject: str, data: bytes) -> frozenset[str] | None:
    """The Organization ids a change report names: the announcement's list, or the event's
    `resource_id`; None (forget everything) for a report that cannot be read."""
    try:
        found = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if subject.endswith(".register.changed"):
        ids = found if isinstance(found, list) else None
    else:
        ids = [found.get("resource_id")] if isinstance(found, dict) else None
    if not ids or not all(isinstance(i, str) and i for i in ids):
        return None
    return frozenset(ids)


class OrganisationRegister:
    def __init__(
        self, found_seconds: float = FOUND_SECONDS, missed_seconds: float = MISSED_SECONDS
    ) -> None:
        self._found_seconds = found_seconds
        self._missed_seconds = missed_seconds
        self._answers: dict[Any, tuple[float, Answer, frozenset[str]]] = {}
        """key → (expiry, answer, the ids of the Organizations it holds; none: a miss)."""
        self._generation = 0
        self._recent: collections.deque[tuple[int, frozenset[str] | None]] = collections.deque(
            maxlen=RECENT_CHANGES
        )
        """The latest changes (generation, Organization ids; None: all), for look-ups that
        were under way while they came."""
        self._subscriptions: list[Any] = []

    async def follow(self, nc: NATS, prefix: str) -> None:
        async def changed(message: Any) -> None:
            self.forget(changed_organisations(message.subject, message.data))

        self._subscriptions = [
            await nc.subscribe(subject, cb=changed)
            for subject in (
                register_changed_subject(prefix),
                f"{prefix}.events.directory.Organization.>",
            )
        ]

    async def stop(self) -> None:
        for subscription in self._subscriptions:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
        self._subscriptions = []

    def forget(self, changed: frozenset[str] | None = None) -> None:
        """Forget the answers that hold one of the `changed` Organizations, and every miss
        (the change may be a registration); everything when `changed` is None."""
        self._generation += 1
        self._recent.append((self._generation, changed))
        if changed is None:
            self._answers.clear()
            return
        for key, (_, _, held) in list(self._answers.items()):
            if not held or held & changed:
                del self._answers[key]

    async def answer(self, key: Any, ask: Callable[[], Awaitable[Answer]]) -> Answer:
        """The kept answer to the read or search `key`, or the directory's (`ask`)."""
        kept = self._answers.get(key)
        if kept is not None and kept[0] > time.monotonic():
            return kept[1]
        generation = self._generation
        status, body = await ask()
        kept_for = self._kept_for(status, body)
        if kept_for is not None and not self._changed_since(generation, kept_for[1]):
            if len(self._answers) >= MAX_ANSWERS:
                self._answers.clear()
            self._answers[key] = (time.monotonic() + kept_for[0], (status, body), kept_for[1])
        return status, body

    def _changed_since(self, generation: int, held: frozenset[str]) -> bool:
        """Whether a change since `generation` touches an answer holding `held`."""
        if generation == self._generation:
            return False
        if self._generation - generation > len(self._recent):
            return True
        return any(
            since > generation and (ids is None or not held or held & ids)
            for since, ids in self._recent
        )

    def _kept_for(self, status: int, body: bytes) -> tuple[float, frozenset[str]] | None:
        """How long an answer is kept and the Organizations it holds; None: not kept."""
        if status == 404:
            return self._missed_seconds, frozenset()
        if status != 200:
            return None
        found = orjson.loads(body)
        if found.get("resourceType") != "Bundle":
            return self._found_seconds, frozenset({str(found.get("id"))})
        held = frozenset(
            str((entry.get("resource") or {}).get("id"))
            for entry in found.get("entry") or []
            if (entry.get("search") or {}).get("mode") == "match"
        )
        return (self._found_seconds if held else self._missed_seconds), held


class RegisterSender:
    """A `Sender` to the directory that answers reads and searches of Organizations from
    what the register keeps, and sends everything else on."""

    def __init__(self, sender: Sender, register: OrganisationRegister) -> None:
        self._sender = sender
        self._register = register

    async def send(self, subject: str, request: FhirRequest, body: bytes) -> FhirResponse:
        if request.resource_type != "Organization" or request.interaction not in KEPT:
            return await self._sender.send(subject, request, body)

        async def ask() -> Answer:
            response = await self._sender.send(subject, request, body)
            return response.status, response.body

        status, answer = await self._register.answer(request.model_dump_json(), ask)
        return FhirResponse(status=status, body=answer)
