"""The replies read model: each patient SMS reply with whether staff handled or answered it.

Fed by INBOUND (`replies.<site>`): `stagger.reply.received` adds a row, `stagger.reply.handled`
and `stagger.reply.answered` mark it. A reply no keyword understood (`unmatched`) is unread until
someone handles or answers it; keyword replies (STOP, YES, …) were acted on automatically.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.config.adapters.read_model import metadata
from shared.bus.topology import INBOUND
from shared.events.envelope import Envelope
from shared.events.schemas.replies import ReplyAnswered, ReplyHandled, ReplyReceived

replies = sa.Table(
    "config_replies",
    metadata,
    sa.Column("reply_id", sa.String(64), primary_key=True),
    sa.Column("group_id", sa.String(63), nullable=False),
    sa.Column("site_id", sa.String(63), nullable=False),
    sa.Column("from_number", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("keyword", sa.String(64), nullable=True),
    sa.Column("meaning", sa.String(64), nullable=True),
    sa.Column("in_reply_to", sa.String(64), nullable=True),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("handled_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("handled_by", sa.String(200), nullable=True),
    sa.Column("answered", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_answer", sa.Text, nullable=True),
    sa.Column("last_answer_message_id", sa.String(64), nullable=True),
    sa.Index("ix_config_replies_site", "site_id", "received_at"),
    sa.Index("ix_config_replies_unread", "group_id", "kind", "handled_at"),
)

UNREAD_KIND = "unmatched"


class ReplyProjection:
    """Keeps `config_replies` in step with the replies on INBOUND."""

    name = "config.replies"
    stream = INBOUND
    filter_subject: str | None = "replies.>"

    async def apply(self, session: AsyncSession, events: Sequence[Envelope]) -> None:
        """A received reply becomes a row (once); handled/answered mark it."""
        for event in events:
            data = event.data
            if isinstance(data, ReplyReceived):
                found = await session.execute(
                    sa.select(replies.c.reply_id).where(replies.c.reply_id == event.id)
                )
                if found.first() is not None:
                    continue  # a replay
                await session.execute(
                    sa.insert(replies).values(
                        reply_id=event.id,
                        group_id=data.group_id,
                        site_id=data.site_id,
                        from_number=data.from_number,
                        body=data.body,
                        kind=data.kind,
                        keyword=(data.keyword or "")[:64] or None,
                        meaning=(data.meaning or "")[:64] or None,
                        in_reply_to=data.in_reply_to,
                        received_at=data.received_at,
                        answered=0,
                    )
                )
            elif isinstance(data, ReplyHandled | ReplyAnswered):
                row = replies.c
                values: dict[str, Any] = {
                    "handled_at": sa.func.coalesce(row.handled_at, event.time),
                    "handled_by": sa.func.coalesce(row.handled_by, event.actor),
                }
                if isinstance(data, ReplyAnswered):
                    values |= {
                        "answered": row.answered + 1,
                        "last_answer": data.body,
                        "last_answer_message_id": data.message_id,
                    }
                await session.execute(
                    sa.update(replies)
                    .where(row.reply_id == data.reply_id, row.site_id == data.site_id)
                    .values(**values)
                )


async def unread_counts(session: AsyncSession, site_ids: Sequence[str]) -> dict[str, int]:
    """Unread (unmatched, not handled) replies per site, for the given sites."""
    if not site_ids:
        return {}
    rows = await session.execute(
        sa.select(replies.c.site_id, sa.func.count())
        .where(
            replies.c.site_id.in_(list(site_ids)),
            replies.c.kind == UNREAD_KIND,
            replies.c.handled_at.is_(None),
        )
        .group_by(replies.c.site_id)
    )
    return {str(site): int(n) for site, n in rows}


async def list_replies(
    session: AsyncSession,
    site_ids: Sequence[str],
    *,
    status: str | None = None,
    limit: int = 200,
) -> list[dict[str, Any]]:
    """Replies of the given sites, newest first, as stored (texts sealed: a keyword search
    opens them first, `handlers.replies.search`); `status` is `unread`, `handled` or
    `automatic` (a keyword acted)."""
    if not site_ids:
        return []
    query = sa.select(replies).where(replies.c.site_id.in_(list(site_ids)))
    if status == "unread":
        query = query.where(replies.c.kind == UNREAD_KIND, replies.c.handled_at.is_(None))
    elif status == "handled":
        query = query.where(replies.c.handled_at.is_not(None))
    elif status == "automatic":
        query = query.where(replies.c.kind != UNREAD_KIND)
    rows = await session.execute(
        query.order_by(replies.c.received_at.desc(), replies.c.reply_id).limit(limit)
    )
    return [as_json(dict(r._mapping)) for r in rows]


async def get_reply(session: AsyncSession, site_id: str, reply_id: str) -> dict[str, Any] | None:
    """One reply of a site, or None."""
    row = (
        await session.execute(
            sa.select(replies).where(replies.c.reply_id == reply_id, replies.c.site_id == site_id)
        )
    ).first()
    return as_json(dict(row._mapping)) if row is not None else None


def as_json(row: dict[str, Any]) -> dict[str, Any]:
    """A row in the API's shape (times as ISO 8601, `unread` spelled out)."""
    out = dict(row)
    for key in ("received_at", "handled_at"):
        value = out.get(key)
        if isinstance(value, datetime):
            out[key] = value.isoformat()
    out["unread"] = row["kind"] == UNREAD_KIND and row["handled_at"] is None
    out.pop("group_id", None)
    return out
