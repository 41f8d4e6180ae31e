"""`ProviderSpec.build`: every catalogue kind is built from one `BuildArgs`, with the spec's
rate, and the report lag reaches the providers that wait for it."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from services.sms_gateway.adapters.providers import NotConfigured, ProviderSpec
from services.sms_gateway.adapters.providers.catalogue import BUILDERS

LAGGED = {"vonage", "messagemedia"}


def spec(kind: str) -> ProviderSpec:
    return ProviderSpec(
        kind=kind,
        account_id="acct",
        secret="login:token",  # Esendex needs '<login>:<token>'; the others take it whole
        base_url="http://127.0.0.1:9/",
        rate_per_second=2.5,
        status_callback=None,
        report_lag_seconds=7.0,
    )


@pytest.mark.parametrize("kind", sorted(BUILDERS))
async def test_every_catalogue_kind_is_built_with_the_spec(kind: str) -> None:
    async with httpx.AsyncClient() as client:
        provider = spec(kind).build(client)
    assert provider.kind == kind
    assert provider.rate_per_second == 2.5
    if kind in LAGGED:
        assert provider._report_lag == timedelta(seconds=7)  # type: ignore[attr-defined]


async def test_an_unknown_kind_is_named() -> None:
    async with httpx.AsyncClient() as client:
        with pytest.raises(NotConfigured, match="'nope'"):
            spec("nope").build(client)
