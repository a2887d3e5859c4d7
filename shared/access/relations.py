"""Relations to a child: which organisations wrote, or are named on, a record about it.

A relation is what lets an organisation see the child's own record (Patient, its
parents) and ask the consent API about it. It rests on the records every service keeps,
so it is learnt from them in two ways that agree:
- lasting: the consent service follows every service's domain events and publishes the
  relations in the child's access state (`PatientAccessState.related`), which every
  service mirrors (`services.consent.relations`);
- at once: a service that commits a write giving an organisation a relation it did not
  have tells the directory before it answers (`RelationAnnouncer`), and the directory adds
  it to its mirror until the access state has it (`ConsentView.relate`). So a client that
  writes a record about a child may use the relation in its very next request.

What counts (`related_orgs`): the author and the parties of the version written, and the
organisation acting; never a person acting for themselves, a barnebro service, the
operator or the register, and never the audit trail or a consent: an emergency access, an
hpl §33 disclosure and an active consent are bases of their own, for as long as they last
(a consent that is proposed, refused or withdrawn makes its recipients nothing).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterable
from typing import Any

import orjson
from nats.aio.client import Client as NATS

from shared.codes import AUDIT_CATEGORY

log = logging.getLogger(__name__)

NOT_A_RELATION = frozenset({"AuditEvent", "Consent", "Subscription", "SubscriptionTopic"})
ACTING_FOR_NO_ORGANISATION = frozenset({"person", "service", "operator", "register"})
ANNOUNCE_TIMEOUT = 1.0


def relations_subject(prefix: str) -> str:
    return f"{prefix}.relations"


def related_orgs(
    resource_type: str,
    category: str | None,
    author: str | None,
    parties: Iterable[str],
    actor: dict[str, Any] | None,
) -> set[str]:
    """The organisations a version of a resource about a child relates to it."""
    if resource_type in NOT_A_RELATION or category == AUDIT_CATEGORY:
        return set()
    found = set(parties)
    if author:
        found.add(author)
    if isinstance(actor, dict) and not actor.get("fhir_user"):
        credential = actor.get("credential", "organisation")
        if credential not in ACTING_FOR_NO_ORGANISATION and actor.get("orgnr"):
            found.add(str(actor["orgnr"]))
    return {orgnr for orgnr in found if orgnr.isdigit()}


_made: contextvars.ContextVar[dict[str, set[str]] | None] = contextvars.ContextVar(
    "relations_made", default=None
)


def note_relations(patient: str, orgnrs: set[str]) -> None:
    """Remember, for this request, relations a write of its unit of work makes."""
    if not orgnrs:
        return
    made = _made.get()
    if made is None:
        made = {}
        _made.set(made)
    made.setdefault(patient, set()).update(orgnrs)


def take_relations() -> dict[str, set[str]]:
    made = _made.get() or {}
    _made.set(None)
    return made


class RelationAnnouncer:
    """Tells the directory, before a write's answer leaves, of the relations it made."""

    def __init__(self, nc: NATS, prefix: str, known: Any = None) -> None:
        self._nc = nc
        self._subject = relations_subject(prefix)
        self._known = known
        """The service's consent view, if it has one: relations it already shows are not
        announced again."""

    async def announce(self, made: dict[str, set[str]]) -> None:
        news = {}
        for patient, orgnrs in made.items():
            state = self._known.state(patient) if self._known is not None else None
            new = orgnrs - set(state.related if state is not None else ())
            if new:
                news[patient] = sorted(new)
        if not news:
            return
        try:
            await self._nc.request(self._subject, orjson.dumps(news), timeout=ANNOUNCE_TIMEOUT)
        except Exception as exc:
            # The access state will carry the relation shortly; only the shortcut failed.
            log.info("the directory did not confirm new relations: %r", exc)


class RelationListener:
    """The directory's side: relations announced by the services, into its mirror."""

    def __init__(self, nc: NATS, prefix: str, view: Any) -> None:
        self._nc = nc
        self._subject = relations_subject(prefix)
        self._view = view
        self._subscription: Any = None

    async def start(self) -> None:
        async def on_message(message: Any) -> None:
            try:
                made = orjson.loads(message.data)
                for patient, orgnrs in made.items():
                    if isinstance(patient, str) and isinstance(orgnrs, list):
                        self._view.relate(patient, [str(o) for o in orgnrs])
            except (orjson.JSONDecodeError, AttributeError):
                log.warning("ignoring an unreadable relation announcement")
            if message.reply:
                await message.respond(b"ok")

        self._subscription = await self._nc.subscribe(self._subject, cb=on_message)

    async def stop(self) -> None:
        if self._subscription is not None:
            with contextlib.suppress(Exception):
                await self._subscription.unsubscribe()
