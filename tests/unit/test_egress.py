"""The egress policy refuses every non-public address in every spelling, and the resolver hands the
connector only allowed addresses."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from hypothesis import given
from hypothesis import strategies as st

from consumer.errors import EgressRefused
from consumer.transports.egress import EgressPolicy, EgressResolver

REFUSED = [
    "127.0.0.1",
    "127.255.255.254",
    "10.0.0.1",
    "172.16.5.4",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "100.64.0.1",  # shared address space (CGNAT)
    "0.0.0.0",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "198.18.0.1",  # benchmarking
    "::1",
    "::",
    "fe80::1",
    "fc00::1",
    "ff02::1",
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:169.254.169.254",
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo of 127.0.0.1
]
ALLOWED = ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"]


@pytest.mark.parametrize("address", REFUSED)
def test_non_public_addresses_are_refused(address: str) -> None:
    with pytest.raises(EgressRefused):
        EgressPolicy().check_address(address)


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_pass(address: str) -> None:
    EgressPolicy().check_address(address)


def test_allow_and_deny_lists() -> None:
    policy = EgressPolicy.of(allow=["127.0.0.1/32"], deny=["8.8.8.0/24"])
    policy.check_address("127.0.0.1")
    with pytest.raises(EgressRefused):
        policy.check_address("127.0.0.2")
    with pytest.raises(EgressRefused, match="denied"):
        policy.check_address("8.8.8.8")
    with pytest.raises(ValueError):
        EgressPolicy.of(allow=["not-a-network"])


@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]", "[::ffff:127.0.0.1]", "[fe80::1%eth0]", "0.0.0.0"])
def test_ip_literal_hosts_are_checked_before_any_connection(host: str) -> None:
    with pytest.raises(EgressRefused):
        EgressPolicy().check_host(host)


def test_names_are_left_to_the_resolver() -> None:
    EgressPolicy().check_host("media.example.com")


@given(st.ip_addresses())
def test_an_allowed_address_is_always_global(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    try:
        EgressPolicy().check_address(str(address))
    except EgressRefused:
        return
    assert address.is_global and not address.is_multicast


class _Fixed(AbstractResolver):
    def __init__(self, *hosts: str) -> None:
        self.hosts = hosts

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            {"hostname": host, "host": h, "port": port, "family": family, "proto": 0, "flags": 0}
            for h in self.hosts
        ]

    async def close(self) -> None:
        return None


async def test_resolver_keeps_only_allowed_addresses() -> None:
    resolver = EgressResolver(EgressPolicy(), _Fixed("10.0.0.5", "93.184.216.34"))
    found = await resolver.resolve("media.example.com", 443)
    assert [r["host"] for r in found] == ["93.184.216.34"]


async def test_a_name_that_resolves_inside_is_refused() -> None:
    """DNS rebinding: the name resolves to a private address now; only what is returned here is
    connected to, so nothing inside is ever reached."""
    resolver = EgressResolver(EgressPolicy(), _Fixed("169.254.169.254"))
    with pytest.raises(EgressRefused, match="link-local"):
        await resolver.resolve("rebind.example.com", 80)
