"""Fuzzing the gateways' bus consumers: outbox intake, ticks and operator commands.

The real SMS and email gateway services run in this process against the session's NATS. Each
consumer gets a storm of malformed messages (see `malformed.py`); every one must end in the
DEADLETTER stream with a reason naming what was wrong, the consumer's durable must be left with
nothing pending or redelivering, the service must not have stopped, and a valid message sent
after the storm must still be handled.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from nats.aio.client import Client

from services.email_gateway.adapters import tables as email_tables
from services.email_gateway.composition import EmailGatewayService
from services.sms_gateway.adapters import tables as sms_tables
from services.sms_gateway.service import SmsGatewayService
from shared.bus import subjects
from shared.bus.topology import CONTROL, OUTBOX, TICKS
from shared.dispatch import schema
from shared.dispatch.metrics import TICKS_SEEN
from shared.events.schemas.control import CancelRequested, SendNowRequested
from shared.events.schemas.messages import MessageAccepted
from shared.events.schemas.ticks import TickIssued
from shared.runtime.service import BaseService
from tests.integration.dispatch.harness import make_site, send_tick
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
from tests.integration.hardening.malformed import Hostile, headers_of, malformed
from tests.support.waiting import wait_until

GROUP, SITE = "g-fuzz", "site-fuzz"
CHANNELS = ["sms", "email"]


def gateway(channel: str) -> tuple[BaseService, Any]:
    if channel == "sms":
        return SmsGatewayService(), sms_tables.DISPATCH.messages
    return EmailGatewayService(), email_tables.DISPATCH.messages


def accepted(channel: str, message_id: str = "m-valid") -> MessageAccepted:
    return MessageAccepted(
        message_id=message_id,
        group_id=GROUP,
        site_id=SITE,
        channel=channel,
        to="+447700900001" if channel == "sms" else "patient@example.com",
        body="hello",
        submitted_at=datetime.now(UTC),
    )


def tick(channel: str, *, budget: int = 0) -> TickIssued:
    now = datetime.now(UTC)
    return TickIssued(
        tick_id=f"t-{now.timestamp()}",
        channel=channel,
        scope="site",
        group_id=GROUP,
        site_id=SITE,
        account="acct",
        budget=budget,
        spacing_seconds=0.0,
        scheduled_at=now,
        not_before=now,
        not_after=now + timedelta(hours=2),
        reason="fuzz",
    )


async def rows(ctx: Any, table: Any) -> dict[str, str]:
    async with ctx.db() as session:
        result = await session.execute(sa.select(table.c.message_id, table.c.state))
        return {r.message_id: r.state for r in result}


@pytest.mark.parametrize("channel", CHANNELS)
async def test_outbox_intake_dead_letters_every_malformed_message(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path, channel: str
) -> None:
    await make_site(nc, group=GROUP, site=SITE)
    other = "email" if channel == "sms" else "sms"
    strategy = malformed(
        accepted(channel),
        others=[(tick(channel), r"expected stagger\.message\.accepted, got stagger\.tick\.issued")],
        hostile=[
            Hostile("wrong_channel", {"channel": other}, rf"an? {other} message on the {channel}"),
            Hostile(
                "unknown_site",
                {"site_id": "no-such-site"},
                r"subject outbox\.\w+\.\S+ is not the outbox of site no-such-site",
            ),
            Hostile("foreign_group", {"group_id": "g-other"}, rf"{SITE} is not in group g-other"),
            Hostile("long_message_id", {"message_id": "m" * 300}, r"message_id"),
            Hostile("nul_in_message_id", {"message_id": "m\x00"}, r"message_id"),
            Hostile("long_recipient", {"to": "1" * 400}, r"\bto\b|recipient"),
            Hostile("nul_in_recipient", {"to": "+44\x00"}, r"\bto\b|recipient"),
            Hostile(
                "naive_times",
                {"submitted_at": "2030-01-01T00:00:00", "not_before": "2030-01-01T00:00:00"},
                r"submitted_at, not_before without a time zone",
            ),
        ],
    )
    found = await in_thread(lambda: examples(strategy, EXAMPLES, f"{channel}-outbox"))
    subject = subjects.outbox(channel, SITE)  # type: ignore[arg-type]
    definition, messages = gateway(channel)
    settings = service_settings(nats_url, tmp_path / "var", database_url)
    async with (
        DeadLetters(nc).listening() as letters,
        service_running(definition, settings) as ctx,
    ):
        await storm(nc, letters, [(subject, m) for m in found], consumer=f"{channel}-outbox")
        await drained(nc, OUTBOX, f"{channel}-outbox")
        # Still taking messages: a valid one after the storm is queued.
        headers, body = headers_of(accepted(channel, "m-after-storm"))
        await nc.jetstream().publish(subject, body, headers=headers)
        await wait_until(
            lambda: _state_is(ctx, messages, "m-after-storm", schema.QUEUED),
            timeout=20,
            message="the valid message queued",
        )
        assert set(await rows(ctx, messages)) == {"m-after-storm"}, "nothing malformed stored"


@pytest.mark.parametrize("channel", CHANNELS)
async def test_ticks_dead_letter_every_malformed_tick(
    nc: Client, nats_url: str, tmp_path: Path, channel: str
) -> None:
    await make_site(nc, group=GROUP, site=SITE)
    valid = tick(channel)
    window = valid.model_dump(mode="json")
    strategy = malformed(
        valid,
        others=[(accepted(channel), r"expected a tick, got stagger\.message\.accepted")],
        hostile=[
            Hostile(
                "naive_times",
                {k: window[k].rstrip("Z") for k in ("scheduled_at", "not_before", "not_after")},
                r"time zone",
            ),
            Hostile(
                "inverted_window",
                {"not_before": window["not_after"], "not_after": window["not_before"]},
                r"not_before .*after.* not_after",
            ),
            Hostile("negative_budget", {"budget": -5}, r"budget"),
            Hostile("huge_spacing", {"spacing_seconds": 1e300}, r"spacing"),
            Hostile("negative_spacing", {"spacing_seconds": -1.0}, r"spacing"),
        ],
    )
    found = await in_thread(lambda: examples(strategy, EXAMPLES, f"{channel}-ticks"))
    subject = subjects.tick_site(channel, SITE)  # type: ignore[arg-type]
    definition, _ = gateway(channel)
    settings = service_settings(nats_url, tmp_path / "var")
    async with (
        DeadLetters(nc).listening() as letters,
        service_running(definition, settings),
    ):
        await storm(nc, letters, [(subject, m) for m in found], consumer=f"{channel}-ticks")
        await drained(nc, TICKS, f"{channel}-ticks")
        taken = TICKS_SEEN.labels(channel, "taken")._value.get()
        await send_tick_for(nc, channel)
        await wait_until(
            lambda: TICKS_SEEN.labels(channel, "taken")._value.get() > taken,
            timeout=20,
            message="a valid tick taken after the storm",
        )
        await drained(nc, TICKS, f"{channel}-ticks")


@pytest.mark.parametrize("channel", CHANNELS)
async def test_commands_dead_letter_every_malformed_command(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path, channel: str
) -> None:
    await make_site(nc, group=GROUP, site=SITE)
    valid = CancelRequested(group_id=GROUP, site_id=SITE, channel=channel, message_ids=["m-x"])
    strategy = malformed(
        valid,
        others=[
            (tick(channel), r"stagger\.tick\.issued"),
            (
                SendNowRequested(group_id=GROUP, site_id=SITE, channel=channel),
                r"stagger\.control\.send_now_requested",
            ),
        ],
        hostile=[
            Hostile("nul_in_ids", {"message_ids": ["m\x00"]}, r"message_ids|message id"),
            Hostile("long_ids", {"message_ids": ["m" * 300]}, r"message_ids|message id"),
        ],
    )
    found = await in_thread(lambda: examples(strategy, EXAMPLES, f"{channel}-control"))
    subject = subjects.gateway_control(channel, "cancel", SITE)  # type: ignore[arg-type]
    definition, messages = gateway(channel)
    settings = service_settings(nats_url, tmp_path / "var", database_url)
    async with (
        DeadLetters(nc).listening() as letters,
        service_running(definition, settings) as ctx,
    ):
        # A queued message the valid command will cancel after the storm.
        headers, body = headers_of(accepted(channel, "m-to-cancel"))
        await nc.jetstream().publish(subjects.outbox(channel, SITE), body, headers=headers)  # type: ignore[arg-type]
        await wait_until(lambda: _state_is(ctx, messages, "m-to-cancel", schema.QUEUED))
        await storm(nc, letters, [(subject, m) for m in found], consumer=f"{channel}-control")
        await drained(nc, CONTROL, f"{channel}-control")
        cancel = CancelRequested(
            group_id=GROUP, site_id=SITE, channel=channel, message_ids=["m-to-cancel"]
        )
        headers, body = headers_of(cancel)
        await nc.jetstream().publish(subject, body, headers=headers)
        await wait_until(
            lambda: _state_is(ctx, messages, "m-to-cancel", schema.CANCELLED),
            timeout=20,
            message="the valid command applied after the storm",
        )


async def send_tick_for(nc: Client, channel: str) -> None:
    if channel == "sms":
        await send_tick(nc, SITE, budget=1)
        return
    headers, body = headers_of(tick(channel, budget=1))
    await nc.jetstream().publish(subjects.tick_site("email", SITE), body, headers=headers)


async def _state_is(ctx: Any, table: Any, message_id: str, state: str) -> bool:
    return (await rows(ctx, table)).get(message_id) == state
