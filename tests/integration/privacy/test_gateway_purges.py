"""An erasure purges the gateways' clear copies: the SMS gateway's unrouted replies from the
number, the email gateway's inbound sender, subject and quarantined attachment files."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from services.email_gateway.adapters import tables as email_tables
from services.email_gateway.adapters.erasure import purge_sender as purge_mail
from services.email_gateway.adapters.quarantine import Quarantine
from services.sms_gateway.adapters import tables as sms_tables
from services.sms_gateway.adapters import unrouted
from services.sms_gateway.adapters.providers.base import Inbound
from shared.db.engine import create_engine, session_factory
from shared.domain.reply_attribution import Unrouted

ERASED = "+61412000099"


async def test_unrouted_replies_from_an_erased_number_go(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'sms.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(sms_tables.metadata.create_all)
    db = session_factory(engine)
    now = datetime.now(UTC)
    why = Unrouted("unknown_number", "test")
    for key, number in (("k1", ERASED), ("k2", "+61412000001"), ("k3", ERASED)):
        async with db() as session, session.begin():
            await unrouted.record(
                session, key, "simulator", Inbound(key, number, "+61491570999", "secret", now), why
            )
    assert await unrouted.purge_sender(db, lambda n: n == ERASED) == 2
    assert await unrouted.purge_sender(db, lambda n: n == ERASED) == 0
    assert [r["from_number"] for r in await unrouted.listing(db)] == ["+61412000001"]
    await engine.dispose()
    assert b"+61412000099" not in (tmp_path / "sms.db").read_bytes()


async def test_inbound_mail_from_an_erased_sender_is_blanked_and_its_files_deleted(
    tmp_path: Path,
) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'email.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(email_tables.metadata.create_all)
    db = session_factory(engine)
    quarantine = Quarantine(tmp_path / "quarantine")
    now = datetime.now(UTC)
    digests = {}
    async with db() as session, session.begin():
        for n, sender in enumerate(("erased@example.org", "kept@example.org")):
            event_id = f"e{n}"
            await session.execute(
                sa.insert(email_tables.inbound).values(
                    event_id=event_id,
                    group_id="g1",
                    site_id="s1",
                    account="a",
                    mailbox="INBOX",
                    uidvalidity=1,
                    uid=n,
                    kind="reply",
                    sender=sender,
                    subject=f"About {sender}",
                    received_at=now,
                    recorded_at=now,
                )
            )
            digests[sender] = quarantine.store(f"scan of {sender}".encode())
            await session.execute(
                sa.insert(email_tables.attachments).values(
                    attachment_id=f"a{n}",
                    inbound_event_id=event_id,
                    group_id="g1",
                    site_id="s1",
                    filename=f"{sender}.pdf",
                    declared_type="application/pdf",
                    sniffed_type="pdf",
                    size=10,
                    sha256=digests[sender],
                    stored=True,
                )
            )
    erased = "erased@example.org"
    assert await purge_mail(db, quarantine, "g1", lambda s: s == erased) == 1
    assert await purge_mail(db, quarantine, "g1", lambda s: s == erased) == 0
    assert not quarantine.has(digests[erased]) and quarantine.has(digests["kept@example.org"])
    async with db() as session:
        senders = (await session.execute(sa.select(email_tables.inbound.c.sender))).scalars()
        assert sorted(s or "-" for s in senders) == ["-", "kept@example.org"]
    await engine.dispose()
    assert b"erased@example.org" not in (tmp_path / "email.db").read_bytes()
