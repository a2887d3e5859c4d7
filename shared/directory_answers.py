"""Within a unit of work, the directory is asked each question once.

A referral with three attachments names its child four times, and each name was a request
to the directory, a search there and an audit record. The child is one child in one
transaction, so a unit of work (`FhirService.unit_of_work`) keeps the directory's
successful answers to reads and searches, by the whole request (the caller included),
until it ends: then they are dropped, and a task started in it that outlives it asks
afresh. Every later transaction asks the directory again, so what decides access still
follows the directory at once when it changes.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Awaitable, Callable, Iterator

from shared.transport.wire import FhirRequest

Answer = tuple[int, bytes]
"""The directory's status and body."""
KEPT = ("read", "search")
"""The interactions whose answers are kept: those that change nothing."""


class _Answers:
    """The successful answers of one unit of work, by request; closed when it ends."""

    def __init__(self) -> None:
        self.open = True
        self.by_request: dict[str, Answer] = {}


_kept: contextvars.ContextVar[_Answers | None] = contextvars.ContextVar(
    "directory_answers", default=None
)


@contextlib.contextmanager
def one_answer_per_question() -> Iterator[None]:
    """Keep the directory's answers within this block (a unit of work)."""
    answers = _Answers()
    token = _kept.set(answers)
    try:
        yield
    finally:
        answers.open = False
        answers.by_request.clear()
        _kept.reset(token)


async def answered_once(
    request: FhirRequest, send: Callable[[FhirRequest], Awaitable[Answer]]
) -> Answer:
    """`send(request)`'s answer, or the one this block kept for the same request."""
    kept = _kept.get()
    if kept is None or not kept.open or request.interaction not in KEPT:
        return await send(request)
    key = request.model_dump_json()
    answer = kept.by_request.get(key)
    if answer is None:
        answer = await send(request)
        if answer[0] == 200 and kept.open:
            kept.by_request[key] = answer
    return answer
