"""What a service has read of the register of organisations, kept until the register changes.

Writes that name an organisation ask the directory what it is: registered, in use, of which
kind, under which HER-id (a referral submit asks four or five times). The register changes
rarely and only by the operator, so a service keeps the directory's answers to its reads
and searches of Organizations instead of asking over NATS each time:

- an answer is kept for a minute, "not found" or "no match" for a second;
- every kept answer is forgotten as soon as the directory reports a change to any
  Organization. It reports it twice: on `<prefix>.register.changed` after the commit and
  before it answers the writer (`announce_register_change`), so the writer's next
  request already meets the change, and with the Organization's events from its outbox;
  if both reports are lost (a reconnect), the change takes effect within the minute. The
  gateway keeps callers' kinds the same way (`services.gateway.callers`);
- an answer that was under way when a change was reported is not kept (a generation
  count), so nothing older than the change is remembered;
- a failing directory (an error, a timeout, any other status) is never kept: the next
  request asks again;
- at most `MAX_ANSWERS` answers are kept (searches can name any HER-id), then all are
  dropped.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from nats.aio.client import Client as NATS

log = logging.getLogger(__name__)

Answer = tuple[int, bytes]
"""The directory's status and body."""
ANNOUNCE_TIMEOUT = 1
MAX_ANSWERS = 10_000
FOUND_SECONDS = 60.0
MISSED_SECONDS = 1.0


_changed: contextvars.ContextVar[bool] = contextvars.ContextVar("register_changed", default=False)


def register_changed_subject(prefix: str) -> str:
    return f"{prefix}.register.changed"


def note_register_change() -> None:
    """Remember, for this request, that its unit of work changes an Organization."""
    _changed.set(True)


async def announce_register_change(nc: NATS, prefix: str) -> None:
    """After the commit, before the answer: if the request changed an Organization, tell
    every service to forget what it kept of the register (flushed, so the server has
    passed it on before the writer hears its answer)."""
    if not _changed.get():
        return
    _changed.set(False)
    try:
        await nc.publish(register_changed_subject(prefix), b"")
        await nc.flush(timeout=ANNOUNCE_TIMEOUT)
    except Exception as exc:
        # The Organization's events carry the change shortly; only the shortcut failed.
        log.info("could not announce a change to the register: %r", exc)


class OrganisationRegister:
    def __init__(
        self, found_seconds: float = FOUND_SECONDS, missed_seconds: float = MISSED_SECONDS
    ) -> None:
        self._found_seconds = found_seconds
        self._missed_seconds = missed_seconds
        self._answers: dict[Any, tuple[float, Answer]] = {}
        self._generation = 0
        self._subscriptions: list[Any] = []

    async def follow(self, nc: NATS, prefix: str) -> None:
        async def changed(_: Any) -> None:
            self.forget()

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

    def forget(self) -> None:
        self._generation += 1
        self._answers.clear()

    async def answer(self, key: Any, ask: Callable[[], Awaitable[Answer]]) -> Answer:
        """The kept answer to the read or search `key`, or the directory's (`ask`)."""
        kept = self._answers.get(key)
        if kept is not None and kept[0] > time.monotonic():
            return kept[1]
        generation = self._generation
        status, body = await ask()
        lifetime = self._lifetime(status, body)
        if lifetime and generation == self._generation:
            if len(self._answers) >= MAX_ANSWERS:
                self._answers.clear()
            self._answers[key] = (time.monotonic() + lifetime, (status, body))
        return status, body

    def _lifetime(self, status: int, body: bytes) -> float:
        if status == 404:
            return self._missed_seconds
        if status != 200:
            return 0.0
        found = orjson.loads(body)
        if found.get("resourceType") == "Bundle" and not any(
            (entry.get("search") or {}).get("mode") == "match" for entry in found.get("entry") or []
        ):
            return self._missed_seconds
        return self._found_seconds
