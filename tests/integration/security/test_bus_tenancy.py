"""The bus keeps tenants apart: a gateway takes an outbox message only for the site its subject
names, and one site's message id cannot make another site's message disappear."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from nats.aio.client import Client

from services.config.handlers import submission
from services.config.handlers.submission import SubmissionIn, message_id
from shared.bus import outbox_ids, subjects
from shared.bus.publisher import Outgoing, publisher_for
from shared.bus.topology import OUTBOX
from shared.dispatch.adapter import SendResult
from shared.dispatch.queue import Claimed
from shared.events.codec import encode
from shared.events.envelope import make_event
from shared.events.schemas.dispatch import TERMINAL_TYPES
from shared.events.schemas.messages import MessageAccepted
from shared.sites import Site
from tests.integration.dispatch.harness import (
    SMS_TABLES,
    FakeAdapter,
    FakeProvider,
    config_handlers,
    engine_running,
    make_site,
    send_tick,
    submit,
)
from tests.integration.dispatch.test_engine import dispatch_events
from tests.integration.hardening.fuzzing import DeadLetters
from tests.support.waiting import wait_until


def accepted(
    *, group: str, site: str, mid: str, subject_site: str | None = None, msg_id: str | None = None
) -> Outgoing:
    """An accepted message as a producer publishes it (subject and Nats-Msg-Id overridable)."""
    data = MessageAccepted(
        message_id=mid,
        group_id=group,
        site_id=site,
        channel="sms",
        to="+447700900555",
        body="Your appointment is tomorrow at 9:00",
        submitted_at=datetime.now(UTC),
    )
    headers, body = encode(make_event(data, source="tests", actor="test", event_id=mid))
    headers["Nats-Msg-Id"] = msg_id or outbox_ids.msg_id(site, mid)
    return Outgoing(subjects.outbox("sms", subject_site or site), body, headers)  # type: ignore[arg-type]


async def rows(svc: object) -> dict[str, str]:
    m = SMS_TABLES.messages
    async with svc.engine.queue.db() as session:  # type: ignore[attr-defined]
        result = await session.execute(sa.select(m.c.message_id, m.c.site_id))
        return {r.message_id: r.site_id for r in result}


async def outbox_count(nc: Client, site: str) -> int:
    info = await nc.jetstream().stream_info(OUTBOX, subjects_filter=subjects.outbox("sms", site))
    return sum((info.state.subjects or {}).values())


async def test_subject_and_data_naming_different_sites_is_dead_lettered_and_not_sent(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path
) -> None:
    await make_site(nc, group="g-a", site="site-a")
    await make_site(nc, group="g-b", site="site-b")
    provider = FakeProvider()
    async with (
        DeadLetters(nc).listening() as letters,
        engine_running(nats_url, database_url, tmp_path, FakeAdapter(provider)) as svc,
    ):
        # Group A's producer may publish on site-a's subject only; its data names site-b.
        await publisher_for(nc).publish_all(
            [accepted(group="g-b", site="site-b", mid="m-smuggled", subject_site="site-a")]
        )
        good = await submit(nc, "site-b", 1)
        await wait_until(lambda: letters.of("sms-outbox"), timeout=30, message="a dead letter")
        await wait_until(lambda: _stored(svc, good[0]), timeout=30, message="site-b's own")
        await send_tick(nc, "site-b", budget=5)
        await send_tick(nc, "site-a", budget=5)
        await wait_until(lambda: provider.count(good[0]) == 1, timeout=30, message="good sent")
        assert "m-smuggled" not in await rows(svc)
    [letter] = letters.of("sms-outbox")
    assert letter.subject == "outbox.sms.site-a"
    assert "outbox.sms.site-a is not the outbox of site site-b" in letter.reason
    assert provider.count("m-smuggled") == 0


async def _stored(svc: object, mid: str) -> bool:
    return mid in await rows(svc)


async def test_another_sites_message_with_the_same_id_does_not_preempt_it_in_the_outbox(
    nc: Client,
) -> None:
    await make_site(nc, group="g-a", site="site-a")
    await make_site(nc, group="g-b", site="site-b")
    # Group B knows (or guesses) the id site-a's next submission will get, and publishes a
    # message of its own under that id first, as a producer of the old convention did.
    future = message_id("site-a", "sms", "recall-0")
    await publisher_for(nc).publish_all(
        [accepted(group="g-b", site="site-b", mid=future, msg_id=future)]
    )
    [mid] = await submit(nc, "site-a", 1, prefix="recall")
    assert mid == future
    assert await outbox_count(nc, "site-b") == 1
    assert await outbox_count(nc, "site-a") == 1, "site-a's message was dropped as a duplicate"


async def test_a_nats_msg_id_naming_another_site_is_dead_lettered(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path
) -> None:
    await make_site(nc, group="g-a", site="site-a")
    await make_site(nc, group="g-b", site="site-b")
    future = message_id("site-a", "sms", "recall-7")
    async with (
        DeadLetters(nc).listening() as letters,
        engine_running(nats_url, database_url, tmp_path, FakeAdapter(FakeProvider())) as svc,
    ):
        # Site-b's own subject and data, but the de-duplication id site-a's message will use.
        await publisher_for(nc).publish_all(
            [
                accepted(
                    group="g-b",
                    site="site-b",
                    mid="m-b-1",
                    msg_id=outbox_ids.msg_id("site-a", future),
                )
            ]
        )
        await wait_until(lambda: letters.of("sms-outbox"), timeout=30, message="a dead letter")
        assert await rows(svc) == {}
    [letter] = letters.of("sms-outbox")
    assert f"Nats-Msg-Id 'site-a:{future}' names another site than site-b" in letter.reason


async def test_a_forged_dedup_id_does_not_drop_the_sites_api_submission(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path
) -> None:
    await make_site(nc, group="g-a", site="site-a")
    await make_site(nc, group="g-b", site="site-b")
    adapter = SiteRecordingAdapter(FakeProvider())
    future = message_id("site-a", "sms", "recall-0")
    async with (
        DeadLetters(nc).listening() as letters,
        engine_running(nats_url, database_url, tmp_path, adapter) as svc,
    ):
        # Group B's producer forges the plain de-duplication id of site-a's next submission.
        await publisher_for(nc).publish_all(
            [
                accepted(
                    group="g-b",
                    site="site-b",
                    mid="m-b-1",
                    msg_id=outbox_ids.msg_id("site-a", future),
                )
            ]
        )
        await wait_until(lambda: letters.of("sms-outbox"), timeout=30, message="a dead letter")
        site = await config_handlers(nc).site("site-a")
        body = SubmissionIn.model_validate(
            {
                "channel": "sms",
                "messages": [{"to": "+447700900001", "body": "hi", "idempotency_key": "recall-0"}],
            }
        )
        [sent] = await submission.submit(nc, site, body, "test", msg_id_key=b"config-key")
        assert sent.message_id == future
        await wait_until(lambda: _stored(svc, future), timeout=30, message="site-a's stored")
        await send_tick(nc, "site-a", budget=5)
        await wait_until(
            lambda: _terminal_sites(nc, future, 1), timeout=60, message="site-a's sent"
        )
    assert adapter.calls == {("site-a", future): 1}


async def test_a_message_whose_id_another_sites_message_holds_is_stored_as_its_own(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path
) -> None:
    # Until the ledger was keyed by (site, message id), site-a's message was dead-lettered
    # here ("already used by another site's message"): site-b's id kept it out.
    await make_site(nc, group="g-a", site="site-a")
    await make_site(nc, group="g-b", site="site-b")
    async with (
        DeadLetters(nc).listening() as letters,
        engine_running(nats_url, database_url, tmp_path, FakeAdapter(FakeProvider())) as svc,
    ):
        await publisher_for(nc).publish_all([accepted(group="g-b", site="site-b", mid="m-same")])
        await wait_until(lambda: _stored(svc, "m-same"), timeout=30, message="site-b's stored")
        await publisher_for(nc).publish_all([accepted(group="g-a", site="site-a", mid="m-same")])
        await wait_until(
            lambda: _keys_stored(svc, 2), timeout=30, message="site-a's stored beside site-b's"
        )
        assert await keyed_rows(svc) == {
            ("site-a", "m-same"): "g-a",
            ("site-b", "m-same"): "g-b",
        }
    assert letters.of("sms-outbox") == []


class SiteRecordingAdapter(FakeAdapter):
    """Counts provider calls per (site, message id): the provider sees both sites' messages."""

    def __init__(self, provider: FakeProvider) -> None:
        super().__init__(provider)
        self.calls: Counter[tuple[str, str]] = Counter()

    async def send(self, claimed: Claimed, site: Site) -> SendResult:
        self.calls[(claimed.site_id, claimed.message_id)] += 1
        return await super().send(claimed, site)


async def test_another_groups_message_under_the_id_a_site_submits_next_blocks_neither(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path
) -> None:
    await make_site(nc, group="g-a", site="site-a")
    await make_site(nc, group="g-b", site="site-b")
    adapter = SiteRecordingAdapter(FakeProvider())
    # Group B's producer knows the id site-a's next submission will get and publishes a
    # message of its own site under it first.
    future = message_id("site-a", "sms", "recall-0")
    async with (
        DeadLetters(nc).listening() as letters,
        engine_running(nats_url, database_url, tmp_path, adapter) as svc,
    ):
        await publisher_for(nc).publish_all([accepted(group="g-b", site="site-b", mid=future)])
        await wait_until(lambda: _stored(svc, future), timeout=30, message="site-b's stored")
        [mid] = await submit(nc, "site-a", 1, prefix="recall")
        assert mid == future
        await wait_until(lambda: _keys_stored(svc, 2), timeout=30, message="site-a's stored")
        await send_tick(nc, "site-b", budget=5)
        await send_tick(nc, "site-a", budget=5)
        await wait_until(
            lambda: _terminal_sites(nc, future, 2), timeout=60, message="both terminal"
        )
    assert adapter.calls == {("site-a", future): 1, ("site-b", future): 1}
    terminal = [
        e
        for e in await dispatch_events(nc)
        if e.type in TERMINAL_TYPES and e.data.message_id == future
    ]
    assert sorted((e.data.site_id, e.data.group_id, e.type) for e in terminal) == [
        ("site-a", "g-a", "stagger.dispatch.sent"),
        ("site-b", "g-b", "stagger.dispatch.sent"),
    ]
    assert letters.of("sms-outbox") == []


async def keyed_rows(svc: object) -> dict[tuple[str, str], str]:
    m = SMS_TABLES.messages
    async with svc.engine.queue.db() as session:  # type: ignore[attr-defined]
        result = await session.execute(sa.select(m.c.site_id, m.c.message_id, m.c.group_id))
        return {(r.site_id, r.message_id): r.group_id for r in result}


async def _keys_stored(svc: object, count: int) -> bool:
    return len(await keyed_rows(svc)) >= count


async def _terminal_sites(nc: Client, mid: str, count: int) -> bool:
    events = await dispatch_events(nc)
    return (
        len(
            {
                e.data.site_id
                for e in events
                if e.type in TERMINAL_TYPES and e.data.message_id == mid
            }
        )
        >= count
    )
