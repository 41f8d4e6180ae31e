"""Through the config API: sessions added and removed change the ticks within a second."""

from __future__ import annotations

import itertools
import logging
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from tests.integration.scheduler.conftest import Stack
from tests.integration.scheduler.support import scrape, time_passes
from tests.support.waiting import wait_until

log = logging.getLogger(__name__)

EFFECT = timedelta(seconds=1)
"""The issue's bound: a settings change takes effect within one second."""


async def test_adding_and_removing_a_session_changes_ticks_within_a_second(stack: Stack) -> None:
    config, ticks = stack.config, stack.ticks
    group_id = await config.create_group()
    admin = await config.token(group_id, "group_admin")
    site = await config.create_site(
        admin,
        group_id,
        settings={
            "sms": {
                "provider": {"kind": "simulator", "account_id": "acct-api"},
                "every_minutes": 1 / 60,
                "sessions": [],
            },
            "email": {"enabled": False},
        },
    )
    site_id = site["site_id"]
    await wait_until(
        lambda: scrape(stack.scheduler.url, "stagger_scheduler_sites") >= 1,
        message="the scheduler knows the site",
    )
    await ticks.poll()
    assert ticks.of(site_id) == []  # no session, no ticks

    now = datetime.now(ZoneInfo("Europe/London"))
    session = {
        "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
        "start": (now - timedelta(minutes=1)).strftime("%H:%M"),
        "end": (now + timedelta(minutes=60)).strftime("%H:%M"),
    }
    async with config.client(admin) as client:
        current = await client.get(f"/api/v1/sites/{site_id}")
        added = await client.post(
            f"/api/v1/sites/{site_id}/sessions/sms",
            json=session,
            headers={"If-Match": current.headers["ETag"]},
        )
        assert added.status_code == 201, added.text
        changed_at = datetime.now(UTC)
        first = (await ticks.until(lambda got: bool(got), message="the first tick"))[0]
        started_after = first.stored_at - changed_at
        log.info(
            "first tick stored %.3f s after the session was added", started_after.total_seconds()
        )
        assert started_after < EFFECT, f"ticking started {started_after} after the change"

        await ticks.until(lambda got: len(got) >= 3, message="ticks every second")
        removed = await client.delete(
            added.headers["Location"], headers={"If-Match": added.headers["ETag"]}
        )
        assert removed.status_code == 200, removed.text
        removed_at = datetime.now(UTC)
        await time_passes(removed_at + timedelta(seconds=3), "three would-be ticks")
        await ticks.poll()
        late = [
            t.tick.scheduled_at
            for t in ticks.of(site_id)
            if t.tick.scheduled_at > removed_at + EFFECT
        ]
        assert late == [], "ticks went on after the session was removed"
        instants = [t.tick.scheduled_at for t in ticks.of(site_id)]
        assert len(instants) >= 3
        assert all(b - a >= timedelta(seconds=1) for a, b in itertools.pairwise(instants))

        sent = await client.post(
            f"/api/v1/sites/{site_id}/send-now", json={"channel": "sms", "reason": "chairside"}
        )
        assert sent.status_code == 202, sent.text
        manual = await ticks.until(
            lambda got: any(t.tick.manual for t in got), message="the manual tick"
        )
    tick = next(t for t in manual if t.tick.manual)
    assert tick.tick.reason.startswith("send-now by ") and tick.tick.reason.endswith(": chairside")
    assert tick.envelope.actor != "service:scheduler"
    assert tick.envelope.correlation_id == sent.json()["event_id"]
