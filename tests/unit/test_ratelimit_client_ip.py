"""Which address is the client: the peer, or X-Forwarded-For only behind a trusted proxy."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wingman.server.client_ip import ClientAddresses, forwarded_client, parse_networks

TRUSTED = parse_networks(["10.0.0.0/8", "2001:db8::/32"])
ipv4 = st.ip_addresses(v=4).map(str)
public_ipv4 = st.ip_addresses(v=4, network="203.0.113.0/24").map(str)
proxy_ipv4 = st.ip_addresses(v=4, network="10.0.0.0/8").map(str)


@given(peer=public_ipv4, forwarded=st.lists(ipv4, max_size=5))
def test_an_untrusted_peer_is_the_client_whatever_it_claims(
    peer: str, forwarded: list[str]
) -> None:
    assert forwarded_client(peer, [", ".join(forwarded)], TRUSTED) == peer


@given(
    forged=st.lists(st.one_of(ipv4, st.text(max_size=12)), max_size=4),
    client=public_ipv4,
    proxies=st.lists(proxy_ipv4, max_size=3),
    peer=proxy_ipv4,
)
def test_the_right_most_untrusted_entry_wins_over_anything_the_client_wrote(
    forged: list[str], client: str, proxies: list[str], peer: str
) -> None:
    chain = [*forged, client, *proxies]
    # However the chain is split over header lines, the answer is the same.
    assert forwarded_client(peer, [", ".join(chain)], TRUSTED) == client
    assert forwarded_client(peer, chain, TRUSTED) == client


@given(peer=proxy_ipv4, junk=st.text(alphabet="xyz!%-", min_size=1, max_size=10))
def test_garbage_from_a_proxy_leaves_the_peer(peer: str, junk: str) -> None:
    assert forwarded_client(peer, [junk], TRUSTED) == peer
    assert forwarded_client(peer, [], TRUSTED) == peer


def test_ports_brackets_and_mapped_addresses_are_understood() -> None:
    assert forwarded_client("10.1.1.1", ["203.0.113.5:4433"], TRUSTED) == "203.0.113.5"
    assert forwarded_client("10.1.1.1", ["[2001:db9::1]:443"], TRUSTED) == "2001:db9::1"
    assert forwarded_client("::ffff:10.1.1.1", ["198.51.100.2"], TRUSTED) == "198.51.100.2"
    # An IPv6 proxy in the trusted block, then an IPv4 client.
    assert forwarded_client("2001:db8::7", ["198.51.100.2, 10.0.0.3"], TRUSTED) == "198.51.100.2"
    # Only proxies in the chain: the left-most is as close to the client as can be told.
    assert forwarded_client("10.1.1.1", ["10.2.2.2, 10.3.3.3"], TRUSTED) == "10.2.2.2"


def test_without_trusted_proxies_the_header_is_never_read() -> None:
    scope = {
        "type": "http",
        "client": ("10.1.1.1", 5000),
        "headers": [(b"x-forwarded-for", b"203.0.113.9")],
    }
    assert ClientAddresses().of(scope) == "10.1.1.1"  # type: ignore[arg-type]
    assert ClientAddresses(["10.0.0.0/8"]).of(scope) == "203.0.113.9"  # type: ignore[arg-type]
    assert ClientAddresses(["10.0.0.0/8"]).of({"type": "http", "headers": []}) == "unknown"  # type: ignore[arg-type]


def test_bad_proxy_entries_are_named() -> None:
    with pytest.raises(ValueError, match="'nope'"):
        parse_networks(["10.0.0.1", "nope"])
    assert parse_networks(["192.168.1.7"]) == (ipaddress.ip_network("192.168.1.7/32"),)
