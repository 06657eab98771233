"""Egress policy for the media this service fetches itself (``hive.media_mode: upload``, Huawei
search): a URL an upload names may point anywhere, including our own network, so every address it
resolves to is checked before a connection is made.

Refused by default: loopback, private, link-local, shared (CGNAT), multicast, reserved and
unspecified addresses, and IPv6 forms that embed one (IPv4-mapped, 6to4, Teredo, NAT64).
``deny_networks`` refuses more; ``allow_networks`` lets chosen networks through (the simulator's
loopback address in development). The check runs on the resolved addresses the connector then
connects to (``EgressResolver``), so a DNS answer that changes between a check and the connection
(rebinding) cannot slip through; IP literals, which the connector does not resolve, are checked by
``EgressPolicy.check_host`` before the request. Provider endpoints come from settings and are not
subject to it.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from consumer.errors import EgressRefused

__all__ = ["EgressPolicy", "EgressResolver"]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _embedded_v4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _why_not_public(address: Address) -> str | None:
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            return "a scoped IPv6 address"
        inner = _embedded_v4(address)
        if inner is not None:
            return _why_not_public(inner)
    for attribute, reason in (
        ("is_loopback", "a loopback address"),
        ("is_link_local", "a link-local address"),
        ("is_multicast", "a multicast address"),
        ("is_unspecified", "the unspecified address"),
        ("is_private", "a private address"),
        ("is_reserved", "a reserved address"),
    ):
        if getattr(address, attribute):
            return reason
    return None if address.is_global else "not a public address"


@dataclass(frozen=True)
class EgressPolicy:
    """Which addresses fetched media may come from. Pure: no I/O."""

    allow_networks: tuple[Network, ...] = ()
    deny_networks: tuple[Network, ...] = ()
    _cache: dict[str, str | None] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, allow: Iterable[str] = (), deny: Iterable[str] = ()) -> EgressPolicy:
        """From network strings (``10.1.0.0/16``, ``127.0.0.1``); raises ValueError on a bad one."""
        return cls(
            tuple(ipaddress.ip_network(n, strict=False) for n in allow),
            tuple(ipaddress.ip_network(n, strict=False) for n in deny),
        )

    def refusal(self, address: Address) -> str | None:
        """Why ``address`` may not be fetched from, or None when it may."""
        if any(address.version == n.version and address in n for n in self.deny_networks):
            return "a denied network"
        if any(address.version == n.version and address in n for n in self.allow_networks):
            return None
        return _why_not_public(address)

    def check_address(self, text: str) -> None:
        """Raise EgressRefused unless the address ``text`` (as resolved or as written) may be used."""
        found = self._cache.get(text, "")
        if found == "":
            try:
                found = self.refusal(ipaddress.ip_address(text))
            except ValueError:
                found = "not an IP address"
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[text] = found
        if found is not None:
            raise EgressRefused(f"media host resolves to {found}")

    def check_host(self, host: str) -> None:
        """For a URL's host as written: IP literals (which no resolver sees) are checked here;
        names are checked when they resolve."""
        literal = host.strip("[]")
        try:
            ipaddress.ip_address(literal.split("%", 1)[0])
        except ValueError:
            return
        self.check_address(literal)


class EgressResolver(AbstractResolver):
    """Resolves with aiohttp's default resolver and keeps only the addresses the policy allows;
    none left ⇒ ``EgressRefused``. The connector connects only to what this returns."""

    def __init__(self, policy: EgressPolicy, inner: AbstractResolver | None = None) -> None:
        self._policy = policy
        self._inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        allowed: list[ResolveResult] = []
        refused: EgressRefused | None = None
        for result in results:
            try:
                self._policy.check_address(result["host"])
            except EgressRefused as exc:
                refused = exc
                continue
            allowed.append(result)
        if not allowed:
            raise refused or EgressRefused("media host resolves to no address")
        return allowed

    async def close(self) -> None:
        await self._inner.close()
