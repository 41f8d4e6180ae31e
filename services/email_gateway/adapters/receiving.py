"""The receive half of send/receive: read a site's mailbox and record each new message once.

On each cycle tick (and send-now) the gateway EXAMINEs the site's mailbox and reads messages
with UIDs above the cursor kept for (site, mailbox, UIDVALIDITY). Each message becomes one
`stagger.inbound.email_received` event whose id derives from (account, mailbox, UIDVALIDITY,
UID); `inbound_record` stores it (row, attachments, event and cursor in one transaction), so
repeated polls, crashes and replicas record it once.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from datetime import date, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.email_gateway.adapters import tables
from services.email_gateway.adapters.imap import (
    ImapEndpoint,
    ImapSession,
    ImapTooLarge,
)
from services.email_gateway.adapters.inbound import parse
from services.email_gateway.adapters.inbound_record import InboundRecorder, advance_cursor
from services.email_gateway.adapters.mailbox import imap_endpoint
from services.email_gateway.adapters.quarantine import Quarantine
from services.email_gateway.config import EmailGatewayConfig
from shared.dispatch.pending_events import event_id
from shared.dispatch.queue import MessageQueue
from shared.email_auth.provider import TokenProvider
from shared.net.outbound import OutboundGuard
from shared.secrets import SecretBox
from shared.sites import Site

log = logging.getLogger(__name__)


def inbound_event_id(account: str, mailbox: str, uidvalidity: int, uid: int) -> str:
    """The id of the event recording one mailbox message."""
    return event_id(f"{account}\x1f{mailbox}\x1f{uidvalidity}", f"uid:{uid}")


class Receiver:
    """Polls mailboxes and records what arrived."""

    def __init__(
        self,
        *,
        db: async_sessionmaker[AsyncSession],
        queue: MessageQueue,
        quarantine: Quarantine,
        settings: EmailGatewayConfig,
        box: SecretBox,
        tls: ssl.SSLContext,
        nudge: Any,
        guard: OutboundGuard,
        tokens: TokenProvider | None = None,
    ) -> None:
        self.tokens = tokens  # issue 19: OAuth sign-in
        self.guard = guard
        self.db = db
        self.queue = queue
        self.quarantine = quarantine
        self.settings = settings
        self.box = box
        self.tls = tls
        self._nudge = nudge
        self._locks: dict[str, asyncio.Lock] = {}
        self.recorder = InboundRecorder(
            db=db, queue=queue, quarantine=quarantine, settings=settings
        )

    async def poll(self, site: Site) -> int:
        """Record the site's new mail; returns how many messages were recorded.

        Raises `ImapFailure` when the mailbox cannot be read (the caller records the status).
        """
        endpoint = imap_endpoint(site, self.box, self.tokens)
        if endpoint is None:
            return 0
        mailbox = site.settings.email.imap.mailbox
        lock = self._locks.setdefault(f"{site.site_id}\x1f{mailbox}", asyncio.Lock())
        async with lock:
            session = await self._session(endpoint)
            try:
                return await self._poll(site, session, endpoint, mailbox)
            finally:
                await asyncio.to_thread(session.close)

    async def _session(self, endpoint: ImapEndpoint) -> ImapSession:
        session = ImapSession(
            endpoint,
            self.settings.imap_timeout_seconds,
            self.tls,
            guard=self.guard,
            max_bytes=self.settings.inbound_max_bytes,
        )
        return await session.connect()

    async def _fetch(
        self, session: ImapSession, mailbox: str, uid: int, truncated: bool
    ) -> tuple[bytes, bool]:
        """The message (or, when it is over the cap, its header): (bytes, truncated).

        A server may announce a small size and then send more: the read stops at the cap
        (`ImapTooLarge`, the connection dropped), and the header alone is fetched on a new
        connection; if even that is over the cap, the message is recorded with nothing read.
        """
        try:
            return await asyncio.to_thread(session.fetch, uid, truncated), truncated
        except ImapTooLarge as exc:
            log.warning(
                "mailbox message larger than the server said; cut at the cap",
                extra={"uid": uid, "error": str(exc)},
            )
        fresh = await self._session(session.endpoint)
        try:
            await asyncio.to_thread(fresh.examine, mailbox)
            session.conn, fresh.conn = fresh.conn, None  # the poll goes on with the new one
            session.selected = mailbox
            return await asyncio.to_thread(session.fetch, uid, True), True
        except ImapTooLarge:
            return b"", True
        finally:
            await asyncio.to_thread(fresh.close)

    async def _poll(
        self, site: Site, session: ImapSession, endpoint: ImapEndpoint, mailbox: str
    ) -> int:
        uidvalidity, uidnext = await asyncio.to_thread(session.examine, mailbox)
        last = await self._cursor(site.site_id, mailbox, uidvalidity)
        if last is None:
            days = self.settings.inbound_backfill_days
            if days == 0:
                await self._advance(site.site_id, mailbox, uidvalidity, max(0, uidnext - 1))
                return 0
            since = date.today() - timedelta(days=days)
            uids = await asyncio.to_thread(session.uids_since, since)
        else:
            uids = await asyncio.to_thread(session.uids_after, last)
        uids = uids[: self.settings.inbound_batch]
        if not uids:
            if last is None:
                await self._advance(site.site_id, mailbox, uidvalidity, 0)
            return 0
        metas = await asyncio.to_thread(session.meta, uids)
        recorded = 0
        for uid in uids:
            meta = metas.get(uid)
            if meta is None:
                continue  # expunged meanwhile
            eid = inbound_event_id(endpoint.account, mailbox, uidvalidity, uid)
            if not await self.recorder.known(eid):
                raw, truncated = await self._fetch(
                    session, mailbox, uid, meta.size > self.settings.inbound_max_bytes
                )
                parsed = parse(raw, headers_only=truncated)
                if await self.recorder.record(
                    site,
                    endpoint.account,
                    mailbox,
                    uidvalidity,
                    uid,
                    eid,
                    meta.size,
                    meta.internal_date,
                    parsed,
                    truncated,
                ):
                    recorded += 1
            await self._advance(site.site_id, mailbox, uidvalidity, uid)
        if recorded:
            self._nudge()
        return recorded

    # --- for the Graph receiver (issue 19): the same recording path as IMAP's -------------

    def nudge(self) -> None:
        """Tell the engine new receipts may settle messages."""
        self._nudge()

    async def known(self, eid: str) -> bool:
        """True if this inbound event id was recorded already."""
        return await self.recorder.known(eid)

    async def record(self, *args: Any) -> bool:
        """Record one parsed message (see `InboundRecorder.record`); True if it was new."""
        return await self.recorder.record(*args)

    async def _cursor(self, site_id: str, mailbox: str, uidvalidity: int) -> int | None:
        t = tables.cursors
        async with self.db() as session:
            return (
                await session.execute(
                    sa.select(t.c.last_uid).where(
                        t.c.site_id == site_id,
                        t.c.mailbox == mailbox,
                        t.c.uidvalidity == uidvalidity,
                    )
                )
            ).scalar()

    async def _advance(self, site_id: str, mailbox: str, uidvalidity: int, uid: int) -> None:
        async with self.db() as session, session.begin():
            await advance_cursor(session, site_id, mailbox, uidvalidity, uid)
