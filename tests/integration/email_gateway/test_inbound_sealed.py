"""Inbound email is sealed when it arrives (docs/privacy.md), against a real IMAP server, NATS
and the gateway's database (SQLite and PostgreSQL): the sender, subject and attachment names are
in neither the event, the gateway's table nor NATS's files in clear; they open for the inbox,
the download and the subject-access export, and read "erased" once the sender is erased. A soft
bounce about a ledger row still in clear names the salted hash, never the address."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

import httpx
import sqlalchemy as sa

from services.email_gateway.adapters import tables
from services.email_gateway.adapters.bounce_suppression import soft_bounces
from services.email_gateway.composition import EmailGatewayService
from shared.bus import subjects
from shared.events.schemas.control import AttachmentReleaseRequested
from shared.privacy.cipher import ERASED
from shared.privacy.codec import PersonalData
from shared.privacy.erasure import erase_recipient
from shared.privacy.export import export_recipient
from shared.privacy.inbound_email import open_fields
from shared.runtime.nats_server import NatsServer
from shared.tokens import issue_token
from tests.integration.email_gateway.conftest import (
    EmailHarness,
    email_settings,
    ended,
    imap_settings,
    queued,
)
from tests.integration.email_gateway.test_bounces import dsn
from tests.support.imap import Dovecot
from tests.support.waiting import wait_until

PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n"


def letter(sender: str, subject: str, filename: str, message_id: str) -> bytes:
    encoded = base64.encodebytes(PDF).decode().replace("\n", "\r\n")
    return (
        f"From: Pat Sealed <{sender}>\r\n"
        "To: front@smile.example\r\n"
        f"Subject: {subject}\r\n"
        f"Message-ID: <{message_id}>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b1"\r\n'
        "\r\n"
        "--b1\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
        "My letter is attached.\r\n"
        "--b1\r\n"
        f'Content-Type: application/pdf; name="{filename}"\r\n'
        f'Content-Disposition: attachment; filename="{filename}"\r\n'
        "Content-Transfer-Encoding: base64\r\n"
        "\r\n"
        f"{encoded}"
        "--b1--\r\n"
    ).encode()


def nats_files_holding(
    store: Path, needles: list[bytes], streams: tuple[str, ...] = ()
) -> list[str]:
    """Files of NATS's data directory (of `streams` only, if named) holding any needle."""
    found = []
    roots = [d for d in store.rglob("streams/*") if d.name in streams] if streams else [store]
    for path in (p for root in roots for p in root.rglob("*")):
        if path.is_file():
            raw = path.read_bytes()
            found += [f"{path.name}: {n!r}" for n in needles if n in raw]
    return found


async def on_disk(store: Path, marker: bytes, streams: tuple[str, ...] = ()) -> bool:
    """NATS wrote the marker (a value stored in clear on purpose) to its files: the search for
    personal values looks where the events are."""
    return bool(nats_files_holding(store, [marker], streams))


async def received(email: EmailHarness) -> list:
    return [e for e in await email.events("INBOUND") if e.type.endswith("email_received")]


async def released(email: EmailHarness) -> list:
    return [e for e in await email.events("INBOUND") if e.type.endswith("attachment_released")]


async def test_inbound_mail_is_sealed_opened_for_staff_and_erased_with_the_sender(
    email: EmailHarness,
    smtp_servers,
    dovecot: Dovecot,
    database_url: str,
    nats_server: NatsServer,
) -> None:
    token = uuid.uuid4().hex[:10]
    sender = f"pat.{token}@example.org"
    subject = f"Crown fitting {token}"
    filename = f"xray-{token}.pdf"
    message_id = f"{token}-msgid@example.org"
    server = smtp_servers()
    user, _ = dovecot.add_user()
    site = await email.make_site(
        email_settings(server.port, imap=imap_settings(dovecot, user, sent_folder=None))
    )
    dovecot.append(user, "INBOX", letter(sender, subject, filename, message_id))
    personal = await PersonalData(email.nc, email.box).ready()
    g = email.group_id
    async with email.gateway(database_url) as gw:
        await email.tick(site, 10, receive=True)
        await wait_until(lambda: received(email), timeout=30, message="recorded")
        (event,) = await received(email)
        data = event.data
        # In the event: sealed under the sender's keys, with their salted hash.
        assert data.sender.startswith("pd1:") and data.subject.startswith("pd1:")
        assert data.sender_name.startswith("pd1:")
        assert data.attachments[0].filename.startswith("pd1:")
        assert data.sender_tag == personal.tag(g, sender)
        assert data.internet_message_id == f"<{message_id}>", "not personal: kept for threading"
        # In the gateway's table: the hash and the sealed values.
        async with gw.engine.queue.db() as session:
            row = (await session.execute(sa.select(tables.inbound))).one()
            names = (await session.execute(sa.select(tables.attachments.c.filename))).scalars()
            assert row.sender == data.sender_tag and row.subject == data.subject
            assert [n[:4] for n in names] == ["pd1:"]
        # Opened for staff (the console's inbox and the export use the same opening).
        shown = await open_fields(personal, g, data.model_dump(mode="json"))
        assert (shown["sender"], shown["sender_name"], shown["subject"]) == (
            sender,
            "Pat Sealed",
            subject,
        )
        assert shown["attachments"][0]["filename"] == filename
        # An event recorded before sealing reads as it was (tolerant opening, no upcaster).
        legacy = {"sender": sender, "subject": "Old", "attachments": [{"filename": "a.pdf"}]}
        assert await open_fields(personal, g, legacy) == legacy
        (mail,) = (await export_recipient(email.nc, personal, g, sender.upper()))["inbound_emails"]
        assert (mail["from"], mail["subject"], mail["attachments"]) == (sender, subject, [filename])

        # Released (Release in the console): the event names the file sealed, the download
        # opens it.
        attachment = data.attachments[0].attachment_id
        await email.publish_event(
            subjects.gateway_control("email", "release_attachment", site),
            AttachmentReleaseRequested(
                group_id=g, site_id=site, attachment_id=attachment, reason="checked"
            ),
            site_id=site,
        )
        await wait_until(lambda: released(email), timeout=20, message="released")
        (release,) = await released(email)
        assert release.data.filename == data.attachments[0].filename
        _, bearer = await issue_token(email.nc, group_id=g, role="group_admin")
        url = f"http://127.0.0.1:{gw._ctx.config.email_gateway_http_port}"
        async with httpx.AsyncClient(base_url=url, trust_env=False) as client:
            download = await client.get(
                f"/attachments/{attachment}", headers={"Authorization": f"Bearer {bearer}"}
            )
        assert download.status_code == 200 and download.content == PDF
        assert f'filename="{filename}"' in download.headers["content-disposition"]

        # Nothing personal in NATS's files, though the event is there.
        store = nats_server.store_dir
        await wait_until(
            lambda: on_disk(store, message_id.encode()), timeout=30, message="events on disk"
        )
        needles = [sender.encode(), subject.encode(), filename.encode(), b"Pat Sealed"]
        assert nats_files_holding(store, needles) == []

        # Erased: the fields read "erased" everywhere they are opened; the gateway's row
        # loses its hash and sealed subject, its file goes.
        done = await erase_recipient(email.nc, personal, g, sender, "test:admin")
        assert done.keys_erased >= 2
        after = await open_fields(
            PersonalData(email.nc, email.box), g, data.model_dump(mode="json")
        )
        assert (after["sender"], after["subject"]) == (ERASED, ERASED)
        assert after["attachments"][0]["filename"] == ERASED
        (gone,) = (await export_recipient(email.nc, personal, g, sender))["inbound_emails"]
        assert (gone["from"], gone["subject"], gone["attachments"]) == (ERASED, ERASED, [ERASED])

        async def purged() -> bool:
            async with gw.engine.queue.db() as session:
                row = (await session.execute(sa.select(tables.inbound))).one()
            return row.sender is None and row.subject is None

        await wait_until(purged, timeout=30, message="the gateway purged its row")
    if database_url.startswith("sqlite"):
        raw = Path(database_url.split("///", 1)[1]).read_bytes()
        assert all(n not in raw for n in needles)


async def test_a_soft_bounce_about_a_clear_ledger_row_names_the_hash(
    email: EmailHarness, smtp_servers, dovecot: Dovecot, nats_server: NatsServer
) -> None:
    patient = f"bounced.{uuid.uuid4().hex[:10]}@example.org"
    server = smtp_servers()
    user, _ = dovecot.add_user()
    site = await email.make_site(
        email_settings(server.port, imap=imap_settings(dovecot, user, sent_folder=None))
    )
    gw: EmailGatewayService
    async with email.gateway(soft_bounce_threshold=1) as gw:
        (sent,) = await email.submit(site, 1, to=lambda i: patient)
        await wait_until(lambda: queued(gw, 1), timeout=20, message="queued")
        await email.tick(site, 10)
        await wait_until(lambda: ended(email, 1), timeout=20, message="sent")
        # A row written before sealing (its background sealing has not reached it yet).
        m = tables.DISPATCH.messages
        async with gw.engine.queue.db() as session, session.begin():
            await session.execute(sa.update(m).values(recipient=patient))
        dovecot.append(user, "INBOX", dsn(f"<{sent}@smile.example>", patient, "delayed", "4.2.2"))
        await email.tick(site, 10, receive=True)

        async def optouts() -> list:
            return [e for e in await email.events("OPTOUTS") if e.type.startswith("stagger.optout")]

        await wait_until(
            lambda: _two(optouts), timeout=30, message="soft bounce counted, then the opt-out"
        )
        assert gw.personal is not None
        tag = gw.personal.tag(email.group_id, patient)
        by_type = {e.type: e.data for e in await optouts()}
        counted = by_type["stagger.optout.soft_bounce_counted"]
        opted = by_type["stagger.optout.opted_out"]
        assert counted.recipient == tag
        assert opted.recipient_tag == tag and opted.recipient.startswith("pd1:")
        assert await gw.personal.open(email.group_id, opted.recipient) == patient
        async with gw.engine.queue.db() as session:
            counts = (await session.execute(sa.select(soft_bounces.c.recipient))).scalars()
            assert list(counts) == [tag]
        undelivered = [e for e in await email.events("DISPATCH") if e.type.endswith("undelivered")]
        assert all(patient not in e.data.reason for e in undelivered)
        # The outbox holds what the producer published (in clear, as a producer outside
        # Stagger may); what the bounce wrote is searched: the opt-outs and the receipts.
        written = ("OPTOUTS", "DISPATCH", "INBOUND")
        store = nats_server.store_dir
        await wait_until(
            lambda: on_disk(store, tag.encode(), written), timeout=30, message="on disk"
        )
        assert nats_files_holding(store, [patient.encode()], written) == []


async def _two(found) -> bool:
    return len(await found()) >= 2
