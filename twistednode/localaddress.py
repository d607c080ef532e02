# -*- test-case-name: tests.test_localaddress -*-
"""
The address a node advertises by default: the local IP address this host uses to
reach the registry, so peers on the registry's side of the network can reach it.

Internal: not part of the public API (that is what C{twistednode} exports).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from urllib.parse import urlsplit


def udp_source_address(host: str, port: int) -> str:
    """
    The local address the OS would use to send to C{host}:C{port}.

    A UDP socket's connect() only picks a route; no packet is sent.
    """
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.connect(address)
        return str(sock.getsockname()[0])


def local_address_towards(
    url: str, connect: Callable[[str, int], str] = udp_source_address
) -> str:
    """
    The local IP address this host uses to reach the store at C{url}: the default
    address a node advertises. C{connect(host, port)} does the socket work.

    @raise ValueError: the URL has no host, or no route to it was found.
    """
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError as e:
        raise ValueError(f"bad port in {url!r}: {e}") from None
    if not parts.hostname:
        raise ValueError(f"no host in {url!r}")
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    try:
        address = connect(parts.hostname, port)
    except OSError as e:
        raise ValueError(f"no route from this host to {url}: {e}") from None
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise ValueError(f"{address!r} is not an IP address") from None
    return address
