"""Each service's local mirror of the consent state, kept current by a key-value watch.

The consent service publishes one `PatientAccessState` per patient into the consent-view
bucket (through its outbox, so no change is lost and one patient's states arrive in
order). Every service watches the bucket: a withdrawal reaches every service's decisions
as soon as the watch delivers it, with no request to the consent service on the read
path. An index from recipient (organisation, kind, role, parent) to patients lets a
search find the few patients a caller may see without scanning every state. A request is
decided only once the mirror holds every revision the bucket held when it arrived
(`caught_up`, `shared.access.freshness`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection
from typing import Any

from nats.aio.client import Client as NATS
from pydantic import ValidationError

from shared.access.freshness import BucketRevision, BucketUnreadable
from shared.access.state import PatientAccessState
from shared.events import subject_token
from shared.fhir.errors import FhirError, Issue
from shared.patience import patiently
from shared.transport.service_host import ensure_bucket
from shared.transport.stopping import stop_watch

log = logging.getLogger(__name__)
LOAD_TIMEOUT = 30.0
REPLAY_PATIENCE = 10.0
"""How long a watch may take to say it has replayed every state before it is begun again:
a delivery lost while the watch was being set up (its client gives up on the set-up
after a few seconds under load) leaves it without that word for ever."""
RETRY_SECONDS = 1.0
CATCH_UP_PATIENCE = 2.0
"""How long a request waits for the watch to deliver the revisions the bucket held when it
arrived before it is refused (503): a watch that far behind is not deciding on the law
as it stands."""
MAX_WAITING = 1024


class ConsentView:
    def __init__(self, nc: NATS, bucket: str, replicas: int = 1) -> None:
        self._nc = nc
        self._bucket = bucket
        self._replicas = replicas
        self._states: dict[str, PatientAccessState] = {}
        self._index: dict[str, set[str]] = {}
        self._watcher: Any = None
        self._task: asyncio.Task[None] | None = None
        self._kv: Any = None
        self._stopping = False
        self._loaded = asyncio.Event()
        self._key_versions: dict[str, int] = {}
        self._published: dict[str, PatientAccessState] = {}
        """Each patient's state as the consent service published it."""
        self._overlay: dict[str, set[str]] = {}
        """Relations a service announced that the published state does not show yet."""
        self.listeners: list[Callable[[PatientAccessState], None]] = []
        self._revision = 0
        """The last revision of the bucket the watch has delivered (applied or not)."""
        self._replayed_through = 0
        """The bucket's last revision when the current watch began."""
        self._behind: list[tuple[int, asyncio.Future[None]]] = []
        """Requests waiting for the watch to deliver a revision."""
        self._bucket_revision = BucketRevision(nc, bucket)

    async def start(self) -> None:
        """Watch the bucket and wait until every state present at start is loaded; a watch
        that has not finished its replay within REPLAY_PATIENCE is begun again."""
        self._kv = await patiently(
            "the consent state bucket",
            lambda: ensure_bucket(self._nc.jetstream(), self._bucket, self._replicas),
        )
        self._watcher = await patiently("the consent state bucket", self._watch)
        self._task = asyncio.create_task(self._follow_for_ever())
        async with asyncio.timeout(LOAD_TIMEOUT):
            while not self._loaded.is_set():
                try:
                    async with asyncio.timeout(REPLAY_PATIENCE):
                        await self._loaded.wait()
                except TimeoutError:
                    log.warning(
                        "the consent-view watch has not finished its replay; watching again"
                    )
                    with contextlib.suppress(Exception):
                        await self._watcher.stop()  # `_follow_for_ever` then watches again

    async def stop(self) -> None:
        self._stopping = True
        await self._bucket_revision.stop()
        await stop_watch(self._watcher, self._task)

    async def caught_up(self) -> None:
        """Wait until the mirror holds every revision the bucket held at this call, so that
        a decision after it sees every change answered before the request came. Refuses
        (503) when the bucket cannot be asked or the watch does not deliver within
        CATCH_UP_PATIENCE. Nothing is waited for while the mirror is not loaded: `ready`
        refuses every decision then."""
        if not self.loaded():
            return
        try:
            async with asyncio.timeout(CATCH_UP_PATIENCE):
                target = await self._bucket_revision.last()
                if target <= self._revision:
                    return
                arrived = asyncio.get_running_loop().create_future()
                if len(self._behind) > MAX_WAITING:  # requests that gave up
                    self._behind = [w for w in self._behind if not w[1].done()]
                self._behind.append((target, arrived))
                await arrived
        except (TimeoutError, BucketUnreadable) as exc:
            log.warning("the consent view could not be brought up to date: %r", exc)
            raise FhirError(
                503,
                [Issue("transient", "Consent state is being brought up to date; retry shortly")],
                headers={"Retry-After": "1"},
            ) from None

    def _delivered(self, revision: int) -> None:
        """The watch has delivered up to `revision`: release the requests that waited for it."""
        if revision <= self._revision:
            return
        self._revision = revision
        if not self._behind:
            return
        waiting = []
        for target, arrived in self._behind:
            if target <= revision:
                if not arrived.done():
                    arrived.set_result(None)
            elif not arrived.done():
                waiting.append((target, arrived))
        self._behind = waiting

    async def _follow_for_ever(self) -> None:
        """Follow the bucket; if the watch breaks, refuse decisions (`ready`) until a new
        watch has replayed every state."""
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the consent-view watch failed")
            if self._stopping:
                return
            self._loaded.clear()
            log.warning("following the consent view again")
            await asyncio.sleep(RETRY_SECONDS)
            with contextlib.suppress(Exception):
                self._watcher = await self._watch()

    async def _watch(self) -> Any:
        """A new watch of the bucket. The bucket's last revision is read first: once the
        watch has replayed every key, the mirror holds at least that revision, even if its
        message no longer exists (a stream purge) and so is never delivered. Revisions
        count again from the replay (a bucket made anew starts again at 1)."""
        self._replayed_through = 0
        with contextlib.suppress(BucketUnreadable):
            self._replayed_through = await self._bucket_revision.last()
        self._revision = 0
        return await self._kv.watchall()

    async def _follow(self) -> None:
        async for entry in self._watcher:
            if entry is None:  # every state present at start has been delivered
                self._delivered(self._replayed_through)
                self._loaded.set()
                continue
            try:
                self._take(entry)
            finally:
                self._delivered(entry.revision or 0)

    def _take(self, entry: Any) -> None:
        """Apply one delivered entry of the bucket."""
        if entry.operation in ("DEL", "PURGE"):
            self.remove(entry.key)
            return
        if not entry.value:
            return
        try:
            state = PatientAccessState.model_validate_json(entry.value)
        except ValidationError:
            log.error("ignoring an unreadable consent state under %s", entry.key)
            return
        self.apply(state)

    def relate(self, patient: str, orgnrs: list[str]) -> None:
        """Relations a service has just made (`shared.access.relations`): shown with the
        patient's state until a state the consent service publishes has them."""
        published = self._published.get(patient) or PatientAccessState(patient=patient)
        pending = self._overlay.setdefault(patient, set())
        new = set(orgnrs) - set(published.related) - pending
        if new:
            pending.update(new)
            self._install(published)
        elif not pending:
            del self._overlay[patient]

    def apply(self, state: PatientAccessState) -> None:
        """Replace one patient's state, as the consent service published it, and its index
        entries; relations announced since and not yet in it stay shown."""
        self._published[state.patient] = state
        pending = self._overlay.get(state.patient)
        if pending is not None:
            pending -= set(state.related)
            if not pending:
                del self._overlay[state.patient]
        self._install(state)

    def _install(self, published: PatientAccessState) -> None:
        pending = self._overlay.get(published.patient)
        state = published
        if pending:
            state = published.model_copy(update={"related": sorted({*published.related, *pending})})
        previous = self._states.get(state.patient)
        touched = state.recipient_keys()
        if previous is not None:
            for key in previous.recipient_keys():
                self._index.get(key, set()).discard(state.patient)
                touched.add(key)
        self._states[state.patient] = state
        for key in state.recipient_keys():
            self._index.setdefault(key, set()).add(state.patient)
        for key in touched:
            self._key_versions[key] = self._key_versions.get(key, 0) + 1
        for listener in self.listeners:
            try:
                listener(state)
            except Exception:
                log.exception("a consent-view listener failed")

    def remove(self, key: str) -> None:
        """Forget a state removed from the bucket (by an operator): nothing is permitted
        on it any more."""
        for patient in [p for p in self._states if subject_token(p) == key]:
            self._overlay.pop(patient, None)
            self.apply(PatientAccessState(patient=patient))  # drops its index entries
            del self._states[patient], self._published[patient]

    def loaded(self) -> bool:
        """Whether the mirror has loaded and is following the bucket (`ready` refuses
        otherwise)."""
        following = self._task is not None and not self._task.done()
        return self._loaded.is_set() and following

    def ready(self) -> None:
        """Refuse (503) while the mirror has not loaded (at start, or again after its watch
        broke), or has stopped following the bucket: deciding on a partial or frozen view
        could release data a withdrawal has already closed."""
        following = self._task is not None and not self._task.done()
        if not self._loaded.is_set() or not following:
            raise FhirError(
                503,
                [Issue("transient", "Consent state is still loading; retry shortly")],
                headers={"Retry-After": "1"},
            )

    def state(self, patient: str | None) -> PatientAccessState | None:
        return self._states.get(patient) if patient else None

    def published(self, patient: str) -> PatientAccessState | None:
        """The state as the consent service last published it, without the relations
        announced since."""
        return self._published.get(patient)

    def versions(self, keys: list[str]) -> tuple[int, ...]:
        """How often the states found under each key have changed: what is computed from
        `states_for(keys)` stays valid while these numbers do."""
        return tuple(self._key_versions.get(key, 0) for key in keys)

    def states_for(self, keys: list[str]) -> list[PatientAccessState]:
        """The states that may permit something to an actor with these index keys."""
        patients: set[str] = set()
        for key in keys:
            patients |= self._index.get(key, set())
        return [self._states[patient] for patient in sorted(patients)]

    def states_among(self, keys: list[str], patients: Collection[str]) -> list[PatientAccessState]:
        """`states_for(keys)`, of `patients` only: as many look-ups as there are of them,
        however many children the actor has."""
        indexed = [self._index.get(key, set()) for key in keys]
        return [
            self._states[patient]
            for patient in sorted(set(patients))
            if any(patient in found for found in indexed)
        ]
