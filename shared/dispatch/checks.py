"""Why an incoming message, tick or command cannot be used: pure checks, each naming the field."""

from __future__ import annotations

from typing import Any

from nats.aio.msg import Msg

from shared.bus import outbox_ids, subjects
from shared.events.codec import MSG_ID
from shared.events.schemas.control import CancelRequested, ResetFailedRequested
from shared.events.schemas.messages import MessageAccepted
from shared.events.schemas.ticks import TickIssued


def fits(value: str, length: int) -> bool:
    """Whether `value` fits a key column of `length` characters on every database."""
    return 0 < len(value) <= length and value.isprintable()


def command_problem(data: Any) -> str | None:
    """Why a decoded cancel or reset-failed command cannot be applied, or None."""
    if not isinstance(data, CancelRequested | ResetFailedRequested):
        return None
    bad = [i for i in data.message_ids if not fits(i, 64)]
    if bad:
        return f"message_ids {bad[:3]!r} are not message ids (1-64 printable characters)"
    if not fits(data.group_id, 63):
        return f"group_id {data.group_id[:80]!r} is not a group id (1-63 printable characters)"
    try:
        subjects.check_token(data.site_id, "site id")
    except subjects.InvalidToken as exc:
        return str(exc)
    return None


def deliveries(msg: Msg) -> int:
    """How many times JetStream has delivered `msg` (huge if it is not a JetStream message)."""
    try:
        return int(msg.metadata.num_delivered)
    except Exception:  # not a JetStream message: nothing to retry with
        return 1 << 30


def envelope_problem(msg: Msg, message: MessageAccepted) -> str | None:
    """Why the subject or `Nats-Msg-Id` of an accepted message disagree with its data, or None.

    Producers are allowed onto their own sites' subjects only; a message that names another
    site in its data, or carries another site's de-duplication id, is someone else's message.
    """
    site = outbox_ids.site_of(msg.subject)
    if site != message.site_id:
        return f"subject {msg.subject} is not the outbox of site {message.site_id} (its site_id)"
    dedup = (msg.headers or {}).get(MSG_ID) or ""
    # JetStream de-duplicates the whole stream by this header; the config service sends
    # `<site>:<message id>`. One naming another site is an attempt to make JetStream drop that
    # site's message as a duplicate. (A header without a site prefix is a producer's own.)
    named = outbox_ids.site_of_msg_id(dedup)
    if named is not None and named != message.site_id:
        return (
            f"Nats-Msg-Id {dedup[:140]!r} names another site than {message.site_id} "
            "(expected <site>:<message id>)"
        )
    return None


def message_problem(channel: str, message: MessageAccepted) -> str | None:
    """Why a decoded message can never be stored in `channel`'s queue, or None."""
    if message.channel != channel:
        return f"a {message.channel} message on the {channel} outbox"
    # What goes into the queue's key columns must fit them on every database.
    if not fits(message.message_id, 64):
        return f"message_id {message.message_id[:80]!r} is not 1-64 printable characters"
    if message.batch_id is not None and not fits(message.batch_id, 64):
        return f"batch_id {message.batch_id[:80]!r} is not 1-64 printable characters"
    if not fits(message.to, 320):
        return f"recipient (to) {message.to[:80]!r} is not 1-320 printable characters"
    naive = [
        name
        for name in ("submitted_at", "not_before", "expires_at")
        if (value := getattr(message, name)) is not None and value.tzinfo is None
    ]
    if naive:
        return f"{', '.join(naive)} without a time zone"
    return None


def tick_problem(tick: TickIssued) -> str | None:
    """Why a decoded tick cannot be used, or None."""
    naive = [
        name
        for name in ("scheduled_at", "not_before", "not_after")
        if getattr(tick, name).tzinfo is None
    ]
    if naive:
        return f"{', '.join(naive)} without a time zone"
    if tick.not_before > tick.not_after:
        return "not_before is after not_after"
    if tick.budget < 0:
        return f"negative budget {tick.budget}"
    if not 0 <= tick.spacing_seconds <= 86_400:
        return f"spacing_seconds {tick.spacing_seconds} is not between 0 and 86400"
    return None
