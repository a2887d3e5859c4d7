"""Shared fixtures: a running stack per test on SQLite and on PostgreSQL; and the tiers.

Every test is in one of two tiers, marked at collection: `unit` needs nothing but Python
(domain rules, decisions, parsing, the store on SQLite files); `services` needs NATS with
JetStream and PostgreSQL, or starts a whole stack of processes (any test that uses a
fixture of `SERVICE_FIXTURES`, or is marked `services`). `pytest -m unit` runs the
first in seconds on a bare machine. When the session will run a `services` test and the
machine runs no NATS or PostgreSQL, the session starts its own (`tests/servers.py`).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from services.careplan import careplan_spec
from services.referral import referral_spec
from services.subscriptions import subscriptions_spec
from shared.runtime import ServiceRuntime
from tests import stream_keeper
from tests.careplan_world import CarePlanWorld
from tests.consent_world import KINDS, World, organisation
from tests.journal_service import journal_spec
from tests.referral_world import KINDS as REFERRAL_KINDS
from tests.referral_world import ReferralWorld
from tests.referral_world import organisation as referral_organisation
from tests.servers import STARTED, start_missing, stop_all
from tests.subscription_world import SubscriptionWorld, subscription_settings
from tests.support import Stack, drop_test_resources, nats_url, start_stack, stop_stack
from tests.support import test_settings as make_settings

# The services count calendar days in Norway (`shared.clock.today`); the tests' own
# `date.today()` must name the same day, also in the hour around midnight UTC.
os.environ["TZ"] = "Europe/Oslo"
time.tzset()

SERVICE_FIXTURES = frozenset(
    {"backend", "stack", "world", "referrals", "careplans", "subscriptions",
     "stack_on_own_nats", "world_on_own_nats", "nats_users", "partners", "barnebro", "permissions"}
)  # fmt: skip
"""Fixtures that start NATS, PostgreSQL or a whole stack."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        needs = SERVICE_FIXTURES & set(getattr(item, "fixturenames", ()))
        if needs or item.get_closest_marker("services") is not None:
            item.add_marker(pytest.mark.services)
        else:
            item.add_marker(pytest.mark.unit)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the servers the `services` tests need and the machine does not run, once,
    before the first test."""
    if session.config.option.collectonly:
        return
    if any(item.get_closest_marker("services") is not None for item in session.items):
        start_missing()
        stream_keeper.keep(nats_url())


def pytest_unconfigure(config: pytest.Config) -> None:
    stream_keeper.release()
    stop_all()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if STARTED.notes:
        terminalreporter.write_line("servers started for this session: " + ", ".join(STARTED.notes))
    for problem in STARTED.problems.values():
        terminalreporter.write_line(problem)


@pytest.fixture(autouse=True)
def no_threads_left_running() -> Iterator[None]:
    """A test must stop what it starts: a service runtime left running keeps its SQLite
    connection thread alive, and the test run then never exits."""
    before = set(threading.enumerate())
    yield
    leaked = [t for t in threading.enumerate() if t not in before and not t.daemon]
    for thread in leaked:
        thread.join(timeout=2)
    running = [t.name for t in leaked if t.is_alive()]
    assert not running, f"the test left threads running: {running}"


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@pytest.fixture
async def stack(tmp_path: Path, backend: str) -> AsyncIterator[Stack]:
    settings = make_settings(tmp_path, backend, nats_url())
    running = await start_stack(settings)
    try:
        yield running
    finally:
        await stop_stack(running)
        await drop_test_resources(settings)


async def register(stack: Stack, organisations: list[dict[str, Any]]) -> dict[str, str]:
    """Register organisations in the directory, as the operator does: organisasjonsnummer →
    Organization id."""
    ids = {}
    for organization in organisations:
        ids[organization["identifier"][0]["value"]] = await stack.admit_resource(organization)
    return ids


@pytest.fixture
async def world(stack: Stack) -> AsyncIterator[World]:
    """The stack plus the journal test service and one organisation of each kind."""
    journal = ServiceRuntime(journal_spec(), stack.settings)
    await journal.start()
    try:
        organisations = await register(stack, [organisation(orgnr) for orgnr in KINDS])
        yield World(stack, journal, organisations)
    finally:
        await journal.stop()


@pytest.fixture
async def referrals(stack: Stack) -> AsyncIterator[ReferralWorld]:
    """The stack plus the referral service and one organisation of each kind taking part."""
    world = ReferralWorld(stack, ServiceRuntime(referral_spec(stack.settings), stack.settings), {})
    await world.referral.start()
    try:
        world.organisations = await register(
            stack, [referral_organisation(orgnr) for orgnr in REFERRAL_KINDS]
        )
        yield world
    finally:
        await world.referral.stop()  # the one running now: a test may have restarted it


@pytest.fixture
async def careplans(referrals: ReferralWorld) -> AsyncIterator[CarePlanWorld]:
    """The referral world plus the care plan service."""
    settings = referrals.stack.settings
    world = CarePlanWorld(referrals, ServiceRuntime(careplan_spec(settings), settings))
    await world.careplan.start()
    try:
        yield world
    finally:
        await world.careplan.stop()  # the one running now: a test may have restarted it


@pytest.fixture
async def subscriptions(referrals: ReferralWorld) -> AsyncIterator[SubscriptionWorld]:
    """The referral world plus the subscriptions service, with test timings."""
    settings = subscription_settings(referrals.stack.settings)
    world = SubscriptionWorld(referrals, ServiceRuntime(subscriptions_spec(settings), settings))
    await world.service.start()
    try:
        yield world
    finally:
        await world.service.stop()  # the one running now: a test may have restarted it
        for partner in world.partners:
            await partner.stop()
