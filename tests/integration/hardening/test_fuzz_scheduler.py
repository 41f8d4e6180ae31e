"""Fuzzing the scheduler's consumers: send-now commands (CONTROL) and its SETTINGS projection.

The real scheduler service runs in this process. Every malformed message must end in the
DEADLETTER stream with a reason naming what was wrong, nothing may stay pending, the service
must keep running, and a valid message after the storm must still be handled.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from nats.aio.client import Client

from services.config.service import ConfigService
from services.scheduler.projection import sites as scheduler_sites
from services.scheduler.service import SchedulerService
from shared.bus import subjects
from shared.bus.topology import CONTROL, TICKS
from shared.domain.site_settings import SiteSettings
from shared.events.schemas.control import CancelRequested, SendNowRequested
from shared.events.schemas.settings import SiteCreated
from tests.integration.dispatch.harness import make_site
from tests.integration.hardening.fuzzing import (
    EXAMPLES,
    DeadLetters,
    drained,
    examples,
    in_thread,
    service_running,
    service_settings,
    storm,
)
from tests.integration.hardening.malformed import Hostile, Malformed, headers_of, malformed
from tests.support.waiting import wait_until

GROUP, SITE = "g-sched", "site-sched"


async def ticks_for(nc: Client, site: str) -> int:
    info = await nc.jetstream().stream_info(TICKS, subjects_filter=f"ticks.*.site.{site}")
    return sum((info.state.subjects or {}).values())


async def test_send_now_dead_letters_every_malformed_request(
    nc: Client, nats_url: str, tmp_path: Path
) -> None:
    await make_site(nc, group=GROUP, site=SITE)
    valid = SendNowRequested(group_id=GROUP, site_id=SITE, channel="sms", reason="fuzz")
    headers, body = headers_of(valid)
    strategy = malformed(
        valid,
        others=[
            (
                CancelRequested(group_id=GROUP, site_id=SITE, channel="sms", message_ids=["m"]),
                r"expected stagger\.control\.send_now_requested, got "
                r"stagger\.control\.cancel_requested\.v1",
            )
        ],
        hostile=[
            Hostile(
                "unknown_site",
                {"site_id": "no-such-site"},
                r"site no-such-site of group g-sched is unknown to the scheduler",
            ),
        ],
    )
    extra = [
        Malformed(
            "naive_time",
            {**headers, "ce-time": "2030-01-01T00:00:00"},
            body,
            r"ce-time .*time zone|time zone",
        ),
    ]
    found = await in_thread(lambda: examples(strategy, EXAMPLES, "scheduler-send-now")) + extra
    subject = subjects.control("send_now", SITE)
    settings = service_settings(nats_url, tmp_path / "var")
    service = SchedulerService()
    async with (
        DeadLetters(nc).listening() as letters,
        service_running(service, settings),
    ):
        await wait_until(
            lambda: service.send_now is not None and service.send_now.ready,
            timeout=30,
            message="the send-now consumer running",
        )
        # Unknown-site requests are retried (ten deliveries, a second apart) before they are
        # dead-lettered: a new site's settings may still be on their way.
        await storm(
            nc, letters, [(subject, m) for m in found], consumer="scheduler-send-now", timeout=90
        )
        await drained(nc, CONTROL, "scheduler-send-now")
        before = await ticks_for(nc, SITE)
        await nc.jetstream().publish(subject, body, headers=headers)
        await wait_until(
            lambda: _more_ticks(nc, before),
            timeout=20,
            message="a manual tick for the valid request",
        )


async def test_settings_projections_dead_letter_every_malformed_event(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path
) -> None:
    """The scheduler's projection of SETTINGS, and the config service's read model beside it."""
    await make_site(nc, group=GROUP, site=SITE)
    snapshot = SiteSettings().model_dump(mode="json")
    valid = SiteCreated(
        group_id=GROUP, site_id="site-fuzz", overrides={}, settings=snapshot, group_version=1
    )
    strategy = malformed(
        valid,
        hostile=[
            Hostile("long_site_id", {"site_id": "s" * 300}, r"site id"),
            Hostile("nul_in_site_id", {"site_id": "s\x00"}, r"site id"),
            Hostile("long_group_id", {"group_id": "g" * 300}, r"group id"),
        ],
    )
    found = await in_thread(lambda: examples(strategy, EXAMPLES, "scheduler.sites"))
    subject = subjects.settings_site(GROUP, "site-fuzz")
    scheduler = SchedulerService()
    async with (
        DeadLetters(nc).listening() as letters,
        service_running(
            scheduler, service_settings(nats_url, tmp_path / "sched", database_url)
        ) as ctx,
        service_running(ConfigService(), service_settings(nats_url, tmp_path / "config")),
    ):
        items = [(subject, m) for m in found]
        await storm(nc, letters, items, consumer=["scheduler.sites", "config.settings"])
        # A snapshot whose profile is not an object is no `SiteSettings`: the event does not
        # decode, so both projections dead-letter it and the scheduler never plans the site.
        broken = SiteCreated(
            group_id=GROUP, site_id="site-broken", overrides={}, settings=snapshot, group_version=1
        )
        headers, body = headers_of(broken)
        data = json.loads(body)
        data["settings"]["profile"] = "not an object"
        bad = Malformed("bad_profile", headers, json.dumps(data).encode(), r"settings\.profile")
        broken_subject = subjects.settings_site(GROUP, "site-broken")
        await storm(
            nc, letters, [(broken_subject, bad)], consumer=["scheduler.sites", "config.settings"]
        )
        # The projections moved past the storm and still apply settings: a new site arrives.
        await make_site(nc, group=GROUP, site="site-after")
        await wait_until(
            lambda: _stored_sites(ctx), timeout=20, message="the site created after the storm"
        )
        assert scheduler.directory is not None
        await wait_until(
            lambda: scheduler.directory.get("site-after") is not None,  # type: ignore[union-attr]
            message="the new site planned",
        )
        assert scheduler.directory.get("site-broken") is None, "unusable settings, no ticks"


async def _more_ticks(nc: Client, before: int) -> bool:
    return await ticks_for(nc, SITE) > before


async def _stored_sites(ctx: Any) -> bool:
    async with ctx.db() as session:
        ids = set((await session.execute(sa.select(scheduler_sites.c.site_id))).scalars())
    return {SITE, "site-after"} <= ids
