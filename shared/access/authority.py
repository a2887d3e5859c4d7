"""A change to who holds authority over a child takes effect before its writer hears the answer.

Parental responsibility, care orders and the birth date live in the directory; the access
state every service decides on is computed from them by the consent service, which
follows the directory's events. Left to the events alone, an ex-parent's next request
could still be decided on the old state. So the directory, after committing a change
that may take authority away (an update or deletion of a RelatedPerson: parental
responsibility ended or moved; of a Patient: a care order ended, a birth date corrected),
asks the consent service to judge the child again and waits for its answer, which comes
once the child's new access state is published (`announce_authority_changes`). Each
service's view then meets it before its next decision (`shared.access.freshness`).

A new record is left to the events, which carry it within about a second: a new Patient
takes nothing from anyone, and a new RelatedPerson gives parental responsibility (a
second holder may end a consent the first gave alone when the consent service next
judges it; bulk imports create many, and would wait for every child). If the consent
service does not answer in time, the directory answers anyway (its write is done) and
the events carry the change shortly; the warning in the log says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import orjson
from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError

from shared.fhir.resources import ID_PATTERN

log = logging.getLogger(__name__)
JUDGED_AT_ONCE = 4
"""Changes judged at the same time: each holds database connections while it reads the
directory, and the consent service's clients need them too."""

_changed: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar(
    "authority_changed", default=frozenset()
)


def authority_subject(prefix: str) -> str:
    return f"{prefix}.consent.authority-changed"


def note_authority_change(patient: str) -> None:
    """Remember, for this request, that its unit of work changes authority over `patient`."""
    _changed.set(_changed.get() | {patient})


async def announce_authority_changes(nc: NATS, prefix: str, patience: float) -> None:
    """After the commit, before the answer: have the consent service publish the new access
    state of every child whose authority this request changed."""
    changed = _changed.get()
    if not changed:
        return
    _changed.set(frozenset())
    subject, named = authority_subject(prefix), orjson.dumps(sorted(changed))
    try:
        answer = await nc.request(subject, named, timeout=patience)
    except NoRespondersError:
        log.warning("no consent service heard of changed authority over %d children", len(changed))
        return
    except Exception as exc:
        log.warning("the consent service did not confirm changed authority in time: %r", exc)
        return
    if answer.data != b"ok":
        log.warning("the consent service could not judge changed authority: %r", answer.data)


Judge = Callable[[Iterable[str]], Awaitable[None]]


class AuthorityListener:
    """The consent service's side: judge each named child again (`judge`, which returns
    once the children's states are published), then answer."""

    def __init__(
        self, nc: NATS, prefix: str, judge: Judge, queue: str, at_once: int = JUDGED_AT_ONCE
    ) -> None:
        self._nc = nc
        self._subject = authority_subject(prefix)
        self._judge = judge
        self._queue = queue
        self._subscription: Any = None
        self._judging: set[asyncio.Task[None]] = set()
        self._at_once = asyncio.Semaphore(at_once)

    async def start(self) -> None:
        async def on_message(message: Any) -> None:
            # Judged beside the next: nats-py awaits a subscription's callbacks in turn.
            task = asyncio.create_task(self._answer(message))
            self._judging.add(task)
            task.add_done_callback(self._judging.discard)

        # One consent instance judges each change.
        self._subscription = await self._nc.subscribe(
            self._subject, queue=self._queue, cb=on_message
        )

    async def _answer(self, message: Any) -> None:
        """Answer `ok` once every named child is judged, or at once with what went wrong:
        the directory waits for the answer, not for a timeout."""
        try:
            named = orjson.loads(message.data)
        except orjson.JSONDecodeError:
            named = None
        if not isinstance(named, list) or not all(
            isinstance(p, str) and ID_PATTERN.fullmatch(p) for p in named
        ):
            log.warning("ignoring an unreadable authority change")
            await self._respond(message, b"unreadable")
            return
        try:
            async with self._at_once:
                await self._judge(named)
        except Exception:
            log.exception("judging changed authority failed; the events will carry it")
            await self._respond(message, b"failed")
            return
        await self._respond(message, b"ok")

    @staticmethod
    async def _respond(message: Any, answer: bytes) -> None:
        if message.reply:
            with contextlib.suppress(Exception):
                await message.respond(answer)

    async def stop(self) -> None:
        if self._subscription is not None:
            with contextlib.suppress(Exception):
                await self._subscription.unsubscribe()
        for task in list(self._judging):
            task.cancel()
