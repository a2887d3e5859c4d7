"""The test clock: a stack started at another instant and moved forward, every process
telling the same time; refused backwards and for a stack not run in test mode."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nats
import pytest

from services.referral import referral_spec
from services.referral.domain.vocabulary import ASSESSMENT_DEADLINE_EXT, BREACH_EXT
from services.stack import free_port, local_nats_url
from shared import clock
from shared.config import Settings
from shared.runtime import ServiceRuntime
from shared.stack_clock import (
    LATEST,
    ClockRefused,
    advanced,
    bucket_name,
    decode,
    encode,
    move,
    offset_to,
    parse_moment,
    parse_step,
    showing,
)
from tests.conftest import register
from tests.consent_world import BVT, HEARD, World, sharing, signature
from tests.consent_world import KINDS as CONSENT_KINDS
from tests.consent_world import organisation as consent_organisation
from tests.journal_service import journal_spec
from tests.referral_world import BUP, KINDS, ReferralWorld, organisation
from tests.support import Stack, drop_test_resources, nats_url, start_stack, stop_stack, wait_for
from tests.support import test_settings as make_settings
from tests.test_cli import embedded_env, request, start_up, stop, token

BARNEBRO = [sys.executable, "-m", "services.cli"]
REAL = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
PRACTITIONER = {"resourceType": "Practitioner", "name": [{"family": "Lege"}]}


@pytest.fixture(autouse=True)
def real_time_after() -> Any:
    """Each test leaves this process's clock at real time, as it found it."""
    yield
    clock.moved(timedelta(0))


# --- the arithmetic ----------------------------------------------------------------------


def test_steps_are_forward_durations() -> None:
    assert parse_step("3d") == timedelta(days=3)
    assert parse_step("1d12h") == timedelta(days=1, hours=12)
    assert parse_step("2w") == timedelta(weeks=2)
    assert parse_step("90m") == timedelta(minutes=90)
    assert parse_step("30s") == timedelta(seconds=30)
    for wrong in ("", "3", "3x", "-3d", "d3", "3d-1h", "0d", "tomorrow"):
        with pytest.raises(ClockRefused):
            parse_step(wrong)


def test_instants_without_an_offset_are_norwegian_time() -> None:
    assert parse_moment("2027-03-19T09:00") == datetime(2027, 3, 19, 8, 0, tzinfo=UTC)
    assert parse_moment("2027-07-01T09:00") == datetime(2027, 7, 1, 7, 0, tzinfo=UTC)
    assert parse_moment("2027-03-19T08:00Z") == datetime(2027, 3, 19, 8, 0, tzinfo=UTC)
    assert parse_moment("2027-03-19") == datetime(2027, 3, 18, 23, 0, tzinfo=UTC)
    with pytest.raises(ClockRefused, match="not an instant"):
        parse_moment("19.03.2027")


def test_offsets_move_forward_only() -> None:
    target = datetime(2027, 3, 19, 8, 0, tzinfo=UTC)
    assert offset_to(target, timedelta(0), REAL) == target - REAL
    moved = target - REAL
    later = target + timedelta(days=3)
    assert offset_to(later, moved, REAL) == later - REAL
    with pytest.raises(ClockRefused, match="forward only"):
        offset_to(target - timedelta(seconds=1), moved, REAL)
    with pytest.raises(ClockRefused, match="forward only"):
        offset_to(REAL - timedelta(days=1), timedelta(0), REAL)
    assert advanced(moved, timedelta(days=3), REAL) == moved + timedelta(days=3)
    for backwards in (timedelta(0), timedelta(days=-1)):
        with pytest.raises(ClockRefused):
            advanced(moved, backwards, REAL)


def test_the_stored_offset_reads_back_and_junk_reads_as_none() -> None:
    offset = timedelta(days=469, hours=3, seconds=12.5)
    assert decode(encode(offset)) == offset
    for junk in (None, b"", b"{", b"[]", b'{"seconds": "x"}'):
        assert decode(junk) == timedelta(0)


def test_a_moved_clock_moves_every_reading_and_wakes_its_listeners() -> None:
    woken: list[int] = []
    stop = clock.on_moved(lambda: woken.append(1))
    try:
        before = clock.now()
        clock.moved(timedelta(days=400))
        assert clock.now() - before >= timedelta(days=400)
        assert clock.today() >= (before + timedelta(days=399)).date()
        assert clock.now_instant() > (before + timedelta(days=399)).isoformat()
        clock.moved(timedelta(days=400))  # unchanged: nobody is woken again
        assert woken == [1]
    finally:
        stop()
    clock.moved(timedelta(0))
    assert woken == [1], "a listener that stopped is not called"


# --- a stack on the test clock ------------------------------------------------------------


def start_at() -> datetime:
    """A Monday morning more than a year ahead: the clock starts in the future."""
    day = datetime.now(UTC).date() + timedelta(days=400)
    day -= timedelta(days=day.weekday())
    return datetime(day.year, day.month, day.day, 8, 0, tzinfo=UTC)


async def delete_clock(settings: Settings) -> None:
    nc = await nats.connect(settings.nats_url)
    with contextlib.suppress(Exception):
        await nc.jetstream().delete_key_value(bucket_name(settings))
    await nc.close()


async def set_clock(settings: Settings, to: datetime) -> None:
    """What `barnebro up --clock` does before the stack's processes start."""
    nc = await nats.connect(settings.nats_url)
    try:
        await move(nc, settings, to=to, create=True)
    finally:
        await nc.close()


@contextlib.asynccontextmanager
async def referral_stack(settings: Settings) -> AsyncIterator[ReferralWorld]:
    stack = await start_stack(settings)
    world = ReferralWorld(stack, ServiceRuntime(referral_spec(settings), settings), {})
    try:
        await world.referral.start()
        try:
            organisations = [organisation(orgnr) for orgnr in KINDS]
            world.organisations = await register(stack, organisations)
            yield world
        finally:
            await world.referral.stop()
    finally:
        await stop_stack(stack)


@pytest.fixture
async def clocked(tmp_path: Path, backend: str) -> AsyncIterator[ReferralWorld]:
    """The referral world on a test clock started at `start_at()`."""
    settings = make_settings(tmp_path, backend, nats_url(), test_clock=True)
    try:
        await set_clock(settings, start_at())
        async with referral_stack(settings) as world:
            yield world
    finally:
        await delete_clock(settings)
        await drop_test_resources(settings)


@pytest.fixture
async def clocked_world(tmp_path: Path, backend: str) -> AsyncIterator[World]:
    """The consent world (the journal service, one organisation of each kind) on a test
    clock started at `start_at()`."""
    settings = make_settings(tmp_path, backend, nats_url(), test_clock=True)
    try:
        await set_clock(settings, start_at())
        stack = await start_stack(settings)
        journal = ServiceRuntime(journal_spec(), settings)
        try:
            await journal.start()
            organisations = [consent_organisation(orgnr) for orgnr in CONSENT_KINDS]
            yield World(stack, journal, await register(stack, organisations))
        finally:
            await journal.stop()
            await stop_stack(stack)
    finally:
        await delete_clock(settings)
        await drop_test_resources(settings)


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """`barnebro clock …` against the test stack's NATS and prefix."""
    env = {**os.environ, "NATS_URL": settings.nats_url,
           "BARNEBRO_NATS_PREFIX": settings.nats_prefix}  # fmt: skip
    env.pop("BARNEBRO_TEST_CLOCK", None)
    return subprocess.run(
        [*BARNEBRO, "clock", *args], capture_output=True, text=True, env=env, timeout=60
    )


def ext(resource: dict[str, Any], url: str) -> list[Any]:
    return [e for e in resource.get("extension", []) if e["url"] == url]


async def test_a_referral_deadline_passes_when_the_clock_is_advanced(
    clocked: ReferralWorld,
) -> None:
    start = start_at()
    referral = await clocked.submit(await clocked.child())
    task, _ = await clocked.task(referral)
    # Stamped with the test clock's time, by the referral and the directory alike.
    assert task["authoredOn"][:10] == start.date().isoformat()
    assert task["meta"]["lastUpdated"][:10] == start.date().isoformat()
    organisation = await clocked.stack.call(
        "GET", f"Organization/{clocked.organisations[BUP]}", token=clocked.stack.operator_token()
    )
    assert organisation.json()["meta"]["lastUpdated"][:10] == start.date().isoformat()
    deadline = ext(task, ASSESSMENT_DEADLINE_EXT)[0]["valueDate"]
    assert deadline > start.date().isoformat()
    assert not ext(task, BREACH_EXT)

    shown = cli(clocked.stack.settings)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(start.date().isoformat())
    advanced_to = cli(clocked.stack.settings, "advance", "20d")
    assert advanced_to.returncode == 0, advanced_to.stderr
    assert advanced_to.stdout.startswith((start + timedelta(days=20)).date().isoformat())

    # The deadline monitor (which would otherwise wait its 15 minutes) runs at once.
    async def overdue() -> bool:
        reply = await clocked.fhir(
            "GET", "Task?deadline-breach=assessment-overdue&status=requested", by=BUP
        )
        return [e["resource"]["id"] for e in reply.json().get("entry", [])] == [referral.task_id]

    await wait_for(overdue)
    task, _ = await clocked.task(referral)
    assert [e["valueCoding"]["code"] for e in ext(task, BREACH_EXT)] == ["assessment-overdue"]
    assert task["lastModified"][:10] == (start + timedelta(days=20)).date().isoformat()


async def test_a_parents_consent_ends_when_the_clock_passes_the_16th_birthday(
    clocked_world: World,
) -> None:
    world = clocked_world
    child = await world.child(16, days=10)  # 16 ten days after the clock's start
    both = sharing(child, signature(child.mother), signature(child.father), child_view=HEARD)
    granted = await world.api("POST", "consents", both)
    assert granted.status == 201 and granted.json()["status"] == "active", granted.body
    last_day = (start_at() + timedelta(days=9)).date().isoformat()
    assert granted.json()["consent"]["valid_until"] == last_day
    consent = f"Consent/{granted.json()['id']}"
    assert (await world.fhir("GET", consent, by=BVT)).json()["status"] == "active"

    moved = cli(world.stack.settings, "advance", "10d")
    assert moved.returncode == 0, moved.stderr

    # The consent sweep (which would otherwise wait its hour) ends it at once.
    async def ended() -> bool:
        reply = await world.fhir("GET", consent, by=BVT)
        return reply.status == 200 and reply.json()["status"] == "inactive"

    await wait_for(ended)
    listed = (await world.api("GET", f"patients/{child.id}/consents")).json()["consents"]
    assert listed[0]["ended_because"] == "authority-changed"


async def test_the_clock_is_never_moved_back(clocked: ReferralWorld) -> None:
    settings = clocked.stack.settings
    earlier = (start_at() - timedelta(days=1)).date().isoformat()
    refused = cli(settings, "set", f"{earlier}T09:00")
    assert refused.returncode == 1
    assert "forward only" in refused.stderr
    refused = cli(settings, "advance", "-1d")
    assert refused.returncode != 0
    shown = cli(settings)
    assert shown.stdout.startswith(start_at().date().isoformat()), shown.stdout
    later = (start_at() + timedelta(days=32)).date().isoformat()
    moved = cli(settings, "set", f"{later}T09:00")
    assert moved.returncode == 0, moved.stderr
    assert moved.stdout.startswith(f"{later}T09:00:00")


async def test_a_stack_not_in_test_mode_is_never_moved(stack: Stack) -> None:
    refused = cli(stack.settings, "advance", "3d")
    assert refused.returncode == 1
    assert "does not run with a test clock" in refused.stderr
    # Even one who writes the entry directly (NATS access) moves nothing: the services
    # and the gateway of a stack without BARNEBRO_TEST_CLOCK never read it.
    await set_clock(stack.settings, datetime.now(UTC) + timedelta(days=400))
    try:
        reply = await stack.call("POST", "Practitioner", {"resourceType": "Practitioner"})
        assert reply.status == 201, reply.body
        stamped = datetime.fromisoformat(reply.json()["meta"]["lastUpdated"])
        assert stamped - datetime.now(UTC) < timedelta(days=1)
        metadata = await stack.call("GET", "metadata")
        assert metadata.json()["date"] == clock.today().isoformat()
    finally:
        await delete_clock(stack.settings)


# --- barnebro up --clock: separate processes agree ----------------------------------------


@pytest.mark.services
def test_up_with_a_clock_runs_every_process_on_it(tmp_path: Path) -> None:
    data_dir, port = tmp_path / "data", free_port()
    base = f"http://127.0.0.1:{port}/fhir"
    start = start_at().date()
    process = start_up(data_dir, port, "--clock", f"{start}T09:00")
    try:
        bearer = token(data_dir)
        # The gateway (the CapabilityStatement's date) and the directory (a record's
        # lastUpdated) are separate processes; both tell the test clock's time.
        status, metadata = request("GET", f"{base}/metadata", bearer)
        assert status == 200 and isinstance(metadata, dict)
        assert metadata["date"] == start.isoformat()
        status, created = request("POST", f"{base}/Practitioner", bearer, PRACTITIONER)
        assert status == 201 and isinstance(created, dict), created
        assert created["meta"]["lastUpdated"].startswith(start.isoformat())

        local = [*BARNEBRO, "clock", "--data-dir", str(data_dir)]
        env = embedded_env()
        moved = subprocess.run([*local, "advance", "3d"], capture_output=True,
                               text=True, env=env, timeout=60)  # fmt: skip
        assert moved.returncode == 0, moved.stderr
        later = start + timedelta(days=3)
        assert moved.stdout.startswith(f"{later}T09:"), moved.stdout

        def agreed() -> bool:
            _, metadata = request("GET", f"{base}/metadata", bearer)
            return isinstance(metadata, dict) and metadata["date"] == later.isoformat()

        deadline = time.monotonic() + 10  # each process follows the clock's entry
        while not agreed():
            assert time.monotonic() < deadline, "the gateway did not follow the clock"
            time.sleep(0.1)
        status, updated = request(
            "PUT", f"{base}/Practitioner/{created['id']}", bearer, {**created, "active": True}
        )
        assert status == 200 and isinstance(updated, dict), updated
        assert updated["meta"]["lastUpdated"].startswith(later.isoformat())
        refused = subprocess.run([*local, "set", f"{start}T09:00"], capture_output=True,
                                 text=True, env=env, timeout=60)  # fmt: skip
        assert refused.returncode == 1 and "forward only" in refused.stderr
    finally:
        assert stop(process) == 0
    # The clock moves forward only, across restarts too.
    again = subprocess.run(
        [*BARNEBRO, "up", "--port", str(port), "--data-dir", str(data_dir), "--clock",
         f"{start}T09:00"],
        capture_output=True, text=True, env=embedded_env(), timeout=60,
    )  # fmt: skip
    assert again.returncode == 1
    assert "forward only" in again.stderr
    # Restarted without --clock, the data directory stays on its test clock.
    restarted = start_up(data_dir, port)
    try:
        status, metadata = request("GET", f"{base}/metadata", token(data_dir))
        assert isinstance(metadata, dict) and metadata["date"] == later.isoformat()
    finally:
        assert stop(restarted) == 0


# --- how far the clock may go --------------------------------------------------------------


def test_the_clock_shows_no_later_than_its_last_year() -> None:
    assert parse_moment("2199-12-31T23:59") < LATEST
    for too_late in ("2200-01-01T00:00", "9999-12-31T23:59"):
        with pytest.raises(ClockRefused, match="no later than the year 2199"):
            parse_moment(too_late)
    for beyond in ("9999-12-31T23:59-05:00", "0001-01-01T00:00+01:00"):
        with pytest.raises(ClockRefused, match="not an instant the test clock can show"):
            parse_moment(beyond)
    for huge in ("100000w", "99999999999999999999w", "1" * 5000 + "d"):
        step_or_refusal: Any
        try:
            step_or_refusal = advanced(timedelta(0), parse_step(huge), REAL)
        except ClockRefused as exc:
            step_or_refusal = exc
        assert isinstance(step_or_refusal, ClockRefused), huge
        assert "no later than the year 2199" in str(step_or_refusal)
    near = LATEST - REAL - timedelta(days=1)
    assert advanced(timedelta(0), timedelta(hours=23), REAL + near) == timedelta(hours=23)
    with pytest.raises(ClockRefused, match="no later than"):
        advanced(near, timedelta(days=2), REAL)
    with pytest.raises(ClockRefused, match="no later than"):
        offset_to(LATEST, timedelta(0), REAL)
    stored = timedelta(days=700_000)  # what an unbounded clock could have written
    with pytest.raises(ClockRefused, match="stored offset is too late"):
        showing(stored, REAL)
    with pytest.raises(ClockRefused, match="stored offset is too late"):
        offset_to(REAL + timedelta(days=1), stored, REAL)


async def test_a_clock_beyond_its_last_year_is_refused_and_ignored(
    clocked: ReferralWorld, caplog: pytest.LogCaptureFixture
) -> None:
    settings = clocked.stack.settings
    for args in (
        ("advance", "100000w"),
        ("set", "9999-12-31T23:59"),
        ("advance", "99999999999999999999w"),
    ):
        refused = cli(settings, *args)
        assert refused.returncode == 1, (args, refused.stdout)
        assert "no later than the year 2199" in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr
    assert cli(settings).stdout.startswith(start_at().date().isoformat())

    # An entry beyond the bound written straight into NATS: every process keeps its time.
    nc = await nats.connect(settings.nats_url)
    try:
        kv = await nc.jetstream().key_value(bucket_name(settings))
        await kv.put("offset", encode(timedelta(days=2_900_000)))
    finally:
        await nc.close()
    await wait_for(lambda: _said(caplog, "ignoring the test clock entry"))
    metadata = await clocked.stack.call("GET", "metadata")
    assert metadata.status == 200 and metadata.json()["date"] == start_at().date().isoformat()
    search = await clocked.fhir("GET", "Task", by=BUP)
    assert search.status == 200, search.body
    shown = cli(settings)
    assert shown.returncode == 1 and "stored offset is too late" in shown.stderr, shown.stderr
    assert "Traceback" not in shown.stderr


async def _said(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return any(text in record.getMessage() for record in caplog.records)


def test_up_refuses_a_clock_beyond_its_last_year(tmp_path: Path) -> None:
    refused = subprocess.run(
        [*BARNEBRO, "up", "--port", str(free_port()), "--data-dir", str(tmp_path / "data"),
         "--clock", "9999-12-31T23:59"],
        capture_output=True, text=True, env=embedded_env(), timeout=60,
    )  # fmt: skip
    assert refused.returncode == 1
    assert "no later than the year 2199" in refused.stderr
    assert "Traceback" not in refused.stderr


@pytest.mark.services
def test_only_up_with_a_clock_puts_a_data_directory_on_a_test_clock(tmp_path: Path) -> None:
    data_dir, port = tmp_path / "data", free_port()
    base = f"http://127.0.0.1:{port}/fhir"
    process = start_up(data_dir, port)
    try:
        # The commands that talk to the stack find its port in the data directory.
        added = subprocess.run(
            [*BARNEBRO, "org", "add", "--orgnr", "910000152", "--name", "BUP Test",
             "--kind", "bup", "--data-dir", str(data_dir)],
            capture_output=True, text=True, env=embedded_env(), timeout=60,
        )  # fmt: skip
        assert added.returncode == 0, added.stdout + added.stderr
        assert "910000152: created" in added.stdout
        # One with the stack's NATS credentials makes the clock's bucket: the data
        # directory still does not run on a test clock.
        url = local_nats_url(data_dir)
        assert url is not None
        asyncio.run(set_clock(Settings(nats_url=url), start_at()))
        refused = subprocess.run(
            [*BARNEBRO, "clock", "advance", "3d", "--data-dir", str(data_dir)],
            capture_output=True, text=True, env=embedded_env(), timeout=60,
        )  # fmt: skip
        assert refused.returncode == 1
        assert "does not run with a test clock" in refused.stderr
    finally:
        assert stop(process) == 0
    restarted = start_up(data_dir, port)
    try:
        status, metadata = request("GET", f"{base}/metadata", token(data_dir))
        assert status == 200 and isinstance(metadata, dict)
        assert metadata["date"] == clock.today().isoformat(), "real time, not the bucket's"
    finally:
        assert stop(restarted) == 0
