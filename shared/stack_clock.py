"""The test clock: one moved time shared by every process of a local or test stack.

An integrator tries what dates bring (a referral deadline passing, a child turning 16, a
care order ending) by starting the local stack at another instant and moving it forward:
`barnebro up --clock 2027-03-19T09:00`, then `barnebro clock advance 3d` or `barnebro
clock set 2027-04-01T00:00`. How far the clock is moved from real time is kept in one
JetStream key-value entry under the stack's prefix (bucket `<prefix>_clock`, key
`offset`); every process started with BARNEBRO_TEST_CLOCK=true reads it before it serves
and watches it (`ClockFollower`), setting `shared.clock`'s offset, which wakes the
periodic jobs. A process without that setting never reads the entry and never creates
the bucket, so a production deployment cannot be moved by anyone who can write to NATS,
and the `clock` command refuses a stack that has no such bucket.

The clock only moves forward: records are ordered by the instants they are stamped with
(versions, events, audit), so a clock moved back would write history out of order. And it
never shows a year after `LATEST_YEAR`: the services add years to what it shows (the 18th
birthday, deadlines, retention), and a clock near year 9999 would make that arithmetic
overflow in every process, with no way back. A stored offset beyond it is ignored.
"""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from nats.aio.client import Client as NATS
from nats.js.api import KeyValueConfig
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from shared import clock
from shared.config import Settings
from shared.patience import patiently
from shared.transport.stopping import stop_watch

log = logging.getLogger(__name__)

KEY = "offset"
LATEST_YEAR = 2199
"""The last year the test clock may show (a wide margin below datetime's year 9999)."""
LATEST = datetime(LATEST_YEAR + 1, 1, 1, tzinfo=clock.NORWAY).astimezone(UTC)
_STEP = re.compile(r"(\d+)([wdhms])")
_UNITS = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


class ClockRefused(ValueError):
    """The clock cannot be moved so, or not in this stack; the message says why."""


def parse_step(text: str) -> timedelta:
    """A step forward such as `3d`, `1d12h`, `2w` or `90m` (weeks, days, hours, minutes,
    seconds)."""
    compact = text.replace(" ", "").lower()
    parts = _STEP.findall(compact)
    if not parts or "".join(n + u for n, u in parts) != compact:
        raise ClockRefused(f"{text!r} is not a step such as 3d, 1d12h, 2w, 6h or 90m")
    try:
        step = sum((timedelta(**{_UNITS[unit]: int(n)}) for n, unit in parts), timedelta(0))
    except (OverflowError, ValueError):  # more days than a timedelta holds, or digits
        raise _too_late(f"a step of {text}") from None
    if step <= timedelta(0):
        raise ClockRefused("the clock moves forward only: give a step greater than zero")
    return step


def parse_moment(text: str) -> datetime:
    """An instant such as `2027-03-19T09:00` (Norwegian time, as the calendar days the
    rules count) or with its offset (`2027-03-19T08:00Z`, `…+01:00`)."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise ClockRefused(
            f"{text!r} is not an instant such as 2027-03-19T09:00 (Norwegian time) or"
            " 2027-03-19T08:00Z"
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=clock.NORWAY)
    try:
        utc = moment.astimezone(UTC)
    except OverflowError:  # at the very ends of the calendar
        raise ClockRefused(
            f"{text!r} is not an instant the test clock can show (years up to {LATEST_YEAR})"
        ) from None
    return within_bound(utc, text)


def within_bound(moment: datetime, what: str) -> datetime:
    """`moment`, refused if it is later than the test clock may ever show."""
    if moment >= LATEST:
        raise _too_late(what)
    return moment


def showing(offset: timedelta, real_now: datetime) -> datetime:
    """What a clock moved by `offset` shows at `real_now`; refused beyond the bound."""
    try:
        return within_bound(real_now + offset, "the clock's stored offset")
    except OverflowError:
        raise _too_late("the clock's stored offset") from None


def _too_late(what: str) -> ClockRefused:
    return ClockRefused(
        f"{what} is too late: the test clock shows no later than the year {LATEST_YEAR}"
    )


def offset_to(target: datetime, current: timedelta, real_now: datetime) -> timedelta:
    """The offset that makes the clock show `target` now; refused if that is earlier than
    it shows (`real_now` + `current`)."""
    shown_now = showing(current, real_now)
    if target < shown_now:
        raise ClockRefused(
            f"the clock moves forward only: it shows {_shown(shown_now)}, and"
            f" {_shown(target)} is earlier (records are ordered by when they were written)"
        )
    within_bound(target, _shown(target))
    return target - real_now


def advanced(current: timedelta, step: timedelta, real_now: datetime) -> timedelta:
    """The offset `step` further on; refused unless `step` is forward and the clock then
    shows no later than `LATEST_YEAR`."""
    if step <= timedelta(0):
        raise ClockRefused("the clock moves forward only: give a step greater than zero")
    try:
        offset = current + step
        within_bound(showing(current, real_now) + step, f"{step} later")
    except OverflowError:
        raise _too_late(f"a step of {step}") from None
    return offset


def encode(offset: timedelta) -> bytes:
    return orjson.dumps({"seconds": offset.total_seconds()})


def decode(value: bytes | None) -> timedelta:
    """The offset an entry holds; zero for an empty or unreadable one."""
    try:
        seconds = orjson.loads(value or b"{}").get("seconds", 0)
        return timedelta(seconds=float(seconds))
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError, OverflowError):
        log.error("ignoring an unreadable test clock entry")
        return timedelta(0)


def _shown(moment: datetime) -> str:
    return moment.astimezone(clock.NORWAY).isoformat(timespec="seconds")


def bucket_name(settings: Settings) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", settings.nats_prefix) + "_clock"


async def _bucket(nc: NATS, settings: Settings, *, create: bool) -> KeyValue | None:
    js = nc.jetstream()
    try:
        return await js.key_value(bucket_name(settings))
    except BucketNotFoundError:
        if not create:
            return None
        config = KeyValueConfig(bucket=bucket_name(settings), replicas=settings.event_replicas)
        return await js.create_key_value(config)


async def _entry(kv: KeyValue) -> tuple[timedelta, int | None]:
    """The stored offset and its revision (None: nothing stored yet)."""
    try:
        entry = await kv.get(KEY)
    except KeyNotFoundError:
        return timedelta(0), None
    return decode(entry.value), entry.revision


class ClockFollower:
    """Keeps this process's clock at the stack's test clock, when the stack runs with one
    (BARNEBRO_TEST_CLOCK=true); does nothing otherwise."""

    def __init__(self, nc: NATS, settings: Settings) -> None:
        self._nc = nc
        self._settings = settings
        self._refused: timedelta | None = None
        self._watcher: Any = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if not self._settings.test_clock:
            return
        kv = await patiently(
            "the test clock", lambda: _bucket(self._nc, self._settings, create=True)
        )
        assert kv is not None
        self._watcher = await patiently("the test clock", lambda: kv.watch(KEY))
        self._follow_to((await _entry(kv))[0])  # before the first request is served
        self._task = asyncio.create_task(self._follow(), name="test clock")
        log.warning("the test clock is on: this process tells time %s from real", clock.offset())

    async def _follow(self) -> None:
        async for entry in self._watcher:
            if entry is not None and entry.operation not in ("DEL", "PURGE"):
                self._follow_to(decode(entry.value))

    def _follow_to(self, offset: timedelta) -> None:
        """Move this process's clock by `offset`, unless that would show a time beyond the
        bound (written by hand into NATS, or by an older `barnebro clock`): then the clock
        stays where it is, and that is logged once per such offset."""
        try:
            showing(offset, datetime.now(UTC))
        except ClockRefused as exc:
            if self._refused != offset:
                self._refused = offset
                log.error("ignoring the test clock entry: %s", exc)
            return
        clock.moved(offset)

    async def stop(self) -> None:
        await stop_watch(self._watcher, self._task)


async def shown(nc: NATS, settings: Settings) -> datetime:
    """What the stack's test clock shows now; refused if the stack has none."""
    kv = await _bucket(nc, settings, create=False)
    if kv is None:
        raise _not_a_test_stack()
    return showing((await _entry(kv))[0], datetime.now(UTC))


async def move(
    nc: NATS,
    settings: Settings,
    *,
    step: timedelta | None = None,
    to: datetime | None = None,
    create: bool = False,
) -> datetime:
    """Move the stack's test clock `step` forward, or forward `to` an instant; returns what
    it shows then. `create` (only `barnebro up --clock`) makes the bucket of a stack it
    starts in test mode; otherwise a stack without one is refused."""
    kv = await _bucket(nc, settings, create=create)
    if kv is None:
        raise _not_a_test_stack()
    while True:
        current, revision = await _entry(kv)
        real_now = datetime.now(UTC)
        if to is not None:
            offset = offset_to(to, current, real_now)
        else:
            offset = advanced(current, step or timedelta(0), real_now)
        try:  # compare-and-set: two moves at once cannot undo each other
            if revision is None:
                await kv.create(KEY, encode(offset))
            else:
                await kv.update(KEY, encode(offset), last=revision)
        except KeyWrongLastSequenceError:
            continue
        return real_now + offset


def _not_a_test_stack() -> ClockRefused:
    return ClockRefused(
        "this stack does not run with a test clock: only a local or test stack started with"
        " `barnebro up --clock <instant>` (BARNEBRO_TEST_CLOCK=true) can be moved; a"
        " production deployment never"
    )
