"""Each message's current state (the console's outbox): a projection of the AUDIT stream
beside the trail, with its own position, so the trail never waits for it."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from nats.aio.msg import Msg
from sqlalchemy.ext.asyncio import AsyncSession

from services.audit.adapters.trail import STATE_OF, fitted, messages, record_from
from shared.bus.topology import AUDIT
from shared.db.sql import upsert

log = logging.getLogger(__name__)


class MessageStatusProjection:
    """Each message's current state, folded from its dispatch events (the console's outbox)."""

    name = "audit.message_status"
    stream = AUDIT
    filter_subject: str | None = "dispatch.>"
    wants_raw_messages = True

    async def apply(self, session: AsyncSession, events: Sequence[Msg]) -> None:
        """Fold a batch of dispatch events into `audit_messages`."""
        rows = [r for r in (record_from(m) for m in events) if r is not None]
        await self._fold(session, rows)

    async def _fold(self, session: AsyncSession, rows: list[dict[str, Any]]) -> None:
        folded: dict[tuple[str, str], dict[str, Any]] = {}
        for row in rows:
            kind = row["type"]
            message_id = row["message_id"]
            site_id = row["site_id"]
            # Every dispatch event names its site (the gateways write it); one that does not
            # belongs to no site's outbox.
            if message_id is None or site_id is None or not kind.startswith("stagger.dispatch."):
                continue
            try:
                data = json.loads(row["data"])
            except (ValueError, RecursionError):
                data = None
            if not isinstance(data, dict):
                # Recorded in the trail as written; there is no state to fold from it.
                log.warning(
                    "dispatch event without a JSON object skipped",
                    extra={"position": row["position"], "type": kind},
                )
                continue
            change: dict[str, Any] = {"updated_at": row["time"], "last_position": row["position"]}
            state = STATE_OF.get(kind)
            if state is not None:
                change["state"] = state
            if kind == "stagger.dispatch.queued":
                change.update(
                    group_id=row["group_id"],
                    site_id=row["site_id"],
                    channel=data.get("channel"),
                    recipient=data.get("to"),
                    category=data.get("category"),
                    retry_of=data.get("retry_of"),
                    queued_at=row["time"],
                    attempts=0,
                )
            elif kind == "stagger.dispatch.deferred":
                change.update(
                    reason=data.get("reason"),
                    retry_at=data.get("retry_at"),
                    attempts=data.get("attempt"),
                )
            elif kind == "stagger.dispatch.sent":
                change.update(
                    sent_at=data.get("sent_at"), attempts=data.get("attempts"), reason=None
                )
            elif kind in ("stagger.dispatch.delivered", "stagger.dispatch.undelivered"):
                change["receipt"] = kind.rsplit(".", 1)[1]
                if kind.endswith("undelivered"):
                    change["reason"] = data.get("reason")
            elif kind == "stagger.dispatch.failed":
                change.update(reason=data.get("reason"), attempts=data.get("attempts"))
            else:
                change["reason"] = data.get("reason")
            change.setdefault("group_id", row["group_id"])
            folded.setdefault(
                (site_id, message_id), {"message_id": message_id, "site_id": site_id}
            ).update(change)
        if not folded:
            return
        columns = [c.name for c in messages.columns]
        values = [fitted(messages, {c: v.get(c) for c in columns}) for v in folded.values()]
        await upsert(
            session,
            messages,
            ["message_id", "site_id"],
            values,
            update=[c for c in columns if c not in ("message_id", "site_id")],
            keep_existing=True,
        )
