"""Messages a durable consumer could not handle, kept aside instead of retried for ever.

A message that still fails after its last retry is published to the dead-letter stream
`<PREFIX>_DEAD` under `<prefix>.dead.<consumer>`, with the error, the subject it came from
and its place in its stream, and then acknowledged: the consumer goes on with the rest.
An operator lists them (`barnebro dead-letters`) and, once the cause is fixed, replays
them (`barnebro dead-letters --replay`): each is published again to the subject it came
from, where every consumer of that subject receives it again (barnebro's consumers are
idempotent), and is removed from the dead-letter stream.
"""

from __future__ import annotations

from dataclasses import dataclass

import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

ERROR_HEADER = "Barnebro-Dead-Error"
SUBJECT_HEADER = "Barnebro-Dead-Subject"
SEQUENCE_HEADER = "Barnebro-Dead-Sequence"
CONSUMER_HEADER = "Barnebro-Dead-Consumer"
MAX_ERROR = 1000


def dead_letter_subject(prefix: str, consumer: str) -> str:
    return f"{prefix}.dead.{consumer}"


def dead_letter_filter(prefix: str) -> str:
    return f"{prefix}.dead.>"


@dataclass(frozen=True)
class DeadLetter:
    sequence: int
    """Its place in the dead-letter stream."""
    consumer: str
    subject: str
    """Where it came from (and goes again on replay)."""
    error: str
    data: bytes
    headers: dict[str, str]
    """The message's own headers (without the dead-letter ones)."""


async def set_aside(
    nc: NATS, prefix: str, consumer: str, message: Msg, error: BaseException
) -> None:
    """Publish a message that cannot be handled to the dead-letter stream (once, whatever
    the redeliveries: its id is its consumer and place in its own stream)."""
    sequence = message.metadata.sequence.stream
    headers = {
        key: value for key, value in (message.headers or {}).items() if not key.startswith("Nats-")
    }
    headers.update(
        {
            "Nats-Msg-Id": f"dead:{consumer}:{sequence}",
            ERROR_HEADER: repr(error)[:MAX_ERROR],
            SUBJECT_HEADER: message.subject,
            SEQUENCE_HEADER: str(sequence),
            CONSUMER_HEADER: consumer,
        }
    )
    await nc.jetstream().publish(
        dead_letter_subject(prefix, consumer), message.data, headers=headers, timeout=5
    )


async def dead_letters(nc: NATS, stream: str, consumer: str | None = None) -> list[DeadLetter]:
    """Every dead letter (of one consumer, if given), oldest first."""
    js = nc.jetstream()
    try:
        info = await js.stream_info(stream)
    except nats.js.errors.NotFoundError:
        return []
    found: list[DeadLetter] = []
    if not info.state.messages:
        return found
    for sequence in range(max(info.state.first_seq, 1), info.state.last_seq + 1):
        try:
            raw = await js.get_msg(stream, sequence)
        except nats.js.errors.NotFoundError:
            continue  # replayed (deleted) already
        headers = raw.headers or {}
        letter = DeadLetter(
            sequence=sequence,
            consumer=headers.get(CONSUMER_HEADER, ""),
            subject=headers.get(SUBJECT_HEADER, ""),
            error=headers.get(ERROR_HEADER, ""),
            data=raw.data or b"",
            headers={
                k: v for k, v in headers.items() if not k.startswith(("Nats-", "Barnebro-Dead-"))
            },
        )
        if consumer is None or letter.consumer == consumer:
            found.append(letter)
    return found


async def replay(nc: NATS, stream: str, consumer: str | None = None) -> int:
    """Publish dead letters again to where they came from and remove them; how many."""
    js = nc.jetstream()
    replayed = 0
    for letter in await dead_letters(nc, stream, consumer):
        await js.publish(
            letter.subject,
            letter.data,
            headers={**letter.headers, "Nats-Msg-Id": f"replay:{stream}:{letter.sequence}"},
            timeout=5,
        )
        await js.delete_msg(stream, letter.sequence)
        replayed += 1
    return replayed
