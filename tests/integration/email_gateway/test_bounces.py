"""Bounces and the suppression list, against a real SMTP server and a real IMAP server: a hard
bounce puts the address on the group's email list at once (a later message to it ends
`suppressed`, never reaching SMTP); soft bounces are counted and suppress it at the threshold;
a bounce read again (repeated polls, a lost cursor) counts once."""

from __future__ import annotations

import uuid

import sqlalchemy as sa

from services.email_gateway.adapters import tables
from services.email_gateway.composition import EmailGatewayService
from tests.integration.email_gateway.conftest import (
    EmailHarness,
    email_settings,
    ended,
    imap_settings,
    queued,
    terminal_of,
    ticks_done,
)
from tests.support.imap import Dovecot
from tests.support.waiting import wait_until

PATIENT = "patient0@example.org"


def dsn(original: str, recipient: str, action: str, status: str) -> bytes:
    """A delivery-status notification (RFC 3464) about one of our messages."""
    return (
        "From: Mail Delivery System <MAILER-DAEMON@mx.smile.example>\r\n"
        "To: front@smile.example\r\n"
        f"Subject: Delivery Status Notification ({action} {status})\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@mx.smile.example>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="r1"\r\n'
        "\r\n"
        "--r1\r\n"
        "Content-Type: text/plain\r\n"
        "\r\n"
        "Delivery report.\r\n"
        "--r1\r\n"
        "Content-Type: message/delivery-status\r\n"
        "\r\n"
        "Reporting-MTA: dns; mx.smile.example\r\n"
        "\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\n"
        f"Action: {action}\r\n"
        f"Status: {status}\r\n"
        f"Diagnostic-Code: smtp; {status} mailbox trouble\r\n"
        "--r1\r\n"
        "Content-Type: text/rfc822-headers\r\n"
        "\r\n"
        "From: Smile Dental <front@smile.example>\r\n"
        f"To: {recipient}\r\n"
        f"Message-ID: {original}\r\n"
        "Subject: Recall\r\n"
        "--r1--\r\n"
    ).encode()


async def suppressed_here(gw: EmailGatewayService, email: EmailHarness) -> bool:
    """The replica follows OPTOUTS: the opt-out reached its list (what a claim checks)."""
    listed = gw.adapter.suppression
    return listed.is_suppressed(email.group_id, "email", listed.filed_as(email.group_id, PATIENT))


async def taken_in(gw: EmailGatewayService, email: EmailHarness, n: int) -> bool:
    """The gateway stored the newest message (queued), or already ended it (n in all)."""
    return await queued(gw, 1) or await ended(email, n)


async def optouts(email: EmailHarness, type_: str = "stagger.optout.opted_out") -> list:
    return [e for e in await email.events("OPTOUTS") if e.type == type_]


async def test_hard_bounce_suppresses_the_address_and_a_later_message_to_it(
    email: EmailHarness, smtp_servers, dovecot: Dovecot
) -> None:
    server = smtp_servers()
    user, _ = dovecot.add_user()
    site = await email.make_site(
        email_settings(server.port, imap=imap_settings(dovecot, user, sent_folder=None))
    )
    async with email.gateway() as gw:
        (first,) = await email.submit(site, 1)
        await wait_until(lambda: queued(gw, 1), timeout=20, message="queued")
        await email.tick(site, 10)
        await wait_until(lambda: ended(email, 1), timeout=20, message="sent")
        assert await optouts(email) == []
        dovecot.append(user, "INBOX", dsn(f"<{first}@smile.example>", PATIENT, "failed", "5.1.1"))
        await email.tick(site, 10, receive=True)
        await wait_until(lambda: optouts(email), timeout=30, message="bounce opt-out")
        await wait_until(lambda: suppressed_here(gw, email), timeout=20, message="followed")
        # Read again from the start, as after a crash between recording and the cursor move.
        async with gw.engine.queue.db() as session, session.begin():
            await session.execute(sa.delete(tables.cursors))
        await email.tick(site, 10, receive=True)
        await wait_until(lambda: ticks_done(email), timeout=30, message="second poll")

        (later,) = await email.submit(site, 1)
        await wait_until(lambda: taken_in(gw, email, 2), timeout=20, message="taken in")
        await email.tick(site, 10)
        await wait_until(lambda: ended(email, 2), timeout=20, message="later message ended")
    (optout,) = await optouts(email)
    # The ledger files the address by its salted hash (docs/privacy.md): so does the opt-out.
    filed = gw.adapter.suppression.filed_as(email.group_id, PATIENT)
    assert (optout.data.recipient_tag, optout.data.how) == (filed, "bounce")
    assert PATIENT not in optout.data.recipient
    assert optout.data.channel == "email" and optout.data.site_id == site
    assert optout.subject == filed and optout.group_id == email.group_id
    ends = terminal_of(await email.events("DISPATCH"))
    undelivered = [
        e.data.message_id
        for e in await email.events("DISPATCH")
        if e.type == "stagger.dispatch.undelivered"
    ]
    assert undelivered == [first], "the bounce also marks the message undelivered"
    assert ends[later].type == "stagger.dispatch.suppressed"
    assert len(server.received) == 1, "the suppressed message never reached SMTP"
    assert await optouts(email, "stagger.optout.soft_bounce_counted") == []


async def test_soft_bounces_count_toward_the_threshold_then_suppress(
    email: EmailHarness, smtp_servers, dovecot: Dovecot
) -> None:
    server = smtp_servers()
    user, _ = dovecot.add_user()
    site = await email.make_site(
        email_settings(server.port, imap=imap_settings(dovecot, user, sent_folder=None))
    )
    async with email.gateway(soft_bounce_threshold=2) as gw:
        ids = await email.submit(site, 2, to=lambda i: PATIENT)
        await wait_until(lambda: queued(gw, 2), timeout=20, message="queued")
        await email.tick(site, 10)
        await wait_until(lambda: ended(email, 2), timeout=20, message="sent")

        dovecot.append(user, "INBOX", dsn(f"<{ids[0]}@smile.example>", PATIENT, "delayed", "4.2.2"))
        await email.tick(site, 10, receive=True)
        await wait_until(
            lambda: optouts(email, "stagger.optout.soft_bounce_counted"),
            timeout=30,
            message="first soft bounce counted",
        )
        assert await optouts(email) == [], "one soft bounce does not suppress"
        (between,) = await email.submit(site, 1, to=lambda i: PATIENT)
        await wait_until(lambda: taken_in(gw, email, 3), timeout=20, message="taken in")
        await email.tick(site, 10)
        await wait_until(lambda: ended(email, 3), timeout=20, message="still sent")

        dovecot.append(user, "INBOX", dsn(f"<{ids[1]}@smile.example>", PATIENT, "failed", "4.4.7"))
        await email.tick(site, 10, receive=True)
        await wait_until(lambda: optouts(email), timeout=30, message="threshold reached")
        await wait_until(lambda: suppressed_here(gw, email), timeout=20, message="followed")
        async with gw.engine.queue.db() as session, session.begin():
            await session.execute(sa.delete(tables.cursors))
        await email.tick(site, 10, receive=True)
        await wait_until(lambda: ticks_done(email), timeout=30, message="poll again")

        (later,) = await email.submit(site, 1, to=lambda i: PATIENT)
        await wait_until(lambda: taken_in(gw, email, 4), timeout=20, message="taken in")
        await email.tick(site, 10)
        await wait_until(lambda: ended(email, 4), timeout=20, message="later message ended")
    counted = await optouts(email, "stagger.optout.soft_bounce_counted")
    tagged = gw.adapter.suppression.filed_as(email.group_id, PATIENT)
    assert [(e.data.recipient, e.data.count, e.data.threshold) for e in counted] == [
        (tagged, 1, 2),
        (tagged, 2, 2),
    ], "each soft bounce counted once, however often the mailbox is read"
    assert [e.data.status for e in counted] == ["4.2.2", "4.4.7"]
    (optout,) = await optouts(email)
    # The ledger files the address by its salted hash (docs/privacy.md): so does the opt-out.
    filed = gw.adapter.suppression.filed_as(email.group_id, PATIENT)
    assert (optout.data.recipient_tag, optout.data.how) == (filed, "bounce")
    assert PATIENT not in optout.data.recipient
    ends = terminal_of(await email.events("DISPATCH"))
    assert ends[between].type == "stagger.dispatch.sent"
    assert ends[later].type == "stagger.dispatch.suppressed"
    assert len(server.received) == 3
