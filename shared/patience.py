"""Starting in any order: a process waits for what it needs instead of exiting.

At start a service needs its database, NATS, JetStream (whose streams and buckets have no
leader for a moment in a fresh cluster: a request times out, or a write to a stream gets
no response) and the registry bucket. Each start-up step that
reaches one of them runs through `patiently`: an outage is waited out with growing pauses
(at most 5 s apart) and one log line per attempt, so processes may start in any order and
before the things they need. Anything else (a wrong setting, a bug) fails at once.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import nats.errors
import nats.js.errors
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_exponential

from shared.fhir.errors import FhirError
from shared.store.failures import REFUSED

log = logging.getLogger(__name__)

T = TypeVar("T")
TRANSIENT_JETSTREAM = frozenset({10008, 10005, 10023})
"""JetStream temporarily unavailable, no suitable peers yet, insufficient resources."""
NATS_OUTAGE = (
    nats.errors.NoServersError,
    nats.errors.TimeoutError,
    nats.errors.ConnectionClosedError,
    nats.errors.NoRespondersError,
    nats.js.errors.ServiceUnavailableError,
    nats.js.errors.NoStreamResponseError,
)


def transient(exc: BaseException) -> bool:
    """Whether a start-up step failed because something it needs is not there yet."""
    if isinstance(exc, FhirError):
        return exc.status == 503
    if isinstance(exc, nats.js.errors.APIError):
        return exc.code == 503 or exc.err_code in TRANSIENT_JETSTREAM
    return isinstance(exc, (*NATS_OUTAGE, *REFUSED))


async def patiently(what: str, step: Callable[[], Awaitable[T]]) -> T:
    """Run a start-up step until what it needs is there (`what` names it in the log)."""

    def waiting(state: RetryCallState) -> None:
        outcome = state.outcome.exception() if state.outcome else None
        pause = state.next_action.sleep if state.next_action else 0
        log.warning("waiting for %s (%r); trying again in %.1f s", what, outcome, pause)

    async for attempt in AsyncRetrying(
        retry=retry_if_exception(transient),
        wait=wait_exponential(multiplier=0.25, max=5),
        before_sleep=waiting,
        reraise=True,
    ):
        with attempt:
            return await step()
    raise AssertionError("unreachable")
