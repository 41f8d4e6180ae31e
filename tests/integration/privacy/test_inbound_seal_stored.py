"""Inbound mail the email gateway recorded in clear before sealing is sealed in place, once:
the row names the sender's salted hash, its subject and attachment names open under the
sender's keys; on SQLite the clear bytes are gone from the file (SQLite and PostgreSQL, NATS's
key bucket)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from nats.aio.client import Client

from services.email_gateway.adapters import tables
from services.email_gateway.adapters.inbound_sealing import seal_clear_inbound
from shared.db.engine import create_engine, session_factory
from shared.privacy.cipher import is_personal
from shared.privacy.codec import PersonalData
from shared.secrets import SecretBox, generate_key

SENDER = "old.sender@example.org"
SUBJECT = "About my old crown"
FILENAME = "old-xray.pdf"


async def test_clear_inbound_rows_are_sealed_once(nc: Client, database_url: str) -> None:
    engine = create_engine(database_url)
    async with engine.begin() as conn:
        await conn.run_sync(tables.metadata.create_all)
    db = session_factory(engine)
    now = datetime.now(UTC)
    async with db() as session, session.begin():
        for n, (sender, subject) in enumerate(((SENDER, SUBJECT), (None, "no sender"))):
            await session.execute(
                sa.insert(tables.inbound).values(
                    event_id=f"e{n}", group_id="g1", site_id="s1", account="a", mailbox="INBOX",
                    uidvalidity=1, uid=n, kind="message", sender=sender, subject=subject,
                    received_at=now, recorded_at=now,
                )
            )  # fmt: skip
        await session.execute(
            sa.insert(tables.attachments).values(
                attachment_id="a0", inbound_event_id="e0", group_id="g1", site_id="s1",
                filename=FILENAME, declared_type="application/pdf", sniffed_type="pdf", size=10,
                sha256=None, stored=False,
            )
        )  # fmt: skip
    personal = PersonalData(nc, SecretBox([generate_key().encode()]))
    assert await seal_clear_inbound(db, personal, chunk=1) == 1
    assert await seal_clear_inbound(db, personal) == 0, "nothing left in clear"
    async with db() as session:
        rows = {r.event_id: r for r in await session.execute(sa.select(tables.inbound))}
        (name,) = (await session.execute(sa.select(tables.attachments.c.filename))).scalars()
    sealed = rows["e0"]
    assert sealed.sender == personal.tag("g1", SENDER)
    assert is_personal(sealed.subject) and is_personal(name)
    assert await personal.open("g1", sealed.subject) == SUBJECT
    assert await personal.open("g1", name) == FILENAME
    assert (rows["e1"].sender, rows["e1"].subject) == (None, "no sender"), "nobody to key it to"
    await engine.dispose()
    if database_url.startswith("sqlite"):
        raw = Path(database_url.split("///", 1)[1]).read_bytes()
        assert all(n not in raw for n in (SENDER.encode(), SUBJECT.encode(), FILENAME.encode()))
