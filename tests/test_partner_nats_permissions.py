"""The NATS user of a partner on the `nats` channel, as deploy/README.md gives it, on a
nats-server of the test's own.

The server runs the guide's `authorization` block with the guide's partner entry added for
partner organisations (the entry's text, with only the organisation number replaced), so the
guide and this test cannot drift. The subscriptions service's own user creates the partner
stream and publishes to the partners' subjects with the service's code; then partner A reads
and acknowledges its own notification through its durable consumer, and NATS refuses it
everything of partner B's and the partner subjects as a whole. Partner C has the guide's
variant without the CREATE permission: it reads through a consumer the operator made, and
cannot redefine it.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import nats
import nats.errors
import orjson
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from services.stack import nats_server_binary, wait_for_port
from services.subscriptions import ensure_partner_stream
from services.subscriptions.channels import NatsChannel, partner_subject, partner_subjects
from services.subscriptions.domain.vocabulary import SUBSCRIPTION_HEADER
from shared.config import Settings
from shared.runtime import ServiceRuntime, ServiceSpec
from shared.transport.nats_connection import close, connect
from shared.transport.wire import request_subject
from tests.servers import NatsProcess
from tests.support import wait_for
from tests.test_deploy import GUIDE_PREFIX, readme, section

GUIDE_PARTNER = "974760673"
"""The organisation the guide's partner entry is written for: partner A."""
PARTNER_B = "910000071"
PARTNER_C = "921000006"
"""A partner whose consumer the operator made: its entry lacks the guide's CREATE line."""
SETTINGS = Settings(nats_prefix=GUIDE_PREFIX)
STREAM = SETTINGS.partner_stream_name
REFUSED = 0.5
"""Seconds to wait for an answer NATS must not give (a refused request has no reply)."""


def service_users() -> str:
    """The guide's `authorization` block (the barnebro processes' users)."""
    block = re.search(r"```\n(authorization \{.*?\n\})\n```", readme(), re.DOTALL)
    assert block, "no authorization block in deploy/README.md"
    return block.group(1)


def partner_entry(orgnr: str) -> str:
    """The guide's user entry for a partner organisation, written for `orgnr`."""
    text = section("Partners on the nats channel")
    blocks: list[str] = re.findall(r"```\n(.*?)\n```", text, re.DOTALL)
    entries = [block for block in blocks if "{ user: partner-" in block]
    assert len(entries) == 1, "expected one partner user entry in the guide"
    assert entries[0].count(GUIDE_PARTNER) >= 5, f"the entry is not written for {GUIDE_PARTNER}"
    return entries[0].replace(GUIDE_PARTNER, orgnr)


def without_create(entry: str) -> str:
    """The entry for a partner whose consumer the operator creates (the guide's variant)."""
    lines = entry.splitlines()
    kept = [line for line in lines if '"$JS.API.CONSUMER.CREATE.' not in line]
    assert len(kept) == len(lines) - 1, "expected one CREATE line in the partner entry"
    return "\n".join(kept)


def consumer_name(orgnr: str) -> str:
    """The partner's durable consumer, named like its NATS user."""
    return f"partner-{orgnr}"


def server_config(passwords: dict[str, str]) -> str:
    """The guide's users and the partner entries for A, B and C, with a password for every
    `$NAME` the entries use."""
    users = service_users()
    assert users.endswith("\n  ]\n}"), "the users list should close the block"
    entries = [partner_entry(GUIDE_PARTNER), partner_entry(PARTNER_B)]
    partners = "\n".join([*entries, without_create(partner_entry(PARTNER_C))])
    authorization = users.removesuffix("\n  ]\n}") + "\n" + partners + "\n  ]\n}"
    names = set(re.findall(r"\bpassword:\s*\$(\w+)", authorization))
    passwords.update({name: f"pw-{name.lower()}" for name in sorted(names)})
    variables = "".join(f'{name}: "{value}"\n' for name, value in passwords.items())
    return variables + authorization + "\n"


class ConfiguredNats(NatsProcess):
    """A nats-server of the test's own, with a configuration file (here: the users)."""

    def __init__(self, store_dir: Path, config: Path) -> None:
        super().__init__(store_dir)
        self.config = config

    def start(self) -> None:
        check = subprocess.run(
            [nats_server_binary(), "-c", str(self.config), "-t"], capture_output=True, text=True
        )
        assert check.returncode == 0, f"nats-server refuses the configuration: {check.stderr}"
        self.process = subprocess.Popen(
            [nats_server_binary(), "-c", str(self.config), "-a", "127.0.0.1",
             "-p", str(self.port), "-js", "-sd", str(self.store_dir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        if not wait_for_port(self.port, 10):
            raise RuntimeError("nats-server did not start")


class Users:
    """The test's nats-server and the password of each user."""

    def __init__(self, server: ConfiguredNats, passwords: dict[str, str]) -> None:
        self.server = server
        self.passwords = passwords

    def url(self, user: str, variable: str) -> str:
        return f"nats://{user}:{self.passwords[variable]}@127.0.0.1:{self.server.port}"


@pytest.fixture(scope="module")
def users(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Users]:
    directory = tmp_path_factory.mktemp("partner-nats")
    passwords: dict[str, str] = {}
    config = directory / "nats.conf"
    config.write_text(server_config(passwords), encoding="utf-8")
    server = ConfiguredNats(directory / "store", config)
    server.start()
    try:
        yield Users(server, passwords)
    finally:
        server.stop()


class Partner:
    """A partner system connected as its organisation's user, collecting the errors NATS
    reports to it (permissions violations arrive asynchronously)."""

    def __init__(self, orgnr: str) -> None:
        self.orgnr = orgnr
        self.errors: list[str] = []
        self.nc = NATS()

    async def connect(self, users: Users) -> None:
        async def collect(exc: Exception) -> None:
            self.errors.append(str(exc))

        await self.nc.connect(
            users.url(consumer_name(self.orgnr), f"PARTNER_{self.orgnr}_PASSWORD"),
            inbox_prefix=f"_INBOX.partner-{self.orgnr}",
            error_cb=collect,
            max_reconnect_attempts=0,
        )

    @property
    def subject(self) -> str:
        return partner_subject(GUIDE_PREFIX, self.orgnr)

    def violations(self) -> str:
        return "\n".join(e.lower() for e in self.errors if "permissions violation" in e.lower())


@dataclass(frozen=True)
class Service:
    """The subscriptions service's connection and its NATS channel."""

    nc: NATS
    channel: NatsChannel


@pytest.fixture
async def service(users: Users) -> AsyncIterator[Service]:
    """The subscriptions service's NATS channel, connected as the guide's
    `barnebro-subscriptions`, after the service has made sure of the partner stream."""
    settings = SETTINGS.model_copy(
        update={"nats_url": users.url("barnebro-subscriptions", "SUBSCRIPTIONS_PASSWORD")}
    )
    nc = await connect(settings, "barnebro-subscriptions")
    runtime = ServiceRuntime(ServiceSpec("subscriptions", []), settings)
    runtime.nc = nc
    try:
        await ensure_partner_stream(runtime)
        info = await nc.jetstream().stream_info(STREAM)
        assert info.config.subjects == [partner_subjects(GUIDE_PREFIX)]
        yield Service(nc, NatsChannel(nc, GUIDE_PREFIX, 5.0))
    finally:
        await close(nc)


@pytest.fixture
async def partners(users: Users) -> AsyncIterator[tuple[Partner, Partner, Partner]]:
    a, b, c = Partner(GUIDE_PARTNER), Partner(PARTNER_B), Partner(PARTNER_C)
    for partner in (a, b, c):
        await partner.connect(users)
    try:
        yield a, b, c
    finally:
        for partner in (a, b, c):
            await partner.nc.close()


def notification(orgnr: str, number: int) -> bytes:
    return orjson.dumps({"resourceType": "Bundle", "type": "history", "id": f"{orgnr}-{number}"})


async def send(service: Service, orgnr: str, number: int) -> bytes:
    """Notification `number` of the subscription `sub-<orgnr>`, as the dispatcher sends it."""
    body = notification(orgnr, number)
    message_id = f"sub-{orgnr}:event-notification:{number}-{number}"
    assert await service.channel.send(f"sub-{orgnr}", orgnr, message_id, body) is None
    return body


async def refused(partner: Partner, what: str) -> None:
    """NATS reported a permissions violation about `what` to the partner (nats-py passes the
    server's message on in lower case)."""
    await partner.nc.flush()

    async def reported() -> bool:
        return what.lower() in partner.violations()

    try:
        await wait_for(reported, limit=5)
    except AssertionError:
        raise AssertionError(f"not refused: {what}; errors {partner.errors}") from None


async def test_a_partner_reads_its_own_notifications_and_nothing_else(
    service: Service, partners: tuple[Partner, Partner, Partner]
) -> None:
    a, b, _ = partners
    first_a = await send(service, a.orgnr, 1)
    first_b = await send(service, b.orgnr, 1)
    await send(service, a.orgnr, 1)  # the same notification again: the stream drops it

    # A: its durable consumer on its own subject, one fetch, one acknowledgement.
    js_a = a.nc.jetstream()
    reader = await js_a.pull_subscribe(a.subject, durable=consumer_name(a.orgnr), stream=STREAM)
    (message,) = await reader.fetch(10, timeout=5)
    assert message.data == first_a
    assert message.headers is not None
    assert message.headers[SUBSCRIPTION_HEADER] == f"sub-{a.orgnr}"
    assert message.headers["Nats-Msg-Id"] == f"sub-{a.orgnr}:event-notification:1-1"
    await message.ack_sync()
    info = await js_a.consumer_info(STREAM, consumer_name(a.orgnr))
    assert info.config.filter_subject == a.subject
    assert (info.num_pending, info.num_ack_pending) == (0, 0), "the repeat was not dropped"
    assert not a.violations(), a.errors

    # B's consumer, by B, to be tried by A; B's notification is still waiting for B.
    js_b = b.nc.jetstream()
    reader_b = await js_b.pull_subscribe(b.subject, durable=consumer_name(b.orgnr), stream=STREAM)

    # A may not make a consumer of B's subject, under its own name or B's.
    refusing = a.nc.jetstream(timeout=REFUSED)
    for name in (consumer_name(a.orgnr), consumer_name(b.orgnr)):
        config = ConsumerConfig(name=name, durable_name=name, filter_subject=b.subject)
        with pytest.raises(nats.errors.TimeoutError):
            await refusing.add_consumer(STREAM, config)
        await refused(a, f"$JS.API.CONSUMER.CREATE.{STREAM}.{name}.{b.subject}")
    # Nor one on the whole stream, nor read B's consumer, nor the stream past the consumers.
    with pytest.raises(nats.errors.TimeoutError):
        await refusing.add_consumer(STREAM, ConsumerConfig(name="all"))
    await refused(a, f"$JS.API.CONSUMER.CREATE.{STREAM}.all")
    stolen = await refusing.pull_subscribe_bind(consumer_name(b.orgnr), STREAM)
    with pytest.raises(nats.errors.TimeoutError):
        await stolen.fetch(1, timeout=REFUSED)
    await refused(a, f"$JS.API.CONSUMER.MSG.NEXT.{STREAM}.{consumer_name(b.orgnr)}")
    with pytest.raises(nats.errors.TimeoutError):
        await refusing.get_msg(STREAM, 2)
    await refused(a, f"$JS.API.STREAM.MSG.GET.{STREAM}")

    # A may not listen on the partner subjects, B's subject or B's replies.
    heard = []

    async def overheard(msg: Msg) -> None:
        heard.append(msg.subject)

    for subject in (partner_subjects(GUIDE_PREFIX), b.subject, f"_INBOX.partner-{b.orgnr}.>"):
        await a.nc.subscribe(subject, cb=overheard)
        await refused(a, f'Subscription to "{subject}"')

    # B reads its notification (untouched by A) and a new one; A hears none of it.
    second_b = await send(service, b.orgnr, 2)
    got = await reader_b.fetch(10, timeout=5)
    if len(got) < 2:
        got += await reader_b.fetch(10, timeout=5)
    assert [m.data for m in got] == [first_b, second_b]
    for m in got:
        await m.ack_sync()
    assert not b.violations(), b.errors
    second_a = await send(service, a.orgnr, 2)
    (message,) = await reader.fetch(10, timeout=5)
    assert message.data == second_a
    await message.ack_sync()
    await a.nc.flush()
    assert heard == [], f"partner A heard {heard}"


async def test_a_partner_whose_consumer_the_operator_made_cannot_redefine_it(
    service: Service, partners: tuple[Partner, Partner, Partner]
) -> None:
    _, _, c = partners
    # The operator's `nats consumer add`, here as the service's user (it may use $JS.API).
    await service.nc.jetstream().add_consumer(
        STREAM,
        ConsumerConfig(
            name=consumer_name(c.orgnr),
            durable_name=consumer_name(c.orgnr),
            filter_subject=c.subject,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
        ),
    )
    first = await send(service, c.orgnr, 1)
    reader = await c.nc.jetstream().pull_subscribe(
        c.subject, durable=consumer_name(c.orgnr), stream=STREAM
    )
    (message,) = await reader.fetch(10, timeout=5)
    assert message.data == first
    await message.ack_sync()
    assert not c.violations(), c.errors

    # Without the CREATE permission it cannot turn its consumer into a push consumer that
    # delivers to another subject of the account.
    pushed = ConsumerConfig(
        name=consumer_name(c.orgnr),
        durable_name=consumer_name(c.orgnr),
        filter_subject=c.subject,
        deliver_subject=request_subject(GUIDE_PREFIX, "Task"),
    )
    with pytest.raises(nats.errors.TimeoutError):
        await c.nc.jetstream(timeout=REFUSED).add_consumer(STREAM, pushed)
    await refused(c, f"$JS.API.CONSUMER.CREATE.{STREAM}.{consumer_name(c.orgnr)}.{c.subject}")
    info = await c.nc.jetstream().consumer_info(STREAM, consumer_name(c.orgnr))
    assert info.config.deliver_subject is None
