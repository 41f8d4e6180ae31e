"""The group dashboard: every site the caller may see on one page, with what is waiting, sent
today (in the site's zone), whether sending is held and why, warnings and the next session.

Waiting counts come from the gateways (the `queue_depth` request of each channel), sent today
from the config read model's hourly counters, holds from the SMS account's credit events.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.config.adapters.credit_reports import account_credits, hold_of
from services.config.adapters.sent_counts import sent_since
from services.config.domain.aggregates import SiteState
from shared.bus import subjects
from shared.domain.accounts import sms_account_id
from shared.domain.site_status import session_status, status_line
from shared.domain.wallclock import resolve_tz

CHANNELS = ("sms", "email")


async def _waiting(nc: Client, channel: str, site_id: str) -> int | None:
    try:
        reply = await nc.request(
            subjects.rpc(f"{channel}_gateway", "queue_depth"),
            json.dumps({"site_id": site_id}).encode(),
            timeout=0.5,
        )
        return int(json.loads(reply.data)["queued"])
    except (NoRespondersError, NatsTimeout, ValueError, KeyError, TypeError):
        return None


async def site_row(
    nc: Client,
    db: async_sessionmaker[AsyncSession],
    site: SiteState,
    warnings: list[dict[str, Any]],
    holds: dict[str, str | None],
    now: datetime,
) -> dict[str, Any]:
    """One site's line of the dashboard."""
    zone = resolve_tz(site.settings.profile.timezone)
    midnight = now.astimezone(zone).replace(hour=0, minute=0, second=0, microsecond=0)
    waiting = dict(
        zip(
            CHANNELS,
            await asyncio.gather(*(_waiting(nc, c, site.site_id) for c in CHANNELS)),
            strict=True,
        )
    )
    sent = (await sent_since(db, [site.site_id], midnight)).get(site.site_id, 0)
    held = None
    account = sms_account_id(site.settings.sms.provider, site.group_id)
    if account is not None:
        if account not in holds:
            credits = await account_credits(nc, account, now - timedelta(days=30))
            holds[account] = hold_of(credits)
        held = holds[account]
    session = session_status(site.settings.schedule("sms"), now)
    sms_waiting = waiting["sms"] if account is not None else 0
    return {
        "site_id": site.site_id,
        "name": site.name,
        "timezone": site.settings.profile.timezone,
        "waiting": waiting,
        "sent_today": sent,
        "held": held,
        "warnings": warnings,
        "open_now": session.open_now,
        "until": session.until,
        "next_open": session.next_open,
        "status": status_line(sms_waiting, held, session),
    }


async def dashboard(
    nc: Client,
    db: async_sessionmaker[AsyncSession],
    sites: list[tuple[SiteState, list[dict[str, Any]]]],
) -> list[dict[str, Any]]:
    """Every given site's line, in the order given (accounts shared by sites read once)."""
    now = datetime.now(UTC)
    holds: dict[str, str | None] = {}
    return [await site_row(nc, db, site, warnings, holds, now) for site, warnings in sites]
