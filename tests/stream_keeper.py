"""One stream of the session's own on the shared NATS server, for as long as the session runs.

nats-server (2.9, as Debian ships it) removes an account's store directory when its last
stream is deleted. A test creating a stream at that moment, in another worker of a
parallel run, fails with "error creating store for stream" (the directory it creates
the stream in was just removed). While every worker keeps a stream of its own, the
account never runs out of streams until the last worker ends. The stream holds nothing
(no subject anyone publishes to) and is deleted when the session ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import nats

_kept: list[tuple[str, str]] = []
"""(server, stream) this session keeps."""


def keep(url: str) -> None:
    name = f"TKEEP{uuid.uuid4().hex[:12].upper()}"
    asyncio.run(_add(url, name))
    _kept.append((url, name))


def release() -> None:
    while _kept:
        url, name = _kept.pop()
        with contextlib.suppress(Exception):  # the server may be gone already
            asyncio.run(_delete(url, name))


async def _add(url: str, name: str) -> None:
    nc = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=0)
    try:
        await nc.jetstream().add_stream(name=name, subjects=[f"tkeep.{name.lower()}"])
    finally:
        await nc.close()


async def _delete(url: str, name: str) -> None:
    nc = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=0)
    try:
        await nc.jetstream().delete_stream(name)
    finally:
        await nc.close()
