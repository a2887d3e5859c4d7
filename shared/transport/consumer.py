"""Durable JetStream consumers: at-least-once processing that survives restarts.

A `DurableConsumer` pulls batches from a stream through a named durable consumer shared by
every instance of a service (so each message is handled by one of them), hands each batch
to the handler, and acknowledges the messages only after the handler returns. A failing
batch is not acknowledged: JetStream redelivers it after `ack_wait`, so handlers must be
idempotent (the consumers of barnebro key their writes by message id).

A batch is handed on as soon as one message has arrived, with whatever else JetStream said
was waiting then: a consumer never sits on an event to fill a batch, nor asks again when
nothing more is waiting.

A batch that fails is handled again message by message, so one message that cannot be
handled holds up no other. Such a message is retried later (`retry_delays`, growing, so
an outage of what the handler needs is waited out), and after its last retry set aside in
the dead-letter stream (`shared.transport.dead_letters`) with its error: logged once,
counted, and replayed by an operator once the cause is fixed.
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

from shared.metrics import consumer_failures, consumer_pending, consumer_redeliveries, dead_letters
from shared.patience import patiently
from shared.transport.dead_letters import set_aside
from shared.transport.stopping import stop_task

log = logging.getLogger(__name__)

BatchHandler = Callable[[list[Msg]], Awaitable[None]]
RETRY_DELAYS = (0.5, 2.0, 8.0, 30.0, 120.0, 300.0)
"""Seconds before each retry of a message that failed (then it is set aside): quick at
first, about eight minutes in all, so that a service the handler reads may restart."""


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
        dead_letters: str | None = None,
        retry_delays: tuple[float, ...] = RETRY_DELAYS,
    ) -> None:
        """`dead_letters`: the subject prefix (`<prefix>`) under which messages that
        cannot be handled are set aside; None retries them for ever."""
        self._nc = nc
        self._stream = stream
        self._durable = durable
        self._subject = subject
        self._handler = handler
        self._batch = batch
        self._ack_wait = ack_wait
        self._dead_letters = dead_letters
        self._retry_delays = retry_delays
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.handled = 0
        self.set_aside = 0
        """Messages this instance put in the dead-letter stream."""

    async def start(self) -> None:
        js = self._nc.jetstream()
        self._subscription = await patiently(
            f"the consumer {self._durable}",
            lambda: js.pull_subscribe(
                self._subject,
                durable=self._durable,
                stream=self._stream,
                config=ConsumerConfig(
                    ack_policy=AckPolicy.EXPLICIT,
                    deliver_policy=DeliverPolicy.ALL,
                    ack_wait=self._ack_wait,
                    max_ack_pending=10 * self._batch,
                ),
            ),
        )
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self._stopping = True
        await stop_task(self._task)
        with contextlib.suppress(Exception):
            await self._subscription.unsubscribe()

    async def _next_batch(self) -> list[Msg]:
        """Wait (up to a second) for one message, then take what else is waiting: as many
        as JetStream said were pending when it delivered the first (`num_pending`), and
        no second request when none were. A single fetch of a whole batch would hold the
        first message until the batch is full, and one that asked for more than were
        waiting would leave a request open on the server until it expired."""
        messages: list[Msg] = await self._subscription.fetch(1, timeout=1)
        waiting = min(self._batch - 1, messages[-1].metadata.num_pending or 0)
        if waiting > 0:
            with contextlib.suppress(nats.errors.TimeoutError, TimeoutError):
                messages += await self._subscription.fetch(waiting, timeout=0.005)
        return messages

    async def _run(self) -> None:
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
            self._measure(messages)
            try:
                await self._handler(messages)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if len(messages) == 1:
                    await self._failed(messages[0], exc)
                else:
                    await self._one_by_one(messages)
                continue
            await self._acknowledge(messages)

    def _measure(self, messages: list[Msg]) -> None:
        consumer = {"barnebro.consumer": self._durable}
        again = sum(1 for m in messages if (m.metadata.num_delivered or 1) > 1)
        if again:
            consumer_redeliveries.add(again, consumer)
        consumer_pending.set(messages[-1].metadata.num_pending or 0, consumer)

    async def _acknowledge(self, messages: list[Msg]) -> None:
        for message in messages:
            with contextlib.suppress(Exception):
                await message.ack()
        self.handled += len(messages)

    async def _one_by_one(self, messages: list[Msg]) -> None:
        for message in messages:
            try:
                await self._handler([message])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                await self._failed(message, exc)
            else:
                await self._acknowledge([message])

    async def _failed(self, message: Msg, exc: Exception) -> None:
        """Retry a message later, or set it aside after its last retry."""
        consumer_failures.add(1, {"barnebro.consumer": self._durable})
        delivered = message.metadata.num_delivered or 1
        if self._dead_letters is None or delivered <= len(self._retry_delays):
            delay = self._retry_delays[min(delivered, len(self._retry_delays)) - 1]
            log.warning(
                "%s could not handle message %s (delivery %d), retrying in %g s: %r",
                self._durable, message.metadata.sequence.stream, delivered, delay, exc,
            )  # fmt: skip
            with contextlib.suppress(Exception):
                await message.nak(delay=delay)
            return
        try:
            await set_aside(self._nc, self._dead_letters, self._durable, message, exc)
        except Exception as publish_error:
            log.warning("%s could not set a message aside: %r", self._durable, publish_error)
            with contextlib.suppress(Exception):
                await message.nak(delay=self._retry_delays[-1])
            return
        log.error(
            "%s set message %s aside after %d deliveries (barnebro dead-letters): %r",
            self._durable, message.metadata.sequence.stream, delivered, exc,
        )  # fmt: skip
        self.set_aside += 1
        dead_letters.add(1, {"barnebro.consumer": self._durable})
        with contextlib.suppress(Exception):
            await message.ack()
