"""Where barnebro may send a request of its own: public addresses only.

A partner names the URL its notifications go to, so a partner could name an address inside
the deployment (the database, NATS' monitoring port, a cloud's metadata service) and have
barnebro post to it. `EgressPolicy` refuses every destination that is not a public unicast
address (loopback, private, shared, link-local, unique-local, multicast, reserved,
documentation ranges and IPv4 addresses inside IPv6 all count as not public) unless the
operator's allowlist names the host or its network. A host name is resolved and every
address it resolves to is checked; the addresses checked are the ones connected to
(`PinnedResolver`), so a name cannot resolve to a public address for the check and a
private one for the connection.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from aiohttp import TCPConnector
from aiohttp.abc import AbstractResolver, ResolveResult

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[str]]]
"""Resolves a host name and port to IP address texts (a test passes a stub)."""


class Refused(Exception):
    """A destination barnebro does not send to; the message says why."""


async def system_resolver(host: str, port: int) -> list[str]:
    """The machine's resolver (getaddrinfo), every address of every family."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")
"""The only IPv6 addresses that are public unicast; everything outside is reserved or
special (IPv4-compatible, IPv4-translated, NAT64, site-local, unique-local, link-local)."""
EMBEDDING_V6 = (
    ipaddress.IPv6Network("::/96"),  # IPv4-compatible (deprecated)
    ipaddress.IPv6Network("::ffff:0:0:0/96"),  # IPv4-translated (SIIT)
    ipaddress.IPv6Network("64:ff9b::/96"),  # NAT64, well-known prefix
    ipaddress.IPv6Network("64:ff9b:1::/48"),  # NAT64, local use
)
"""Prefixes whose last 32 bits are an IPv4 address, besides IPv4-mapped, 6to4 and Teredo."""
NOT_GLOBAL_V6 = (ipaddress.IPv6Network("3fff::/20"),)  # documentation (RFC 9637)
"""Inside 2000::/3 but not public, and not yet known to every Python's `is_global`."""


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries, in any of the forms that carry one."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if any(address in prefix for prefix in EMBEDDING_V6):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def not_public(address: Address) -> str | None:
    """Why an address is not one to send to, or None for a public unicast address."""
    if address.is_multicast:
        return "a multicast address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address (where cloud metadata services answer)"
    if address.is_unspecified:
        return "the unspecified address"
    v6 = address if isinstance(address, ipaddress.IPv6Address) else None
    embedded = embedded_ipv4(v6) if v6 is not None else None
    if embedded is not None:
        reason = not_public(embedded)
        return "an IPv4 address inside IPv6" + (f" ({embedded}: {reason})" if reason else "")
    if not address.is_global:
        return "a private, shared or reserved address"
    if v6 is not None and (v6 not in GLOBAL_UNICAST_V6 or any(v6 in n for n in NOT_GLOBAL_V6)):
        return "a reserved IPv6 address"
    return None


class EgressPolicy:
    """Public destinations, and what the operator allows besides (`allowed`: host names,
    IP addresses or networks in CIDR form)."""

    def __init__(self, allowed: Iterable[str] = (), resolver: Resolver = system_resolver) -> None:
        self.hosts: set[str] = set()
        self.networks: list[Network] = []
        for entry in (e.strip() for e in allowed):
            if not entry:
                continue
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self.hosts.add(entry.lower().rstrip("."))
        self.resolver = resolver

    def _allowed(self, host: str, address: Address) -> bool:
        return host.lower().rstrip(".") in self.hosts or any(
            address in network for network in self.networks
        )

    async def addresses(self, host: str, port: int) -> list[str]:
        """The addresses to connect to for `host`: all of them checked, or Refused."""
        try:
            literal: Address | None = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            literal = None
        if literal is not None:
            found = [str(literal)]
        else:
            try:
                found = await self.resolver(host, port)
            except (OSError, UnicodeError) as exc:
                raise Refused(f"{host} does not resolve") from exc
            if not found:
                raise Refused(f"{host} does not resolve")
        for text in found:
            address = ipaddress.ip_address(text.split("%", 1)[0])
            reason = not_public(address)
            if reason is not None and not self._allowed(host, address):
                raise Refused(
                    f"{host} is {reason} ({address}); notifications go to public addresses"
                    " only, unless the operator allows this one"
                )
        return found

    async def check_url(self, url: str) -> None:
        """Refused unless every address of the URL's host may be sent to. A host the
        operator allows by name is taken on the operator's word, unresolved."""
        parts = urlsplit(url)
        if not parts.hostname:
            raise Refused(f"{url!r} names no host")
        if parts.hostname.lower().rstrip(".") in self.hosts:
            return
        default = 443 if parts.scheme == "https" else 80
        await self.addresses(parts.hostname, parts.port or default)


class PinnedResolver(AbstractResolver):
    """The aiohttp resolver that connects only to the addresses the policy checked."""

    def __init__(self, policy: EgressPolicy) -> None:
        self.policy = policy

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        try:
            found = await self.policy.addresses(host, port)
        except Refused as exc:
            raise OSError(str(exc)) from exc
        results: list[ResolveResult] = []
        for text in found:
            address = ipaddress.ip_address(text.split("%", 1)[0])
            kind = socket.AF_INET6 if address.version == 6 else socket.AF_INET
            if family not in (socket.AF_UNSPEC, kind):
                continue
            results.append(
                ResolveResult(
                    hostname=host,
                    host=str(address),
                    port=port,
                    family=kind,
                    proto=0,
                    flags=socket.AI_NUMERICHOST,
                )
            )
        if not results:
            raise OSError(f"{host} has no address of the family asked for")
        return results

    async def close(self) -> None:
        return None


def pinned_connector(policy: EgressPolicy, **options: Any) -> TCPConnector:
    """An aiohttp TCP connector whose every connection goes through the policy (an IP
    literal in a URL skips resolvers: `EgressPolicy.check_url` each URL first)."""
    return TCPConnector(resolver=PinnedResolver(policy), **options)
