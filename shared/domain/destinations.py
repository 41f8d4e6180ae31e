"""Where Stagger may connect to on a site's behalf: the outbound allow-list rule.

Pure: addresses come in already resolved (`shared.net.outbound` resolves them), a verdict comes
out. A site's provider URL or SMTP/IMAP host must not become a way into the machines around
Stagger, so every address a destination resolves to is classified:

- **never**: link-local (169.254.0.0/16, fe80::/10) and the cloud metadata endpoints outside
  it (AWS's fd00:ec2::254, Alibaba's 100.100.100.200). No allow-list entry opens them.
- **public**: globally routable unicast (`ipaddress`'s `is_global`): always allowed.
- **restricted**: everything else (loopback 127/8 and ::1, "this host" 0.0.0.0/8 and ::,
  private 10/8, 172.16/12, 192.168/16 and fc00::/7, shared CGNAT 100.64/10, multicast,
  reserved and documentation ranges): allowed only when the operator's allow-list
  (`STAGGER_OUTBOUND_ALLOW`) holds a network containing the address or names the host.

An address embedding an IPv4 address (IPv4-mapped ::ffff:a.b.c.d, NAT64 64:ff9b::/96, 6to4
2002::/16) is judged by the stricter of itself and the embedded address, so a metadata address
cannot be smuggled in IPv6 clothing. A destination is allowed only when every address it
resolves to is, since the connection may use any of them.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Category = Literal["link-local", "public", "loopback", "this-host", "private", "shared", "reserved"]

NEVER: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(n)
    for n in ("169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128", "100.100.100.200/32")
)
_PRIVATE: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
)
_THIS_HOST: tuple[IPNetwork, ...] = tuple(ipaddress.ip_network(n) for n in ("0.0.0.0/8", "::/128"))
_SHARED = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_NAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*$")

_DESCRIBE: dict[Category, str] = {
    "link-local": "a link-local (cloud metadata) address",
    "public": "a public address",
    "loopback": "a loopback address",
    "this-host": "an unspecified ('this host') address",
    "private": "a private-network address",
    "shared": "a shared (carrier-grade NAT) address",
    "reserved": "a reserved or special-purpose address",
}


def _embedded(address: IPAddress) -> ipaddress.IPv4Address | None:
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _category_of(address: IPAddress) -> Category:
    if any(address in n for n in NEVER if n.version == address.version):
        return "link-local"
    if address.is_loopback:
        return "loopback"
    if any(address in n for n in _THIS_HOST if n.version == address.version):
        return "this-host"
    if any(address in n for n in _PRIVATE if n.version == address.version):
        return "private"
    if address.version == 4 and address in _SHARED:
        return "shared"
    if address.is_global and not address.is_multicast:
        return "public"
    return "reserved"


_SEVERITY: dict[Category, int] = {
    "public": 0,
    "reserved": 1,
    "shared": 1,
    "private": 1,
    "this-host": 1,
    "loopback": 1,
    "link-local": 2,
}


def category(address: IPAddress) -> Category:
    """What kind of address this is, judged with any IPv4 address it embeds."""
    own = _category_of(address)
    inner = _embedded(address)
    if inner is None:
        return own
    theirs = _category_of(inner)
    return theirs if _SEVERITY[theirs] >= _SEVERITY[own] else own


def normalise_host(host: str) -> str:
    """A host name as compared: lower case, no trailing dot, no IPv6 brackets."""
    return host.strip().strip("[]").rstrip(".").lower()


@dataclass(frozen=True)
class AllowList:
    """Networks and host names the operator lets sites connect to (besides public ones)."""

    networks: tuple[IPNetwork, ...] = ()
    names: frozenset[str] = frozenset()
    suffixes: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> AllowList:
        """`"127.0.0.0/8, ::1, localhost, *.corp.example"` → an AllowList.

        Raises ValueError naming the first bad entry (a typo must not silently allow nothing
        or everything); link-local networks are refused, as they can never be allowed.
        """
        networks: list[IPNetwork] = []
        names: set[str] = set()
        suffixes: list[str] = []
        for raw in (text or "").split(","):
            entry = raw.strip()
            if not entry:
                continue
            try:
                network = ipaddress.ip_network(entry.strip("[]"), strict=False)
            except ValueError:
                network = None
            if network is not None:
                if any(network.subnet_of(n) for n in NEVER if n.version == network.version):  # type: ignore[arg-type]
                    raise ValueError(
                        f"{entry!r}: link-local and cloud metadata addresses cannot be allowed"
                    )
                networks.append(network)
                continue
            name = normalise_host(entry)
            wildcard = name.startswith("*.")
            if not _NAME.match(name[2:] if wildcard else name):
                raise ValueError(f"{entry!r} is neither a network (CIDR) nor a host name")
            if wildcard:
                suffixes.append(name[1:])
            else:
                names.add(name)
        return cls(tuple(networks), frozenset(names), tuple(suffixes))

    def names_host(self, host: str) -> bool:
        """True when the host name itself is listed (exactly, or under a `*.` entry)."""
        name = normalise_host(host)
        return name in self.names or any(name.endswith(s) for s in self.suffixes)

    def contains(self, address: IPAddress) -> bool:
        """True when a listed network holds the address (or the IPv4 address it embeds)."""
        candidates = [address, *filter(None, [_embedded(address)])]
        return any(a in n for a in candidates for n in self.networks if n.version == a.version)


LOOPBACK_ALLOW = "127.0.0.0/8,::1/128,localhost"
LOOPBACK = AllowList.parse(LOOPBACK_ALLOW)
"""What `stagger up` allows: its SMS simulator and SMTP sink listen on this machine."""


@dataclass(frozen=True)
class Refusal:
    """Why a destination is refused (names the kind of address, never the address: the
    answer must not make the config API a map of the operator's internal network)."""

    category: Category
    reason: str


def judge(host: str, addresses: Iterable[IPAddress], allow: AllowList) -> Refusal | None:
    """None when `host`, resolved to `addresses`, may be connected to; else the refusal."""
    listed = allow.names_host(host)
    worst: Refusal | None = None
    for address in addresses:
        kind = category(address)
        if kind == "public":
            continue
        if kind == "link-local":
            return Refusal(kind, f"points to {_DESCRIBE[kind]}, which Stagger never connects to")
        if listed or allow.contains(address):
            continue
        worst = worst or Refusal(
            kind,
            f"points to {_DESCRIBE[kind]}; only allowed where the operator lists it in "
            "STAGGER_OUTBOUND_ALLOW",
        )
    return worst
