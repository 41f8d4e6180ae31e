"""The resolving guard: judged before any connection, whatever client makes it."""

from __future__ import annotations

import ipaddress

import httpx
import pytest

from services.cli.stack import stack_processes
from shared.config import StaggerConfig
from shared.domain.destinations import IPAddress
from shared.net.outbound import DestinationRefused, OutboundGuard, guarded_transport, url_endpoint


async def to_metadata(host: str, port: int) -> list[IPAddress]:
    return [ipaddress.ip_address("169.254.169.254")]


async def test_httpx_through_the_guard_never_connects_to_a_refused_address() -> None:
    guard = OutboundGuard.parse("0.0.0.0/0", resolver=to_metadata)
    async with httpx.AsyncClient(transport=guarded_transport(guard)) as client:
        with pytest.raises(DestinationRefused, match="link-local"):
            await client.get("http://provider.example/v1/balance")


async def test_sockets_through_the_guard_never_connect_to_a_refused_address() -> None:
    guard = OutboundGuard.parse("", resolver=to_metadata)
    with pytest.raises(DestinationRefused):
        await guard.connect("smtp.example", 587, 1.0)
    assert await guard.refusal("smtp.example", 587) is not None


async def test_a_name_that_does_not_resolve_is_not_a_write_time_refusal() -> None:
    async def nothing(host: str, port: int) -> list[IPAddress]:
        raise OSError("no such name")

    assert await OutboundGuard.parse("", resolver=nothing).refusal("gone.example", 25) is None


def test_url_endpoints() -> None:
    assert url_endpoint("https://api.twilio.com") == ("api.twilio.com", 443)
    assert url_endpoint("http://[fe80::1]:8090/x") == ("fe80::1", 8090)
    assert url_endpoint("http://127.0.0.1:8090") == ("127.0.0.1", 8090)
    assert url_endpoint("http://:80") is None


def test_stagger_up_allows_loopback_beside_the_operators_list() -> None:
    settings = StaggerConfig(outbound_allow="10.0.0.0/8")
    envs = {spec.name: spec.env for spec in stack_processes(settings)}
    allow = envs["email_gateway"]["STAGGER_OUTBOUND_ALLOW"]
    assert "127.0.0.0/8" in allow and "10.0.0.0/8" in allow
    assert envs["config"]["STAGGER_OUTBOUND_ALLOW"] == allow
