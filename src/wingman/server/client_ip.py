"""The client's IP address, as every limit and log line sees it.

The socket's peer is the client unless the peer is one of ``server.trusted_proxies`` (addresses or
CIDR blocks). Then ``X-Forwarded-For`` is read from the right: each proxy appends the address it
received the request from, so entries added by trusted proxies are skipped and the first
untrusted one is the client. Entries to its left were written by the client itself and can be
forged, so they are never used. A header that holds nothing usable leaves the peer in place.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from litestar.types import Scope

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
UNKNOWN = "unknown"


def parse_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """``["10.0.0.1", "192.168.0.0/16"]`` as networks; raises ValueError naming a bad entry."""
    networks: list[Network] = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(f"not an IP address or CIDR block: {entry!r}") from None
    return tuple(networks)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[2001:db8::1]:443"
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # "203.0.113.7:51234"
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    # An IPv4 client seen through an IPv6 socket is the IPv4 client.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def forwarded_client(peer: str, forwarded_for: Sequence[str], trusted: Sequence[Network]) -> str:
    """The client address for a request from ``peer`` carrying these ``X-Forwarded-For`` values
    (every header line, in order). Pure: the rule of this module in one function."""
    peer_address = _address(peer)
    if peer_address is None or not _is_trusted(peer_address, trusted):
        return str(peer_address) if peer_address is not None else peer
    entries = [entry for value in forwarded_for for entry in value.split(",")]
    for entry in reversed(entries):
        address = _address(entry)
        if address is None:
            # Garbage where a proxy should have written an address: stop trusting the chain.
            return str(peer_address)
        if not _is_trusted(address, trusted):
            return str(address)
    # Every hop was a trusted proxy: the left-most one is as close to the client as we get.
    first = _address(entries[0]) if entries else None
    return str(first or peer_address)


def _is_trusted(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, trusted: Sequence[Network]
) -> bool:
    return any(address.version == network.version and address in network for network in trusted)


class ClientAddresses:
    """Resolves the client IP of an ASGI scope under one trusted-proxy list."""

    def __init__(self, trusted_proxies: Iterable[str] = ()) -> None:
        self.trusted = parse_networks(trusted_proxies)

    def of(self, scope: Scope) -> str:
        """The client IP of this connection (``"unknown"`` when the server gives no peer)."""
        client = scope.get("client")
        peer = client[0] if client else UNKNOWN
        if not self.trusted:
            return peer
        forwarded = [
            value.decode("latin-1")
            for name, value in scope.get("headers", ())
            if name.lower() == b"x-forwarded-for"
        ]
        return forwarded_client(peer, forwarded, self.trusted)
