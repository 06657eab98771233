"""What the service's own HTTP servers (health, callbacks) share: how long an idle connection is
kept, and the URL a client on this machine reaches a bound address at."""

from __future__ import annotations

import ipaddress

__all__ = ["KEEPALIVE_S", "local_url"]

# An idle keep-alive connection is closed after this (aiohttp's default is an hour, so a client
# could hold sockets open for that long); probes and scrapers reconnect at no cost.
KEEPALIVE_S = 75.0


def local_url(host: str, port: int) -> str:
    """``http://host:port`` as a client on this machine reaches a server bound to ``host`` (a
    wildcard bind, such as all IPv4 or IPv6 interfaces, is reached on loopback)."""
    try:
        wildcard = not host or ipaddress.ip_address(host).is_unspecified
    except ValueError:  # a name
        wildcard = False
    if wildcard:
        host = "::1" if ":" in host else "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
