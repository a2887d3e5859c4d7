"""Connecting to NATS and preparing the JetStream objects the platform needs.

Clients reconnect for ever (a NATS restart must not kill a service), and the event stream
is created or updated idempotently by whichever process starts first.
"""

from __future__ import annotations

import logging

from nats.aio.client import Client as NATS
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import NotFoundError

from shared.config import Settings
from shared.events import audit_subject_filter, events_subject_filter
from shared.transport.dead_letters import dead_letter_filter

log = logging.getLogger(__name__)


def nats_servers(url: str) -> list[str]:
    """`NATS_URL` as the servers to try: one URL, or several separated by commas (the nodes
    of a cluster: a process starting while one is down connects to another)."""
    servers = [part.strip() for part in url.split(",") if part.strip()]
    if not servers:
        raise ValueError("NATS_URL names no server")
    return servers


ONE_SHOT_CONNECT_SECONDS = 5
"""How long a command that asks once (`barnebro status`) tries to reach NATS."""


async def connect(settings: Settings, name: str, *, one_shot: bool = False) -> NATS:
    """A connection that reconnects for ever (a service's); `one_shot`: a command's, which
    tries each server twice and raises when none answers (or one refuses its
    credentials), so that it ends with an answer instead of waiting for ever."""
    client = NATS()

    async def on_disconnect() -> None:
        if client.is_draining or client.is_closed:
            log.info("disconnected from NATS (closing)")
        else:
            log.warning("disconnected from NATS")

    async def on_reconnect() -> None:
        log.info("reconnected to NATS")

    async def on_error(exc: Exception) -> None:
        log.warning("NATS error: %s", exc)

    await client.connect(
        servers=nats_servers(settings.nats_url),
        name=name,
        # Replies to this process arrive under its own prefix, so NATS permissions can
        # give each user only its own replies (`_INBOX.<name>.>`).
        inbox_prefix=f"_INBOX.{name}",
        # nats-py reads 0 as "no limit": 1 tries each server twice, a second apart.
        max_reconnect_attempts=1 if one_shot else -1,
        allow_reconnect=not one_shot,
        connect_timeout=ONE_SHOT_CONNECT_SECONDS if one_shot else 2,
        reconnect_time_wait=1,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
        error_cb=on_error,
    )
    return client


async def close(nc: NATS) -> None:
    """Drain (finish what is in flight), or just close when NATS cannot be reached. A
    connection lost while it closes (what waited to be sent while it reconnected cannot
    be) is closed all the same: a service stopping while NATS restarts still stops."""
    try:
        await nc.drain()
    except Exception:
        try:
            await nc.close()
        except ConnectionError as exc:
            log.warning("the connection to NATS was lost while closing: %r", exc)


async def _ensure_stream(nc: NATS, name: str, subject_filter: str, replicas: int) -> None:
    js = nc.jetstream()
    config = StreamConfig(
        name=name,
        subjects=[subject_filter],
        storage=StorageType.FILE,
        num_replicas=replicas,
        duplicate_window=120.0,
    )
    try:
        await js.stream_info(name)
    except NotFoundError:
        await js.add_stream(config)


async def ensure_event_stream(nc: NATS, settings: Settings) -> None:
    """Create the domain-event, audit and dead-letter streams if they are missing."""
    prefix, replicas = settings.nats_prefix, settings.event_replicas
    await _ensure_stream(nc, settings.stream_name, events_subject_filter(prefix), replicas)
    await _ensure_stream(
        nc,
        settings.audit_stream_name,
        audit_subject_filter(prefix),
        replicas,
    )
    await _ensure_stream(nc, settings.dead_letter_stream_name, dead_letter_filter(prefix), replicas)
