"""Which service owns which resource type, read from the JetStream key-value registry.

Services write their capability fragment under their name at start-up. The gateway
watches the bucket, so a newly started service is routable as soon as it has registered;
a periodic full read (and one on a miss) is the safety net should the watch fall behind.
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
from shared.transport.stopping import stop_task

log = logging.getLogger(__name__)
MIN_REFRESH_SECONDS = 0.2


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
        self._tasks: list[asyncio.Task[None]] = []
        self._watcher: Any = None
        self._loaded = asyncio.Event()

    async def start(self) -> None:
        if not self._tasks:  # a start tried again after an outage starts nothing twice
            self._kv = await ensure_bucket(self._nc.jetstream(), self._bucket, self._replicas)
            self._watcher = await self._kv.watchall()
            self._tasks = [
                asyncio.create_task(self._follow()),
                asyncio.create_task(self._refresh_periodically()),
            ]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await self._loaded.wait()
        await self.refresh()

    async def stop(self) -> None:
        if self._watcher is not None:
            with contextlib.suppress(Exception):
                await self._watcher.stop()
        for task in self._tasks:
            await stop_task(task)

    async def _follow(self) -> None:
        async for entry in self._watcher:
            if entry is None:  # every value present at start has been delivered
                self._loaded.set()
            elif entry.value:
                self._apply(entry.key, orjson.loads(entry.value))

    def _apply(self, service: str, fragment: dict[str, Any]) -> None:
        # Entries are only added or replaced, never dropped: a service that stopped
        # answers "no responders" (503), which is the right answer.
        self.fragments[service] = fragment
        for resource in fragment["resources"]:
            self.owners[resource["type"]] = service

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
            for key in keys:
                entry = await self._kv.get(key)
                if entry.value:
                    self._apply(key, orjson.loads(entry.value))
            self._refreshed = time.monotonic()

    async def owner(self, resource_type: str) -> str | None:
        """The service owning a type. On a miss the registry is read again, at most 5 times
        a second: a miss just after a read waits for the next one rather than answering
        from it, so a service that registered a moment ago is found."""
        service = self.owners.get(resource_type)
        if service is None:
            read_at = self._refreshed
            wait = MIN_REFRESH_SECONDS - (time.monotonic() - read_at)
            if wait > 0:
                await asyncio.sleep(wait)
            if self._refreshed == read_at:  # no one has read it again meanwhile
                await self.refresh()
            service = self.owners.get(resource_type)
        return service
