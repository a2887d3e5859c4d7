"""Shared fixtures: a running stack per test on SQLite and on PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from services.careplan import careplan_spec
from services.referral import referral_spec
from services.subscriptions import subscriptions_spec
from shared.runtime import ServiceRuntime
from tests.careplan_world import CarePlanWorld
from tests.consent_world import KINDS, World, organisation
from tests.journal_service import journal_spec
from tests.referral_world import KINDS as REFERRAL_KINDS
from tests.referral_world import ReferralWorld
from tests.referral_world import organisation as referral_organisation
from tests.subscription_world import SubscriptionWorld, subscription_settings
from tests.support import Stack, drop_test_resources, nats_url, start_stack, stop_stack
from tests.support import test_settings as make_settings


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
