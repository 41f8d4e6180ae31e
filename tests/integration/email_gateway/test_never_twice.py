"""Never twice, never lost: an SMTP transaction cut off after the message data went out is
settled from the account's Sent folder; without one, it is sent again with the same
Message-ID (at-least-once)."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter

from tests.integration.email_gateway.conftest import (
    EmailHarness,
    drive,
    email_settings,
    ended,
    imap_settings,
    queued,
    states,
    terminal_of,
)
from tests.support.imap import Dovecot
from tests.support.waiting import wait_until

SENT = "Sent Items"


def cut_off_once(stage: str) -> tuple[object, Counter[str]]:
    """A script that drops the connection once, at `stage` (`data`: before the server keeps
    the message; `after_data`: after it kept it and filed it in Sent, before answering)."""
    seen: Counter[str] = Counter()

    def script(at: str, envelope, data):  # type: ignore[no-untyped-def]
        if at == stage and seen["dropped"] == 0:
            seen["dropped"] += 1
            return "drop"
        return None

    return script, seen


async def test_cut_off_after_acceptance_is_settled_from_the_sent_folder(
    email: EmailHarness, smtp_servers, dovecot: Dovecot
) -> None:
    user, _ = dovecot.add_user()
    dovecot.create(user, SENT)
    script, seen = cut_off_once("after_data")
    server = smtp_servers(sent_imap_url=dovecot.sent_url(user, SENT), script=script)
    site = await email.make_site(email_settings(server.port, imap=imap_settings(dovecot, user)))
    async with email.gateway() as gw:
        (mid,) = await email.submit(site, 1)
        await wait_until(lambda: queued(gw, 1), timeout=20, message="queued")
        await drive(email, site, lambda: ended(email, 1), message="settled")
    assert seen["dropped"] == 1
    assert server.message_ids() == Counter({f"<{mid}@smile.example>": 1}), "not sent again"
    assert dovecot.count(user, SENT) == 1
    end = terminal_of(await email.events("DISPATCH"))[mid]
    assert end.type == "stagger.dispatch.sent"
    assert end.data.provider_message_id == f"<{mid}@smile.example>"


async def test_cut_off_before_acceptance_is_sent_again_once(
    email: EmailHarness, smtp_servers, dovecot: Dovecot
) -> None:
    user, _ = dovecot.add_user()
    dovecot.create(user, SENT)
    script, seen = cut_off_once("data")
    server = smtp_servers(sent_imap_url=dovecot.sent_url(user, SENT), script=script)
    site = await email.make_site(email_settings(server.port, imap=imap_settings(dovecot, user)))
    async with email.gateway() as gw:
        (mid,) = await email.submit(site, 1)
        await wait_until(lambda: queued(gw, 1), timeout=20, message="queued")
        await drive(email, site, lambda: ended(email, 1), message="sent")
    assert seen["dropped"] == 1
    assert server.message_ids() == Counter({f"<{mid}@smile.example>": 1})
    events = await email.events("DISPATCH")
    deferred = [e.data.reason for e in events if e.type == "stagger.dispatch.deferred"]
    assert len(deferred) == 1 and "not in the Sent folder" in deferred[0]
    assert terminal_of(events)[mid].data.attempts == 2


async def test_without_a_sent_folder_it_is_sent_again_with_the_same_message_id(
    email: EmailHarness, smtp_servers
) -> None:
    script, _ = cut_off_once("after_data")
    server = smtp_servers(script=script)
    site = await email.make_site(email_settings(server.port))
    async with email.gateway() as gw:
        (mid,) = await email.submit(site, 1)
        await wait_until(lambda: queued(gw, 1), timeout=20, message="queued")
        await drive(email, site, lambda: ended(email, 1), message="sent")
    # At-least-once: the receiver got two copies carrying one Message-ID, which it can drop.
    assert server.message_ids() == Counter({f"<{mid}@smile.example>": 2})
    events = await email.events("DISPATCH")
    assert Counter(e.type for e in events if e.data.message_id == mid)["stagger.dispatch.sent"] == 1
    deferred = [e.data.reason for e in events if e.type == "stagger.dispatch.deferred"]
    assert "same Message-ID" in deferred[0]


async def test_a_crashed_replica_is_reconciled_from_the_sent_folder_not_resent(
    email: EmailHarness, smtp_servers, dovecot: Dovecot
) -> None:
    user, _ = dovecot.add_user()
    dovecot.create(user, SENT)
    answered = threading.Event()  # the server does not answer the first message until told
    calls: Counter[str] = Counter()

    async def script(at: str, envelope, data):  # type: ignore[no-untyped-def]
        if at == "after_data":
            calls[at] += 1
            if calls[at] == 1:
                await asyncio.to_thread(answered.wait, 60)
        return None

    server = smtp_servers(sent_imap_url=dovecot.sent_url(user, SENT), script=script)
    site = await email.make_site(email_settings(server.port, imap=imap_settings(dovecot, user)))
    fast = {"lease_seconds": 2.0, "recovery_seconds": 0.3, "smtp_timeout_seconds": 60.0}
    try:
        async with email.gateway(
            instance="doomed", smtp_connections_per_account=1, **fast
        ) as doomed:
            ids = await email.submit(site, 3)
            await wait_until(lambda: queued(doomed, 3), timeout=20, message="queued")
            await email.tick(site, 10)
            await wait_until(lambda: len(server.received) == 1, timeout=20, message="accepted")
            assert (await states(doomed))["sending"] == 3
            # The replica dies here: the server has the first message (and filed it in Sent),
            # the other two were claimed but never handed over; no outcome was recorded.
            doomed.engine.draining = True
            for task in list(doomed.engine.flight.inflight):
                task.cancel()
        async with email.gateway(instance="survivor", **fast) as survivor:
            await wait_until(lambda: _reconciled(survivor), timeout=30, message="reconciled")
            await drive(email, site, lambda: ended(email, 3), message="the rest sent")
    finally:
        answered.set()
    assert server.message_ids() == Counter({f"<{i}@smile.example>": 1 for i in ids})
    ends = terminal_of(await email.events("DISPATCH"))
    assert {ends[i].type for i in ids} == {"stagger.dispatch.sent"}
    assert ends[ids[0]].data.reconciled is True
    assert [ends[i].data.reconciled for i in ids[1:]] == [False, False]


async def _reconciled(service) -> bool:  # type: ignore[no-untyped-def]
    counts = await states(service)
    return counts["sent"] == 1 and counts["sending"] == 0
