"""The floor: NATS publish-to-subscriber latency at the same rates, measured in the run."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import struct
import time
from collections.abc import (
    Awaitable,
    Callable,
)
from dataclasses import dataclass, field
from typing import Any

import nats
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig

from bench.cpu import CpuMeter
from bench.event_source import (
    open_loop,
)
from bench.load import Recorder, run_phase
from bench.report import (
    OpStats,
    per_cpu_second,
)
from bench.subscriptions.world import RAW_BYTES, RAW_FORMAT, SubscriptionsOptions
from shared.transport.nats_connection import close


@dataclass
class RawStats:
    latencies: list[float] = field(default_factory=list)
    sent: int = 0
    errors: int = 0
    samples: list[str] = field(default_factory=list)
    arrivals: asyncio.Event = field(default_factory=asyncio.Event)

    def arrived(self, data: bytes) -> None:
        at = time.perf_counter()
        sent, measured = struct.unpack_from(RAW_FORMAT, data)
        if measured:
            self.latencies.append(at - sent)
            self.arrivals.set()

    async def settled(self, limit: float) -> None:
        """Wait until every measured message sent has arrived, at most `limit` s."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(limit):
                while len(self.latencies) < self.sent:
                    self.arrivals.clear()
                    await self.arrivals.wait()


def raw_payload(measured: bool) -> bytes:
    head = struct.pack(RAW_FORMAT, time.perf_counter(), measured)
    return head + b"x" * (RAW_BYTES - len(head))


async def _raw_window(
    rate: float,
    publish: Callable[[bytes], Awaitable[None]],
    stats: RawStats,
    meter: CpuMeter,
    options: SubscriptionsOptions,
) -> dict[str, Any]:
    recorder = Recorder()

    async def fire(due: float, measured: bool) -> None:
        try:
            await publish(raw_payload(measured))
        except Exception as exc:
            stats.errors += 1
            if len(stats.samples) < 5:
                stats.samples.append(repr(exc))
            return
        if measured:
            stats.sent += 1

    window = await run_phase(
        [open_loop(rate, fire, recorder)],
        recorder,
        meter,
        warmup=min(1.0, options.warmup),
        seconds=options.limit_seconds,
    )
    await stats.settled(options.late_after)
    received = OpStats(latencies=stats.latencies)
    missing = max(0, stats.sent - len(stats.latencies))
    cpu = window.usage
    return {
        "window_s": round(window.seconds, 3),
        "sent": stats.sent,
        "received": len(stats.latencies),
        "missing": missing,
        "errors": stats.errors + missing,
        "error_samples": stats.samples,
        "latency": received.summary(window.seconds),
        "nats_cpu_s": round(cpu.server, 3),
        "messages_per_nats_cpu_second": per_cpu_second(len(stats.latencies), cpu.server),
        "load_generator_cpu_s": round(cpu.load_generator, 3),
        "machine_busy_cpu_s": round(cpu.machine_busy, 3),
    }


async def raw_nats_limit(
    nats_url: str, nats_pid: int, rate: float, options: SubscriptionsOptions
) -> dict[str, Any]:
    """Core NATS and JetStream publish → subscriber latency at `rate`, from one connection
    to another, with the message size of a notification."""
    meter = CpuMeter({"nats-server": nats_pid})
    publisher = await nats.connect(nats_url, name="bench-raw-publisher")
    subscriber = await nats.connect(nats_url, name="bench-raw-subscriber")
    tag = secrets.token_hex(4)
    stream = f"BENCH_RAW_{tag}"
    js_publisher, js_subscriber = publisher.jetstream(), subscriber.jetstream()
    try:
        core = RawStats()

        async def core_arrived(message: Msg) -> None:
            core.arrived(message.data)

        subject = f"bench.raw.{tag}.core"
        await subscriber.subscribe(subject, cb=core_arrived)
        await subscriber.flush()

        async def core_publish(payload: bytes) -> None:
            await publisher.publish(subject, payload)

        core_result = await _raw_window(rate, core_publish, core, meter, options)

        streamed = RawStats()

        async def stream_arrived(message: Msg) -> None:
            streamed.arrived(message.data)

        subject = f"bench.raw.{tag}.stream"
        await js_publisher.add_stream(
            StreamConfig(name=stream, subjects=[subject], storage=StorageType.FILE)
        )
        await js_subscriber.subscribe(
            subject,
            stream=stream,
            durable="bench-raw",
            cb=stream_arrived,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.EXPLICIT),
        )

        async def stream_publish(payload: bytes) -> None:
            await js_publisher.publish(subject, payload, timeout=5)

        stream_result = await _raw_window(rate, stream_publish, streamed, meter, options)
    finally:
        with contextlib.suppress(Exception):
            await js_publisher.delete_stream(stream)
        await close(subscriber)
        await close(publisher)
    return {
        "rate": rate,
        "message_bytes": RAW_BYTES,
        "core": core_result,
        "jetstream": stream_result,
    }
