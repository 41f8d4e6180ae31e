"""Receiving through Microsoft Graph (issue 19): the inbox polled with a delta query, each new
message's MIME fetched (`/messages/{id}/$value`) and recorded exactly as an IMAP message is
(reply matching, bounces, quarantined attachments), so both paths produce the same events.

The delta link is kept per site in `email_graph_delta` and moved only after every page of a
round was recorded; recording is idempotent (the event id is derived from the Graph message
id), so a crash between the two repeats work, never loses or duplicates a message.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.email_gateway.adapters.graph.client import GraphMail, GraphUnavailable
from services.email_gateway.adapters.inbound import parse
from services.email_gateway.adapters.receiving import Receiver
from services.email_gateway.adapters.tables import metadata
from shared.dispatch.pending_events import event_id
from shared.email_auth.login import OAuthLogin
from shared.sites import Site

MAILBOX = "inbox"
SELECT = "$select=id,receivedDateTime,internetMessageId"


graph_delta = sa.Table(
    "email_graph_delta",
    metadata,
    sa.Column("site_id", sa.String(63), primary_key=True),
    sa.Column("account", sa.String(64), primary_key=True),
    sa.Column("delta_link", sa.Text, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)


def graph_event_id(account: str, message: str) -> str:
    """The inbound event id of one Graph message (its id is stable while it stays in the
    folder)."""
    return event_id(f"{account}\x1fgraph:{MAILBOX}", f"id:{message}")


def _uid(message: str) -> int:
    # email_inbound keys an IMAP message by UID; a Graph message gets a stable 60-bit one.
    return int(hashlib.sha256(message.encode()).hexdigest()[:15], 16)


class GraphReceiver:
    """Polls sites' inboxes through Graph."""

    def __init__(
        self, receiver: Receiver, graph: GraphMail, db: async_sessionmaker[AsyncSession]
    ) -> None:
        self.receiver = receiver
        self.graph = graph
        self.db = db

    async def poll(self, site: Site, account: str, login: OAuthLogin) -> int:
        """Record new inbox messages; returns how many (raises GraphUnavailable)."""
        settings = self.receiver.settings
        base = self.graph.mailbox_url(site.settings.email.sign_in.graph_url, login.credentials.user)
        link = await self._link(site.site_id, account)
        first = link is None
        url = link or f"{base}/mailFolders/{MAILBOX}/messages/delta?{SELECT}"
        since = datetime.now(UTC) - timedelta(days=settings.inbound_backfill_days)
        recorded = 0
        while True:
            page = (await self.graph.get(login, url)).json()
            for item in page.get("value") or []:
                if "@removed" in item or not item.get("id"):
                    continue
                received = _when(item.get("receivedDateTime"))
                if first and received < since:
                    continue  # older mail is left alone, as on IMAP
                if await self._record(site, account, login, base, item["id"], received):
                    recorded += 1
            if page.get("@odata.nextLink"):
                url = page["@odata.nextLink"]
                continue
            delta = page.get("@odata.deltaLink")
            if not delta:
                raise GraphUnavailable("Microsoft Graph's delta answer had no next or delta link")
            await self._save(site.site_id, account, delta)
            break
        if recorded:
            self.receiver.nudge()
        return recorded

    async def _record(
        self,
        site: Site,
        account: str,
        login: OAuthLogin,
        base: str,
        message: str,
        received: datetime,
    ) -> bool:
        eid = graph_event_id(account, message)
        if await self.receiver.known(eid):
            return False
        cap = self.receiver.settings.inbound_max_bytes
        raw = await self.graph.get(login, f"{base}/messages/{message}/$value", max_bytes=cap)
        data = raw.content
        truncated = len(data) > cap
        if truncated:  # over the cap: recorded from its header, as on IMAP
            data = data.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
        parsed = parse(data, headers_only=truncated)
        return await self.receiver.record(
            site, account, MAILBOX, 0, _uid(message), eid, len(data), received, parsed, truncated
        )

    async def _link(self, site_id: str, account: str) -> str | None:
        t = graph_delta
        async with self.db() as session:
            return (
                await session.execute(
                    sa.select(t.c.delta_link).where(t.c.site_id == site_id, t.c.account == account)
                )
            ).scalar()

    async def _save(self, site_id: str, account: str, link: str) -> None:
        t = graph_delta
        now = datetime.now(UTC)
        async with self.db() as session, session.begin():
            updated = await session.execute(
                sa.update(t)
                .where(t.c.site_id == site_id, t.c.account == account)
                .values(delta_link=link, updated_at=now)
            )
            if not updated.rowcount:  # type: ignore[attr-defined]
                await session.execute(
                    sa.insert(t).values(
                        site_id=site_id, account=account, delta_link=link, updated_at=now
                    )
                )


def _when(value: object) -> datetime:
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return datetime.now(UTC)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
