"""The raw baseline of `sms.webhooks`: a bare ASGI callable under uvicorn writing the rows the
SMS gateway writes for a simulator receipt or reply, to the gateway's own database.

`python -m bench.raw_webhooks DATABASE_URL PORT SECRET`. No framework, no routing, no site
directory, no dead letters: it checks the signature, parses the JSON and runs, per receipt,
the gateway's statements (settle the sent message, queue its `MessageDelivered` event in
`sms_pending_events`, one transaction) and, per reply, its reads (seen before? the last message
sent to that number) and writes (`sms_webhook_events` row and the `ReplyReceived` event, one
transaction). The events are encoded with the project's encoder, so the rows are the same
bytes the gateway's relay would publish.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
import uvicorn

from services.sms_gateway.adapters.tables import DISPATCH, webhook_events
from shared.bus import subjects
from shared.db.engine import create_engine
from shared.dispatch.pending_events import event_id
from shared.events.codec import encode
from shared.events.envelope import make_event
from shared.events.schemas.dispatch import MessageDelivered
from shared.events.schemas.replies import ReplyReceived
from shared.sms_signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature

m = DISPATCH.messages
pending = DISPATCH.pending_events


def app_for(url: str, secret: str) -> Any:
    """The ASGI callable."""
    engine = create_engine(url)

    def event_row(subject: str, data: Any, eid: str, about: str) -> dict[str, Any]:
        envelope = make_event(
            data,
            source="bench-raw",
            actor="service:sms_gateway",
            subject=about,
            group_id=data.group_id,
            site_id=data.site_id,
            event_id=eid,
        )
        headers, body = encode(envelope)
        return {
            "event_id": eid,
            "subject": subject,
            "headers": headers,
            "body": body,
            "created_at": datetime.now(UTC),
        }

    async def receipt(data: dict[str, Any]) -> int:
        async with engine.begin() as conn:
            row = (
                await conn.execute(
                    sa.update(m)
                    .where(
                        m.c.message_id == data["reference"],
                        m.c.state == "sent",
                        m.c.receipt.is_(None),
                    )
                    .values(receipt="delivered")
                    .returning(m.c.message_id, m.c.group_id, m.c.site_id, m.c.provider_message_id)
                )
            ).first()
            if row is None:
                return 200
            event = MessageDelivered(
                message_id=row.message_id,
                group_id=row.group_id,
                site_id=row.site_id,
                channel="sms",
                provider_message_id=row.provider_message_id,
                occurred_at=datetime.fromisoformat(data["occurred_at"]),
                raw_status=data["status"],
            )
            eid = event_id(f"{row.site_id}\x1f{row.message_id}", "receipt")
            subject = subjects.dispatch("sms", row.site_id)
            await conn.execute(sa.insert(pending), [event_row(subject, event, eid, row.message_id)])
        return 200

    async def reply(data: dict[str, Any]) -> int:
        key = f"simulator:inbound:{data['id']}"
        async with engine.connect() as conn:
            seen = await conn.execute(
                sa.select(webhook_events.c.event_key).where(webhook_events.c.event_key == key)
            )
            if seen.first() is not None:
                return 200
            last = (
                await conn.execute(
                    sa.select(m.c.message_id, m.c.group_id, m.c.site_id)
                    .where(m.c.recipient == data["from"], m.c.state == "sent")
                    .order_by(m.c.sent_at.desc())
                    .limit(1)
                )
            ).first()
        if last is None:
            return 200
        event = ReplyReceived(
            group_id=last.group_id,
            site_id=last.site_id,
            provider="simulator",
            provider_inbound_id=data["id"],
            from_number=data["from"],
            to=data["to"],
            body=data["body"],
            received_at=datetime.fromisoformat(data["received_at"]),
            in_reply_to=last.message_id,
            kind="unmatched",
            keyword=None,
            meaning=None,
            cancelled_messages=0,
        )
        async with engine.begin() as conn:
            await conn.execute(
                sa.insert(webhook_events),
                [{"event_key": key, "kind": "inbound", "received_at": datetime.now(UTC)}],
            )
            await conn.execute(
                sa.insert(pending),
                [
                    event_row(
                        subjects.replies(last.site_id),
                        event,
                        event_id(key, "reply"),
                        last.message_id,
                    )
                ],
            )
        return 200

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        status = 401
        if verify_signature(
            secret,
            headers.get(TIMESTAMP_HEADER.lower()),
            body,
            headers.get(SIGNATURE_HEADER.lower()),
        ):
            data = json.loads(body)
            status = await (receipt(data) if data["type"] == "receipt" else reply(data))
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": b"{}"})

    return app


if __name__ == "__main__":
    url, port, secret = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    uvicorn.run(app_for(url, secret), host="127.0.0.1", port=port, log_level="warning")
