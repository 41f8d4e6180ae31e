"""The provider adapters added beside Twilio and the simulator, by settings kind: how each is
built from a site's credentials, and how its unsigned webhooks are read.

Kept apart from `ProviderSpec.build` and the webhook routes so that adding a provider is one
entry here (plus its module), not an edit of every file that lists providers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal, TypedDict

import httpx

from services.sms_gateway.adapters.providers import (
    clicksend,
    esendex,
    kudosity,
    messagemedia,
    tnz,
    vonage,
)
from services.sms_gateway.adapters.providers.base import Inbound, Provider, Receipt


class Endpoint(TypedDict):
    """The keywords every catalogue adapter takes alike."""

    base_url: str | None
    rate_per_second: float


@dataclass(frozen=True)
class BuildArgs:
    """What every catalogue adapter is built from (made by `ProviderSpec.build`); each builder
    takes the fields its provider uses."""

    client: httpx.AsyncClient
    account_id: str
    secret: str = field(repr=False)  # opened: never logged
    base_url: str | None
    rate_per_second: float
    # How long the provider may take to list a sent message (Vonage, MessageMedia).
    report_lag: timedelta

    @property
    def endpoint(self) -> Endpoint:
        """`base_url` and `rate_per_second`, as keywords."""
        return Endpoint(base_url=self.base_url, rate_per_second=self.rate_per_second)


Builder = Callable[[BuildArgs], Provider]


def _clicksend(a: BuildArgs) -> Provider:
    return clicksend.ClickSendProvider(
        a.client, username=a.account_id, api_key=a.secret, **a.endpoint
    )


def _vonage(a: BuildArgs) -> Provider:
    return vonage.VonageProvider(
        a.client, api_key=a.account_id, api_secret=a.secret, report_lag=a.report_lag, **a.endpoint
    )


def _messagemedia(a: BuildArgs) -> Provider:
    return messagemedia.MessageMediaProvider(
        a.client, api_key=a.account_id, api_secret=a.secret, report_lag=a.report_lag, **a.endpoint
    )


def _kudosity(a: BuildArgs) -> Provider:
    return kudosity.KudosityProvider(
        a.client, api_key=a.account_id, api_secret=a.secret, **a.endpoint
    )


def _esendex(a: BuildArgs) -> Provider:
    return esendex.EsendexProvider(
        a.client, account_reference=a.account_id, login_and_token=a.secret, **a.endpoint
    )


def _tnz(a: BuildArgs) -> Provider:
    return tnz.TnzProvider(a.client, auth_token=a.secret, **a.endpoint)


BUILDERS: dict[str, Builder] = {
    "clicksend": _clicksend,
    "vonage": _vonage,
    "messagemedia": _messagemedia,
    "kudosity": _kudosity,
    "esendex": _esendex,
    "tnz": _tnz,
}
"""kind → adapter, built from the site's `BuildArgs`."""


TOPUP_PAGES: dict[str, str] = {
    "twilio": "https://console.twilio.com/us1/billing/manage-billing/billing-overview",
    "clicksend": "https://dashboard.clicksend.com/account/billing-recharge/top-up-account",
    "vonage": "https://dashboard.nexmo.com/billing-and-payments",
    "messagemedia": "https://hub.messagemedia.com/",
    "kudosity": "https://app.kudosity.com/",
    "esendex": "https://www.esendex.co.uk/",
    "tnz": "https://www.tnz.co.nz/",
}
"""Where a group admin buys credit for each provider without a top-up call (the start page
of its dashboard where the exact billing page is not published)."""

CONTENT_SEARCHED = frozenset({"twilio", "kudosity", "esendex"})
"""Providers without a reference field: an uncertain send is found by recipient, body and time,
so the ids already given to our other messages are passed to `lookup` as taken."""


@dataclass(frozen=True)
class PathSecured:
    """A provider whose webhooks are not signed: they reach
    `/webhooks/sms/<kind>/<account>/<webhook secret>/{receipt,inbound}` (`path_webhooks`)."""

    encoding: Literal["form", "json", "xml"]
    # (fields, the path's account) → parsed; JSON bodies keep their nesting.
    receipt: Callable[[Mapping[str, Any], str], Receipt]
    inbound: Callable[[Mapping[str, Any], str], Inbound]
    # Providers that also sign: (fields, the site's webhook secret, tolerance s) → valid?
    verify: Callable[[Mapping[str, Any], str, float], bool] | None = None
    # The field naming the account inside the body, which must be the path's account.
    account_field: str | None = None


PATH_SECURED: dict[str, PathSecured] = {
    "clicksend": PathSecured("form", clicksend.parse_receipt, clicksend.parse_inbound),
    "vonage": PathSecured(
        "form", vonage.parse_receipt, vonage.parse_inbound, vonage.verify, "api-key"
    ),
    "messagemedia": PathSecured("json", messagemedia.parse_receipt, messagemedia.parse_inbound),
    "kudosity": PathSecured("form", kudosity.parse_receipt, kudosity.parse_inbound),
    "esendex": PathSecured("xml", esendex.parse_receipt, esendex.parse_inbound),
    "tnz": PathSecured("json", tnz.parse_receipt, tnz.parse_inbound),
}
