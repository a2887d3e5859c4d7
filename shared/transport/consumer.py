"""Durable JetStream consumers: at-least-once processing that survives restarts.

A `DurableConsumer` pulls batches from a stream through a named durable consumer shared by
every instance of a service (so each message is handled by one of them), hands each batch
to the handler, and acknowledges the messages only after the handler returns. A failing
batch is not acknowledged: JetStream redelivers it after `ack_wait`, so handlers must be
idempotent (the consumers of barnebro key their writes by message id).

A batch is handed on as soon as one message has arrived, with whatever else is waiting
then: a consumer never sits on an event to fill a batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from shared.transport.stopping import stop_task

log = logging.getLogger(__name__)

BatchHandler = Callable[[list[Msg]], Awaitable[None]]


class DurableConsumer:
    def __init__(
        self,
        nc: NATS,
        *,
        stream: str,
        durable: str,
        subject: str,
        handler: BatchHandler,
        batch: int = 100,
        ack_wait: float = 30.0,
    ) -> None:
        self._nc = nc
        self._stream = stream
        self._durable = durable
        self._subject = subject
        self._handler = handler
        self._batch = batch
        self._ack_wait = ack_wait
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.handled = 0

    async def start(self) -> None:
        js = self._nc.jetstream()
        self._subscription = await js.pull_subscribe(
            self._subject,
            durable=self._durable,
            stream=self._stream,
            config=ConsumerConfig(
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=self._ack_wait,
                max_ack_pending=10 * self._batch,
            ),
        )
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self._stopping = True
        await stop_task(self._task)
        with contextlib.suppress(Exception):
            await self._subscription.unsubscribe()

    async def _next_batch(self) -> list[Msg]:
        """Wait (up to a second) for one message, then take what else is waiting. A single
        fetch of a whole batch would hold the first message until the batch is full."""
        messages: list[Msg] = await self._subscription.fetch(1, timeout=1)
        if self._batch > 1:
            with contextlib.suppress(nats.errors.TimeoutError, TimeoutError):
                messages += await self._subscription.fetch(self._batch - 1, timeout=0.005)
        return messages

    async def _run(self) -> None:
        failures = 0
        while not self._stopping:
            try:
                messages = await self._next_batch()
            except (nats.errors.TimeoutError, TimeoutError):
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("fetching from %s failed: %r", self._durable, exc)
                await asyncio.sleep(1)
                continue
            try:
                await self._handler(messages)
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                log.exception("%s could not handle a batch; it will be redelivered", self._durable)
                await asyncio.sleep(min(10.0, 0.2 * 2**failures))
                continue
            failures = 0
            for message in messages:
                with contextlib.suppress(Exception):
                    await message.ack()
            self.handled += len(messages)
