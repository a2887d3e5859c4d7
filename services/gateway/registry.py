"""Which service owns which resource type, read from the JetStream key-value registry.

Services write their capability fragment under their name at start-up; the gateway keeps
a copy, refreshed periodically and on a miss, so a newly started service is routable
within a second without restarting the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import orjson
from nats.aio.client import Client as NATS
from nats.js.errors import NoKeysError

from shared.transport.service_host import ensure_bucket

log = logging.getLogger(__name__)


class ServiceRegistry:
    def __init__(self, nc: NATS, bucket: str, replicas: int = 1) -> None:
        self._nc = nc
        self._bucket = bucket
        self._replicas = replicas
        self._kv: Any = None
        self.fragments: dict[str, dict[str, Any]] = {}
        self.owners: dict[str, str] = {}
        self._refreshed = 0.0
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._kv = await ensure_bucket(self._nc.jetstream(), self._bucket, self._replicas)
        await self.refresh()
        self._task = asyncio.create_task(self._refresh_periodically())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _refresh_periodically(self) -> None:
        while True:
            await asyncio.sleep(5)
            try:
                await self.refresh()
            except Exception as exc:
                log.warning("could not refresh the service registry: %s", exc)

    async def refresh(self) -> None:
        async with self._lock:
            try:
                keys = await self._kv.keys()
            except NoKeysError:
                keys = []
            # Entries are only added or replaced, never dropped on a read that saw fewer
            # keys: a service that stopped answers "no responders" (503), which is right.
            for key in keys:
                entry = await self._kv.get(key)
                if entry.value:
                    self.fragments[key] = orjson.loads(entry.value)
            fragments = self.fragments
            self.owners = {
                resource["type"]: service
                for service, fragment in fragments.items()
                for resource in fragment["resources"]
            }
            self._refreshed = time.monotonic()

    async def owner(self, resource_type: str) -> str | None:
        """The service owning a type; re-reads the registry (at most 5 times a second) on a
        miss, so a service that has just started is found."""
        service = self.owners.get(resource_type)
        if service is None and time.monotonic() - self._refreshed > 0.2:
            await self.refresh()
            service = self.owners.get(resource_type)
        return service
