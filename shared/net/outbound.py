"""Connections to site-configured destinations, checked against the outbound allow-list.

A provider URL or an SMTP/IMAP host typed into a site's settings is resolved here and judged
by `shared.domain.destinations` twice: when the setting is written (the config service answers
422 naming the field) and again on every new connection, because DNS can change in between.
At connect time the connection goes to the very addresses that were judged — never to a second
resolution — so a name that flips to an internal address between the check and the connect
(DNS rebinding) still cannot reach it. TLS keeps verifying the configured host name.

The resolver is a dependency (`Resolver`), so tests can give a name any address without DNS.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

import httpcore

from shared.domain.destinations import AllowList, IPAddress, judge

Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]

WRITE_CHECK_SECONDS = 5.0
"""How long a settings write waits for DNS; a name that does not resolve in time is accepted
(it is judged again on every connection)."""


class DestinationRefused(Exception):
    """A site's destination resolves to an address Stagger must not connect to."""

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(f"{host} {reason}")
        self.host = host
        self.reason = reason


def _parse_address(text: str) -> IPAddress:
    # getaddrinfo gives IPv6 scope ids as "fe80::1%eth0".
    return ipaddress.ip_address(text.split("%", 1)[0])


async def system_resolver(host: str, port: int) -> list[IPAddress]:
    """Every address the system resolver gives for `host` (raises OSError when none)."""
    try:
        # An address literal needs no lookup (and no executor thread on every connection).
        return [_parse_address(host.strip("[]"))]
    except ValueError:
        pass
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return list(dict.fromkeys(_parse_address(str(info[4][0])) for info in infos))


def url_endpoint(url: str) -> tuple[str, int] | None:
    """(host, port) of an http(s) URL, or None when it names no host."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


class OutboundGuard:
    """Resolves and judges destinations; opens connections only to judged addresses."""

    def __init__(self, allow: AllowList, resolver: Resolver = system_resolver) -> None:
        self.allow = allow
        self.resolver = resolver

    @classmethod
    def parse(cls, allow: str | None, resolver: Resolver = system_resolver) -> OutboundGuard:
        """A guard from `STAGGER_OUTBOUND_ALLOW`'s text."""
        return cls(AllowList.parse(allow), resolver)

    async def vet(self, host: str, port: int) -> list[IPAddress]:
        """The addresses `host` may be reached at; DestinationRefused, or OSError when it
        does not resolve."""
        addresses = await self.resolver(host, port)
        if not addresses:
            raise OSError(f"{host} does not resolve")
        refusal = judge(host, addresses, self.allow)
        if refusal is not None:
            raise DestinationRefused(host, refusal.reason)
        return addresses

    async def refusal(self, host: str, port: int) -> str | None:
        """Why a setting naming `host` must be refused, or None (a write-time check).

        A name that does not resolve now (or not within `WRITE_CHECK_SECONDS`) is accepted:
        it cannot be connected to either, and it is judged again at every connection.
        """
        try:
            async with asyncio.timeout(WRITE_CHECK_SECONDS):
                await self.vet(host, port)
        except DestinationRefused as exc:
            return exc.reason
        except (OSError, UnicodeError, TimeoutError):
            return None
        return None

    async def connect(self, host: str, port: int, seconds: float | None) -> socket.socket:
        """A connected (blocking-mode) TCP socket to a judged address of `host`; `seconds`
        bounds each connection attempt and is then the socket's own timeout."""
        addresses = await self.vet(host, port)
        loop = asyncio.get_running_loop()
        last: OSError | None = None
        for address in addresses:
            family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                async with asyncio.timeout(seconds):
                    await loop.sock_connect(sock, (str(address), port))
            except (OSError, TimeoutError) as exc:
                sock.close()
                last = exc if isinstance(exc, OSError) else TimeoutError(f"{host}:{port}")
                continue
            sock.setblocking(True)
            sock.settimeout(seconds)
            return sock
        raise last or OSError(f"cannot connect to {host}:{port}")

    def network_backend(
        self, inner: httpcore.AsyncNetworkBackend | None = None
    ) -> httpcore.AsyncNetworkBackend:
        """An httpcore network backend whose TCP connections go through this guard."""
        return _GuardedBackend(self, inner or httpcore.AnyIOBackend())


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, guard: OutboundGuard, inner: httpcore.AsyncNetworkBackend) -> None:
        self._guard = guard
        self._inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await self._guard.vet(host, port)
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        last: Exception | None = None
        for address in addresses:
            # httpcore starts TLS on the returned stream with the URL's host name, so the
            # certificate is still checked against the name the site configured.
            try:
                return await self._inner.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not an outbound destination")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def guarded_transport(guard: OutboundGuard, **options: Any) -> Any:
    """An `httpx.AsyncHTTPTransport` whose connections are judged by `guard`."""
    import httpx

    transport = httpx.AsyncHTTPTransport(**options)
    pool = transport._pool
    # httpx has no public hook for the network backend; the pool's is replaced in place
    # (tests/integration/security/test_outbound_destinations.py fails if this stops working).
    if not hasattr(pool, "_network_backend"):
        raise RuntimeError("httpcore's connection pool changed: cannot guard connections")
    pool._network_backend = guard.network_backend(pool._network_backend)
    return transport
