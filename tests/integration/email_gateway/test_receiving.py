"""Receiving (the seed's Send/Receive) from a real IMAP server: each message once, matched to
the patient message it answers, bounces marking the original undelivered, attachments held in
quarantine until an explicit, recorded release."""

from __future__ import annotations

import hashlib
import os
import stat
import uuid
from pathlib import Path

import httpx
import sqlalchemy as sa

from services.email_gateway.adapters import tables
from shared.bus import subjects
from shared.events.schemas.control import AttachmentReleaseRequested
from shared.events.schemas.inbound_email import InboundEmailReceived
from shared.privacy.inbound_email import open_fields
from shared.tokens import issue_token
from tests.integration.email_gateway.conftest import (
    EmailHarness,
    email_settings,
    ended,
    imap_settings,
    queued,
    ticks_done,
)
from tests.support.imap import Dovecot
from tests.support.waiting import wait_until

PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n"


def reply(to_header: str, sender: str = "patient0@example.org") -> bytes:
    return (
        f"From: Pat Example <{sender}>\r\n"
        "To: front@smile.example\r\n"
        "Subject: Re: Recall 0\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@example.org>\r\n"
        f"In-Reply-To: {to_header}\r\n"
        f"References: {to_header}\r\n"
        "Date: Thu, 26 Nov 2026 10:00:00 +0000\r\n"
        "\r\n"
        "Thursday at 10 works for me.\r\n"
    ).encode()


def with_attachment(data: bytes, filename: str = "x-ray.pdf") -> bytes:
    import base64

    encoded = base64.encodebytes(data).decode().replace("\n", "\r\n")
    return (
        "From: Sam Other <sam@example.net>\r\n"
        "To: front@smile.example\r\n"
        "Subject: My referral letter\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@example.net>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b1"\r\n'
        "\r\n"
        "--b1\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
        "Please find the letter attached.\r\n"
        "--b1\r\n"
        f'Content-Type: application/octet-stream; name="{filename}"\r\n'
        f'Content-Disposition: attachment; filename="{filename}"\r\n'
        "Content-Transfer-Encoding: base64\r\n"
        "\r\n"
        f"{encoded}"
        "--b1--\r\n"
    ).encode()


def bounce(original_header: str, recipient: str) -> bytes:
    return (
        "From: Mail Delivery System <MAILER-DAEMON@mx.smile.example>\r\n"
        "To: front@smile.example\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@mx.smile.example>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="r1"\r\n'
        "\r\n"
        "--r1\r\n"
        "Content-Type: text/plain\r\n"
        "\r\n"
        "Your message could not be delivered.\r\n"
        "--r1\r\n"
        "Content-Type: message/delivery-status\r\n"
        "\r\n"
        "Reporting-MTA: dns; mx.smile.example\r\n"
        "\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\n"
        "Action: failed\r\n"
        "Status: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 <nobody@example.org>: user unknown\r\n"
        "--r1\r\n"
        "Content-Type: text/rfc822-headers\r\n"
        "\r\n"
        "From: Smile Dental <front@smile.example>\r\n"
        f"To: {recipient}\r\n"
        f"Message-ID: {original_header}\r\n"
        "Subject: Recall 1\r\n"
        "--r1--\r\n"
    ).encode()


async def inbound(email: EmailHarness, type_: str = "stagger.inbound.email_received") -> list:
    return [e for e in await email.events("INBOUND") if e.type == type_]


async def opened(gw, data: InboundEmailReceived) -> InboundEmailReceived:
    """An inbound event's data with its sealed fields opened (docs/privacy.md)."""
    assert gw.personal is not None
    found = await open_fields(gw.personal, data.group_id, data.model_dump(mode="json"))
    return InboundEmailReceived.model_validate(found)


async def test_three_messages_become_three_events_however_often_polled(
    email: EmailHarness, smtp_servers, dovecot: Dovecot, tmp_path: Path
) -> None:
    server = smtp_servers()
    user, _ = dovecot.add_user()
    site = await email.make_site(
        email_settings(server.port, imap=imap_settings(dovecot, user, sent_folder=None))
    )
    async with email.gateway(instance="gw-1") as gw:
        ids = await email.submit(site, 2)
        await wait_until(lambda: queued(gw, 2), timeout=20, message="queued")
        await email.tick(site, 10)
        await wait_until(lambda: ended(email, 2), timeout=20, message="sent")
        first, second = (f"<{i}@smile.example>" for i in ids)
        dovecot.append(user, "INBOX", reply(first))
        dovecot.append(user, "INBOX", with_attachment(PDF))
        dovecot.append(user, "INBOX", bounce(second, "patient1@example.org"))

        await email.tick(site, 10, receive=True)
        await wait_until(lambda: _count(email, 3), timeout=30, message="three inbound events")
        # Poll again and again, from two replicas, and after losing the UID cursor (as if a
        # replica crashed between recording a message and moving the cursor).
        async with email.gateway(instance="gw-2"):
            for _ in range(4):
                await email.tick(site, 10, receive=True)
            await wait_until(lambda: ticks_done(email), timeout=30, message="polls done")
            async with gw.engine.queue.db() as session, session.begin():
                await session.execute(sa.delete(tables.cursors))
            await email.tick(site, 10, receive=True)
            await wait_until(lambda: ticks_done(email), timeout=30, message="poll done")
        await wait_until(lambda: _undelivered(email, ids[1]), timeout=20, message="bounce applied")
        received = await inbound(email)
        assert len(received) == 3, [e.data.subject for e in received]
        assert dovecot.count(user, "INBOX") == 3, "Stagger never moves or deletes mail"
        # Sealed on arrival: the events carry no sender or subject in clear.
        assert all(e.data.subject.startswith("pd1:") for e in received)
        assert all(e.data.sender.startswith("pd1:") and e.data.sender_tag for e in received)
        by_kind = {d.subject: d for d in [await opened(gw, e.data) for e in received]}

        answer = by_kind["Re: Recall 0"]
        assert answer.kind == "message" and answer.sender == "patient0@example.org"
        assert answer.sender_name == "Pat Example"
        assert (answer.matched_message_id, answer.matched_by) == (ids[0], "in_reply_to")

        dsn = by_kind["Undelivered Mail Returned to Sender"]
        assert dsn.kind == "bounce"
        assert dsn.bounce.original_message_id == second
        assert (dsn.bounce.action, dsn.bounce.status) == ("failed", "5.1.1")
        assert dsn.matched_message_id == ids[1]
        assert dsn.attachments == [], "the report's parts are not attachments"
        undelivered = [
            e for e in await email.events("DISPATCH") if e.type == "stagger.dispatch.undelivered"
        ]
        assert [e.data.message_id for e in undelivered] == [ids[1]]
        assert "550 5.1.1" in undelivered[0].data.reason

        letter = by_kind["My referral letter"]
        assert letter.matched_message_id is None
        (attachment,) = letter.attachments
        digest = hashlib.sha256(PDF).hexdigest()
        assert attachment.declared_type == "application/octet-stream"
        assert attachment.sniffed_type == "pdf", "typed from its bytes, not its label"
        assert (attachment.sha256, attachment.stored, attachment.size) == (digest, True, len(PDF))
        stored = tmp_path / "var" / "quarantine" / digest
        assert stored.read_bytes() == PDF
        assert stat.S_IMODE(os.stat(stored).st_mode) == 0o600
        assert not os.access(stored, os.X_OK)

        # Quarantined: staff cannot fetch it until someone releases it.
        _, token = await issue_token(email.nc, group_id=email.group_id, role="group_admin")
        url = f"http://127.0.0.1:{gw._ctx.config.email_gateway_http_port}"
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=url, headers=headers) as client:
            refused = await client.get(f"/attachments/{attachment.attachment_id}")
            assert refused.status_code == 403
            assert await inbound(email, "stagger.inbound.attachment_released") == []

            request = AttachmentReleaseRequested(
                group_id=email.group_id,
                site_id=site,
                attachment_id=attachment.attachment_id,
                reason="checked by the practice manager",
            )
            subject = subjects.gateway_control("email", "release_attachment", site)
            for _ in range(2):  # a repeated release changes nothing
                await email.publish_event(subject, request, actor="token:manager", site_id=site)
            await wait_until(
                lambda: inbound(email, "stagger.inbound.attachment_released"),
                timeout=20,
                message="release recorded",
            )
            released = await client.get(f"/attachments/{attachment.attachment_id}")
            nobody = await client.get(
                f"/attachments/{attachment.attachment_id}",
                headers={"Authorization": "Bearer stg_nope.nope"},
            )
        assert released.status_code == 200 and released.content == PDF
        # Its name is kept sealed and opened for the download.
        assert 'filename="x-ray.pdf"' in released.headers["content-disposition"]
        assert released.headers["x-content-type-options"] == "nosniff"
        assert released.headers["content-type"] == "application/octet-stream"
        assert nobody.status_code == 401
        (event,) = await inbound(email, "stagger.inbound.attachment_released")
        assert event.actor == "token:manager" and event.data.automatic is False
        assert event.data.filename.startswith("pd1:")
        letter_event = next(e.id for e in received if e.data.attachments)
        assert (event.data.sha256, event.data.inbound_event_id) == (digest, letter_event)
    assert len(server.received) == 2


async def test_open_attachments_directly_releases_at_intake_with_an_event(
    email: EmailHarness, smtp_servers, dovecot: Dovecot, tmp_path: Path
) -> None:
    server = smtp_servers()
    user, _ = dovecot.add_user()
    site = await email.make_site(
        email_settings(server.port, open_directly=True, imap=imap_settings(dovecot, user))
    )
    big = b"PK\x03\x04" + os.urandom(4000)
    dovecot.append(user, "INBOX", with_attachment(PDF))
    dovecot.append(user, "INBOX", with_attachment(big, "scan.zip"))
    async with email.gateway(attachment_max_bytes=2048) as gw:
        await email.tick(site, 10, receive=True)
        await wait_until(lambda: _count(email, 2), timeout=30, message="two inbound events")
        await wait_until(
            lambda: inbound(email, "stagger.inbound.attachment_released"),
            timeout=20,
            message="released",
        )
        found = [await opened(gw, e.data) for e in await inbound(email)]
    received = {d.attachments[0].filename: d.attachments[0] for d in found}
    assert received["x-ray.pdf"].stored is True
    too_big = received["scan.zip"]
    assert (too_big.stored, too_big.sha256, too_big.sniffed_type) == (False, None, "zip")
    assert "2048" in too_big.reason
    (released,) = await inbound(email, "stagger.inbound.attachment_released")
    assert released.data.automatic is True
    assert released.data.attachment_id == received["x-ray.pdf"].attachment_id
    assert sorted(p.name for p in (tmp_path / "var" / "quarantine").iterdir()) == [
        hashlib.sha256(PDF).hexdigest()
    ]


async def test_refused_imap_login_shows_on_the_status(
    email: EmailHarness, smtp_servers, dovecot: Dovecot
) -> None:
    server = smtp_servers()
    user, _ = dovecot.add_user()
    settings = imap_settings(dovecot, user)
    settings["password"] = "not-the-password"
    site = await email.make_site(email_settings(server.port, imap=settings))
    dovecot.append(user, "INBOX", reply("<x@y>"))
    async with email.gateway():
        await email.tick(site, 10, receive=True)
        await wait_until(lambda: ticks_done(email), timeout=30, message="poll done")
        await wait_until(lambda: _imap_error(email, site), timeout=20, message="status")
        status = await email.rpc("account_status", {"site_id": site})
    assert status["imap"]["ok"] is False and status["imap"]["stage"] == "login"
    assert "IMAP login refused" in status["imap"]["last_error"]
    assert await inbound(email) == []


async def _count(email: EmailHarness, n: int) -> bool:
    return len(await inbound(email)) >= n


async def _undelivered(email: EmailHarness, message_id: str) -> bool:
    return any(
        e.type == "stagger.dispatch.undelivered" and e.data.message_id == message_id
        for e in await email.events("DISPATCH")
    )


async def _imap_error(email: EmailHarness, site: str) -> bool:
    status = await email.rpc("account_status", {"site_id": site})
    return bool(status.get("imap")) and status["imap"]["ok"] is False
