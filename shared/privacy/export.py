"""Subject access: everything the streams hold about one recipient of one group, opened.

Messages are found by their `stagger.dispatch.queued` event (its `to` names the recipient's
tag), and every later event of the same message follows; replies and inbound emails by their
sender's tag (an email recorded before sealing by its clear sender, hashed here); opt-outs,
opt-ins and erasures by the tag they carry. Bodies of outgoing messages live in the gateways'
ledgers until their retention, not in these streams, so they are not part of this export
(docs/privacy.md).
"""

from __future__ import annotations

from typing import Any

from nats.aio.client import Client

from shared.bus.topology import DISPATCH, INBOUND, OPTOUTS
from shared.events.schemas.dispatch import MessageQueued
from shared.events.schemas.inbound_email import InboundEmailReceived
from shared.events.schemas.optouts import RecipientOptedIn, RecipientOptedOut
from shared.events.schemas.privacy import RecipientErased
from shared.events.schemas.replies import ReplyReceived
from shared.eventstore import EventStore
from shared.privacy.cipher import is_personal, tag_of
from shared.privacy.codec import PersonalData
from shared.privacy.inbound_email import open_fields


def _tag(value: str) -> str | None:
    return tag_of(value) if is_personal(value) else None


def _sent_by(personal: PersonalData, data: InboundEmailReceived, tag: str) -> bool:
    if not data.sender:
        return False
    return (data.sender_tag or personal.tag(data.group_id, data.sender)) == tag


async def _email(personal: PersonalData, data: InboundEmailReceived) -> dict[str, Any]:
    opened = await open_fields(personal, data.group_id, data.model_dump(mode="json"))
    return {
        "site_id": data.site_id,
        "received_at": data.received_at.isoformat(),
        "kind": data.kind,
        "from": opened.get("sender"),
        "from_name": opened.get("sender_name"),
        "subject": opened.get("subject"),
        "attachments": [a.get("filename") for a in opened.get("attachments") or []],
        "matched_message_id": data.matched_message_id,
    }


async def export_recipient(
    nc: Client, personal: PersonalData, group_id: str, recipient: str
) -> dict[str, Any]:
    """The recipient's messages (with each event of their life), replies, opt-outs and
    erasures in `group_id`, personal fields opened (or "erased")."""
    tag = (await personal.ready()).tag(group_id, recipient)
    messages: dict[str, dict[str, Any]] = {}
    async for event in EventStore(nc, DISPATCH).replay(lenient=True):
        data = event.data
        if getattr(data, "group_id", None) != group_id:
            continue
        mid = getattr(data, "message_id", None)
        if isinstance(data, MessageQueued) and _tag(data.to) == tag:
            messages[str(mid)] = {
                "message_id": mid,
                "site_id": data.site_id,
                "channel": data.channel,
                "category": data.category,
                "to": await personal.open(group_id, data.to),
                "events": [],
            }
        if mid in messages:
            messages[str(mid)]["events"].append(
                {"type": event.type, "time": event.time.isoformat()}
            )
    replies = []
    emails = []
    async for event in EventStore(nc, INBOUND).replay(lenient=True):
        data = event.data
        if isinstance(data, InboundEmailReceived) and _sent_by(personal, data, tag):
            emails.append(await _email(personal, data))
            continue
        if (
            isinstance(data, ReplyReceived)
            and data.group_id == group_id
            and _tag(data.from_number) == tag
        ):
            replies.append(
                {
                    "site_id": data.site_id,
                    "received_at": data.received_at.isoformat(),
                    "from": await personal.open(group_id, data.from_number),
                    "body": await personal.open(group_id, data.body),
                    "kind": data.kind,
                    "in_reply_to": data.in_reply_to,
                }
            )
    choices = []
    erasures = []
    async for event in EventStore(nc, OPTOUTS).replay(lenient=True):
        data = event.data
        if getattr(data, "group_id", None) != group_id:
            continue
        if isinstance(data, RecipientOptedOut | RecipientOptedIn) and tag in (
            data.recipient_tag,
            personal.tag(group_id, data.recipient) if not is_personal(data.recipient) else None,
        ):
            choices.append(
                {
                    "type": event.type,
                    "time": event.time.isoformat(),
                    "channel": data.channel,
                    "how": data.how,
                }
            )
        elif isinstance(data, RecipientErased) and data.recipient_tag == tag:
            erasures.append({"time": data.erased_at.isoformat(), "by": data.erased_by})
    return {
        "group_id": group_id,
        "recipient_tag": tag,
        "messages": list(messages.values()),
        "replies": replies,
        "inbound_emails": emails,
        "opt_outs": choices,
        "erasures": erasures,
    }
