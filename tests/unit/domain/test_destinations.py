"""The outbound allow-list rule: which resolved addresses a site's destination may use."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.domain.destinations import LOOPBACK, AllowList, IPAddress, category, judge

NONE = AllowList()


def ip(text: str) -> IPAddress:
    return ipaddress.ip_address(text)


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("fd00:ec2::254", "link-local"),
        ("100.100.100.200", "link-local"),
        ("::ffff:169.254.169.254", "link-local"),
        ("64:ff9b::a9fe:a9fe", "link-local"),
        ("2002:a9fe:a9fe::1", "link-local"),
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("0.0.0.0", "this-host"),
        ("::", "this-host"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd12::1", "private"),
        ("100.64.0.1", "shared"),
        ("224.0.0.1", "reserved"),
        ("192.0.2.1", "reserved"),
        ("8.8.8.8", "public"),
        ("2a00:1450:4009:80b::200e", "public"),
    ],
)
def test_categories(address: str, kind: str) -> None:
    assert category(ip(address)) == kind


def test_metadata_is_refused_whatever_the_allow_list_says() -> None:
    everything = AllowList.parse("0.0.0.0/0,::/0,metadata.google.internal")
    refusal = judge("metadata.google.internal", [ip("169.254.169.254")], everything)
    assert refusal is not None and refusal.category == "link-local"
    assert "169.254" not in refusal.reason, "the reason names the kind, never the address"


def test_restricted_addresses_need_the_operator() -> None:
    for address in ("127.0.0.1", "10.0.0.5", "100.64.1.1", "0.0.0.0", "fd00::5"):
        refusal = judge("mail.example.org", [ip(address)], NONE)
        assert refusal is not None and "STAGGER_OUTBOUND_ALLOW" in refusal.reason
    assert judge("localhost", [ip("127.0.0.1"), ip("::1")], LOOPBACK) is None
    assert judge("relay", [ip("10.0.0.5")], AllowList.parse("10.0.0.0/24")) is None
    assert judge("relay", [ip("10.0.1.5")], AllowList.parse("10.0.0.0/24")) is not None


def test_named_hosts_and_domains() -> None:
    allow = AllowList.parse("relay.corp.example, *.lan.example")
    assert judge("Relay.Corp.Example.", [ip("10.0.0.5")], allow) is None
    assert judge("smtp.lan.example", [ip("192.168.0.2")], allow) is None
    assert judge("lan.example", [ip("192.168.0.2")], allow) is not None
    assert judge("other.example", [ip("192.168.0.2")], allow) is not None


def test_every_address_must_pass() -> None:
    """A name resolving to a public and a private address is refused: either may be used."""
    assert judge("mixed.example", [ip("8.8.8.8"), ip("10.0.0.1")], NONE) is not None
    assert judge("public.example", [ip("8.8.8.8"), ip("2a00:1450::1")], NONE) is None


@pytest.mark.parametrize("entry", ["not a host!", "10.0.0.0/33", "169.254.0.0/16", "fe80::/64"])
def test_bad_allow_list_entries_are_named(entry: str) -> None:
    with pytest.raises(ValueError, match="'"):
        AllowList.parse(f"127.0.0.1,{entry}")


def test_empty_allow_list_allows_nothing_restricted() -> None:
    assert AllowList.parse("") == AllowList.parse(None) == AllowList.parse(" , ") == NONE


ipv4 = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)
ipv6 = st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address)
addresses = st.one_of(ipv4, ipv6)
link_local = st.one_of(
    st.integers(0, 2**16 - 1).map(lambda n: ipaddress.IPv4Address((169 << 24) | (254 << 16) | n)),
    st.integers(0, 2**118 - 1).map(lambda n: ipaddress.IPv6Address((0xFE80 << 112) | n)),
)


@given(link_local, st.sampled_from(["", "0.0.0.0/0,::/0", "localhost,10.0.0.0/8"]))
def test_link_local_is_never_allowed(address: IPAddress, allow: str) -> None:
    assert judge("localhost", [address], AllowList.parse(allow)) is not None


@given(ipv4)
def test_a_mapped_address_is_judged_as_the_ipv4_address(address: ipaddress.IPv4Address) -> None:
    mapped = ipaddress.IPv6Address(f"::ffff:{address}")
    for allow in (NONE, LOOPBACK):
        mine = judge("h.example", [address], allow)
        theirs = judge("h.example", [mapped], allow)
        if mine is not None:
            # Never more lenient in IPv6 clothing.
            assert theirs is not None


@given(addresses)
def test_public_addresses_are_always_allowed(address: IPAddress) -> None:
    if category(address) == "public":
        assert judge("h.example", [address], NONE) is None
    else:
        assert judge("h.example", [address], NONE) is not None


@given(addresses)
def test_allowing_everything_leaves_only_link_local(address: IPAddress) -> None:
    refusal = judge("h.example", [address], AllowList.parse("0.0.0.0/0,::/0"))
    assert (refusal is not None) == (category(address) == "link-local")
