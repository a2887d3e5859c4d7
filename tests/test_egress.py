"""Where notifications may go: public addresses only, unless the operator allows more.

Every case is decided by `EgressPolicy` with a stub resolver, or refused before any
connection is opened: nothing here sends a packet anywhere.
"""

from __future__ import annotations

import socket

import pytest

from services.subscriptions.channels import RestHook
from services.subscriptions.domain.settings import read_settings
from shared.transport.egress import EgressPolicy, PinnedResolver, Refused
from tests.subscription_world import subscription

PUBLIC = "93.184.216.34"
NOT_PUBLIC = [
    "10.0.0.1", "172.16.5.4", "192.168.1.1", "127.0.0.1", "127.8.8.8", "0.0.0.0",
    "169.254.169.254", "100.64.0.1", "224.0.0.1", "255.255.255.255", "192.0.2.1",
    "::1", "::", "fe80::1", "fd00:ec2::254", "fc00::1", "ff02::1", "2001:db8::1",
    "::ffff:10.0.0.1", "::ffff:127.0.0.1", "2002:a00:1::1",
    # IPv4 inside IPv6 in the other forms: NAT64 (well-known and local-use prefixes),
    # IPv4-compatible, IPv4-translated; and IPv6 outside global unicast.
    "64:ff9b::a9fe:a9fe", "64:ff9b::a00:1", "64:ff9b::7f00:1", "64:ff9b:1::a9fe:a9fe",
    "::a9fe:a9fe", "::10.0.0.1", "::127.0.0.2", "::ffff:0:a9fe:a9fe", "::ffff:0:7f00:1",
    "64:ff9b::5db8:d822", "::ffff:93.184.216.34", "fec0::1", "feff::1", "fe00::1",
    "5f00::1", "3fff::1", "2002:808:808::1", "2002::1",
]  # fmt: skip


def resolving(*addresses: str) -> EgressPolicy:
    async def resolver(host: str, port: int) -> list[str]:
        return list(addresses)

    return EgressPolicy(resolver=resolver)


def unresolved(allowed: tuple[str, ...] = ()) -> EgressPolicy:
    async def resolver(host: str, port: int) -> list[str]:
        raise AssertionError("no name may be looked up")

    return EgressPolicy(allowed, resolver=resolver)


async def test_a_public_address_is_sent_to() -> None:
    assert await resolving(PUBLIC).addresses("partner.no", 443) == [PUBLIC]
    await resolving(PUBLIC).check_url("https://partner.no/hook")
    public_v6 = "2606:2800:220:1:248:1893:25c8:1946"
    assert await resolving(public_v6).addresses("partner.no", 443) == [public_v6]


@pytest.mark.parametrize("address", NOT_PUBLIC)
async def test_no_address_that_is_not_public(address: str) -> None:
    with pytest.raises(Refused):
        await resolving(address).check_url("https://partner.no/hook")
    literal = f"[{address}]" if ":" in address else address
    with pytest.raises(Refused):
        await unresolved().check_url(f"https://{literal}:8443/hook")


async def test_one_private_address_among_public_ones_refuses_the_name() -> None:
    with pytest.raises(Refused, match=r"10\.1\.1\.1"):
        await resolving(PUBLIC, "10.1.1.1").check_url("https://rebinding.example/hook")


async def test_a_name_that_does_not_resolve_is_refused() -> None:
    async def failing(host: str, port: int) -> list[str]:
        raise socket.gaierror("no such name")

    with pytest.raises(Refused, match="does not resolve"):
        await EgressPolicy(resolver=failing).check_url("https://nowhere.example/hook")


async def test_the_operator_allows_networks_and_names() -> None:
    async def internal(host: str, port: int) -> list[str]:
        return ["10.1.2.3"]

    policy = EgressPolicy(["10.1.0.0/16", "partner.internal"], resolver=internal)
    assert await policy.addresses("hooks.internal", 443) == ["10.1.2.3"]
    await unresolved(("partner.internal",)).check_url("https://partner.internal/hook")
    with pytest.raises(Refused):
        await EgressPolicy(["10.2.0.0/16"], resolver=internal).check_url("https://x.internal/")


async def test_connections_go_only_to_the_addresses_checked() -> None:
    resolver = PinnedResolver(resolving(PUBLIC, "2606:2800:220:1::1"))
    found = await resolver.resolve("partner.no", 443, socket.AF_UNSPEC)
    assert [(r["host"], r["flags"]) for r in found] == [
        (PUBLIC, socket.AI_NUMERICHOST),
        ("2606:2800:220:1::1", socket.AI_NUMERICHOST),
    ]
    only_v4 = await resolver.resolve("partner.no", 443, socket.AF_INET)
    assert [r["host"] for r in only_v4] == [PUBLIC]
    with pytest.raises(OSError, match=r"private"):
        await PinnedResolver(resolving("10.0.0.1")).resolve("partner.no", 443)


async def test_a_delivery_to_an_address_that_is_not_public_fails_before_connecting() -> None:
    hook = RestHook(unresolved())
    await hook.start()
    try:
        body = subscription("referral-status", endpoint="http://169.254.169.254/latest/meta-data")
        settings, problems = read_settings(body, allow_http=True)
        assert settings is not None and not problems
        reason = await hook.send("Subscription/1", settings, b"{}")
    finally:
        await hook.stop()
    assert reason is not None and "not sent to" in reason and "link-local" in reason
