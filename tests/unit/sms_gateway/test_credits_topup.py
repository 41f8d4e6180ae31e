"""Credits: balances older than what is known (from before a top-up, or a send answered late)
must not move the account in or out of "low".

Sends in flight while a top-up is requested come back with the balance from before it; taken
at face value after the top-up, one of them flipped the account back to "low" and asked for a
second top-up. The database and event parts of `Credits` are replaced by recorders here: what
is under test is only which balance reports count.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from services.sms_gateway.credits import Credits
from services.sms_gateway.providers.base import Balance
from shared.domain.site_settings import SiteSettings
from shared.sites import Site

SITE = Site(
    "g1",
    "s1",
    SiteSettings.model_validate(
        {
            "sms": {
                "provider": {"kind": "simulator", "account_id": "a1"},
                "low_credit_threshold": 20,
                "auto_topup_amount": 100,
            }
        }
    ),
    1,
)


class _Provider:
    kind = "simulator"
    unit = "credits"
    supports_topup = True

    def __init__(self) -> None:
        self.topups: list[float] = []

    async def topup(self, amount: float) -> Balance:
        self.topups.append(amount)
        return Balance(130.0, "credits")


def _credits() -> tuple[Credits, list[bool]]:
    async def emit(*_: Any, **__: Any) -> None:
        return None

    gateway = SimpleNamespace(
        settings=SimpleNamespace(balance_report_seconds=60), events=SimpleNamespace(emit=emit)
    )
    credits = Credits(gateway)  # type: ignore[arg-type]
    flags: list[bool] = []
    state = {"low": False}

    async def set_low(_account: str, _site: Any, _provider: Any, low: bool, *_: Any) -> bool:
        crossed = state["low"] != low
        state["low"] = low
        if crossed:
            flags.append(low)
        return crossed

    async def report(*_: Any, **__: Any) -> None:
        return None

    credits._set_low = set_low  # type: ignore[method-assign]
    credits.report = report  # type: ignore[method-assign]
    return credits, flags


async def test_a_balance_from_before_the_top_up_does_not_ask_for_another() -> None:
    credits, flags = _credits()
    provider = _Provider()
    loop = asyncio.get_running_loop()
    in_flight = loop.time()  # this send began before the top-up below
    await credits.after_send("a1", SITE, provider, 19.0, loop.time())  # type: ignore[arg-type]
    assert provider.topups == [100] and flags == [True, False]

    await credits.after_send("a1", SITE, provider, 18.0, in_flight)  # type: ignore[arg-type]
    assert provider.topups == [100], "a stale balance asked for a second top-up"
    assert flags == [True, False]

    # Balances from sends begun after the top-up count as before.
    await credits.after_send("a1", SITE, provider, 129.0, loop.time())  # type: ignore[arg-type]
    await credits.after_send("a1", SITE, provider, 19.0, loop.time())  # type: ignore[arg-type]
    assert flags == [True, False, True, False] and provider.topups == [100, 100]


async def test_an_older_balance_arriving_after_a_newer_one_is_ignored() -> None:
    credits, flags = _credits()
    provider = _Provider()
    provider.supports_topup = False  # type: ignore[misc]
    loop = asyncio.get_running_loop()
    first, second = loop.time(), loop.time() + 0.001
    # Threshold 20: the later send's answer (19 left: low) comes back before the earlier
    # one's (20 left: not low).
    await credits.after_send("a1", SITE, provider, 19.0, second)  # type: ignore[arg-type]
    await credits.after_send("a1", SITE, provider, 20.0, first)  # type: ignore[arg-type]
    await credits.after_send("a1", SITE, provider, 18.0, second + 0.001)  # type: ignore[arg-type]
    assert flags == [True], "one crossing into low, not low / not low / low again"
