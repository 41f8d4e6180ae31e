"""Credit-aware answers for the forecast and submission: how many messages the SMS account's
latest reported balance pays for, after what the site already has queued.

Only a warning: submission never refuses for credits (a top-up may come before their turn).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from nats.aio.client import Client

from services.config.adapters.credit_reports import latest_balance
from services.config.domain.aggregates import SiteState
from shared.domain.accounts import sms_account_id
from shared.domain.credit_fit import credit_fit, uniform_fit


async def _balance(nc: Client, site: SiteState) -> tuple[float, str] | None:
    account = sms_account_id(site.settings.sms.provider, site.group_id)
    if account is None:
        return None
    return await latest_balance(nc, account, datetime.now(UTC) - timedelta(days=30))


def _unknown() -> dict[str, Any]:
    return {"balance": None, "note": "no balance reported yet for this SMS account"}


async def for_submission(
    nc: Client, site: SiteState, costs: Sequence[float], queued: int | None
) -> dict[str, Any]:
    """What the credits left pay for of a submission's SMS (`costs` in order)."""
    found = await _balance(nc, site)
    if found is None:
        return _unknown()
    per_part = site.settings.sms.provider.credits_per_segment
    fit = credit_fit(costs, found[0], ahead=(queued or 0) * per_part, unit=found[1])
    return fit.as_json()


async def for_forecast(nc: Client, site: SiteState, new: int, queued: int | None) -> dict[str, Any]:
    """What the credits left pay for of `new` one-part SMS after `queued` ones."""
    found = await _balance(nc, site)
    if found is None:
        return _unknown()
    per_part = site.settings.sms.provider.credits_per_segment
    fit = uniform_fit(new, per_part, found[0], ahead=(queued or 0) * per_part, unit=found[1])
    return fit.as_json()
