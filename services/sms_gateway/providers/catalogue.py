"""The provider adapters added beside Twilio and the simulator, by settings kind: how each is
built from a site's credentials, and how its unsigned webhooks are read.

Kept apart from `ProviderSpec.build` and the webhook routes so that adding a provider is one
entry here (plus its module), not an edit of every file that lists providers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import httpx

from services.sms_gateway.providers import clicksend
from services.sms_gateway.providers.base import Inbound, Provider, Receipt

Builder = Callable[[httpx.AsyncClient, str, str, str | None, float], Provider]


def _clicksend(
    client: httpx.AsyncClient, account_id: str, secret: str, base_url: str | None, rate: float
) -> Provider:
    return clicksend.ClickSendProvider(
        client, username=account_id, api_key=secret, base_url=base_url, rate_per_second=rate
    )


BUILDERS: dict[str, Builder] = {"clicksend": _clicksend}
"""kind → adapter(client, account_id, opened secret, base_url, rate_per_second)."""


@dataclass(frozen=True)
class PathSecured:
    """A provider whose webhooks are not signed: they reach
    `/webhooks/sms/<kind>/<account>/<webhook secret>/{receipt,inbound}` (`path_webhooks`)."""

    encoding: Literal["form", "json"]
    receipt: Callable[[Mapping[str, str], str], Receipt]
    inbound: Callable[[Mapping[str, str], str], Inbound]


PATH_SECURED: dict[str, PathSecured] = {
    "clicksend": PathSecured("form", clicksend.parse_receipt, clicksend.parse_inbound),
}
