"""Which fields of a stored event are personal, and the event with them sealed. Pure.

The same fields the producers seal when they write today (docs/privacy.md, "What is personal
data here"): `stagger privacy rewrite-streams` uses this table to seal events written before
sealing existed, so an old event ends up as a new one would have been written. A bounce's
recipient inside an inbound email and an attachment release's file name name someone other
than the event's sender (or nobody the event names), so they are left as they were.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from shared.privacy.cipher import is_personal
from shared.privacy.shown import is_tag

ADDRESS = "id"
BODY = "body"
REPLY = "reply"


@dataclass(frozen=True)
class Rule:
    """How one event type carries personal data."""

    recipient: str
    """The field naming the recipient: their keys seal every field of the event."""
    fields: tuple[tuple[str, str], ...]
    """(path, kind of key); `attachments.*.filename` walks a list."""
    when: str | None = None
    """The field with the event's own time (body and reply keys are per UTC day)."""
    tag: str | None = None
    """The field that holds the recipient's salted hash once the recipient is sealed."""
    subject_is_recipient: bool = False
    """The event's `subject` attribute named the recipient (their tag once sealed)."""


_OPT = Rule("recipient", (("recipient", ADDRESS),), tag="recipient_tag", subject_is_recipient=True)

RULES: dict[str, Rule] = {
    # The accepted message (OUTBOX), as `MessageSealer.message` seals it.
    "stagger.message.accepted": Rule(
        "to",
        (
            ("to", ADDRESS),
            ("body", BODY),
            ("subject", BODY),
            ("html", BODY),
            ("attachments.*.filename", BODY),
            ("attachments.*.content_b64", BODY),
        ),
        when="submitted_at",
        tag="recipient_tag",
    ),
    # The gateway's intake copies the sealed address into the queued event.
    "stagger.dispatch.queued": Rule("to", (("to", ADDRESS),), when="submitted_at"),
    # The SMS gateway seals a reply's number and text (services/sms_gateway/handlers/reply.py).
    "stagger.reply.received": Rule(
        "from_number", (("from_number", ADDRESS), ("body", REPLY)), when="received_at"
    ),
    # Staff's answer to a reply (services/config/handlers/replies.py).
    "stagger.reply.answered": Rule("to", (("to", ADDRESS), ("body", BODY))),
    # Opt-outs and opt-ins with the recipient sealed (shared/suppression.py).
    "stagger.optout.opted_out": _OPT,
    "stagger.optout.opted_in": _OPT,
    # A soft bounce counted against an address, which older versions named in clear (the
    # gateway now names the tag).
    "stagger.optout.soft_bounce_counted": Rule(
        "recipient", (("recipient", ADDRESS),), subject_is_recipient=True
    ),
    # Inbound email, as shared/privacy/inbound_email.py seals it on arrival.
    "stagger.inbound.email_received": Rule(
        "sender",
        (
            ("sender", ADDRESS),
            ("sender_name", BODY),
            ("subject", BODY),
            ("attachments.*.filename", BODY),
        ),
        when="received_at",
        tag="sender_tag",
    ),
}


def event_name(ce_type: str | None) -> str:
    """`stagger.x.v2` → `stagger.x` (a type without a version as it is)."""
    if not ce_type:
        return ""
    name, sep, version = ce_type.rpartition(".v")
    return name if sep and version.isdigit() else ce_type


def _walk(data: Any, path: list[str]) -> Iterator[tuple[Any, str | int]]:
    """(container, key) of every value `path` names in `data`."""
    head, rest = path[0], path[1:]
    if head == "*":
        if isinstance(data, list):
            for i, item in enumerate(data):
                yield from (_walk(item, rest) if rest else [(data, i)])
        return
    if not isinstance(data, dict) or head not in data:
        return
    if rest:
        yield from _walk(data[head], rest)
    else:
        yield data, head


def clear_values(rule: Rule, data: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(kind, value) of every personal field of `data` still in clear."""
    found: list[tuple[str, str]] = []
    for path, kind in rule.fields:
        for holder, key in _walk(data, path.split(".")):
            value = holder[key]
            if not isinstance(value, str) or not value or is_personal(value):
                continue
            if kind == ADDRESS and is_tag(value):
                continue  # a salted hash already (what newer events name a recipient by)
            found.append((kind, value))
    return found


def _clear_subject(rule: Rule, data: Mapping[str, Any], subject: str | None) -> bool:
    recipient = data.get(rule.recipient)
    if not rule.subject_is_recipient or not subject or not isinstance(recipient, str):
        return False
    clear = not is_personal(recipient) and not is_tag(recipient)
    return clear and subject.strip().lower() == recipient.strip().lower()


def needs_sealing(ce_type: str | None, data: Mapping[str, Any], subject: str | None = None) -> bool:
    """True if an event of this type holds a personal field (or subject) in clear."""
    rule = RULES.get(event_name(ce_type))
    if rule is None:
        return False
    return bool(clear_values(rule, data)) or _clear_subject(rule, data, subject)


def sealed_subject(
    ce_type: str | None, data: Mapping[str, Any], subject: str | None, tag: str
) -> str | None:
    """The event's `subject` attribute once sealed: the tag where it named the recipient in
    clear (as opt-outs written before sealing did), else as it was."""
    rule = RULES.get(event_name(ce_type))
    if rule is not None and _clear_subject(rule, data, subject):
        return tag
    return subject


def recipient_of(ce_type: str | None, data: Mapping[str, Any]) -> tuple[str, str] | None:
    """(group, recipient as stored, clear or sealed) whose keys seal the event's fields."""
    rule = RULES.get(event_name(ce_type))
    if rule is None:
        return None
    group, recipient = data.get("group_id"), data.get(rule.recipient)
    if not isinstance(group, str) or not isinstance(recipient, str) or not recipient:
        return None
    return group, recipient


def when_of(ce_type: str | None, data: Mapping[str, Any]) -> str | None:
    """The event's own time as written in its data (None: use the event's `time`)."""
    rule = RULES.get(event_name(ce_type))
    if rule is None or rule.when is None:
        return None
    value = data.get(rule.when)
    return value if isinstance(value, str) else None


def sealed_copy(
    ce_type: str | None,
    data: Mapping[str, Any],
    seal: Callable[[str, str], str],
    tag: str | None,
) -> dict[str, Any]:
    """A copy of `data` with every clear personal field replaced by `seal(kind, value)` and
    the recipient's tag filled in where the event has a field for it; other fields as they are."""
    rule = RULES[event_name(ce_type)]
    out: dict[str, Any] = copy.deepcopy(dict(data))
    for path, kind in rule.fields:
        for holder, key in _walk(out, path.split(".")):
            value = holder[key]
            if isinstance(value, str) and value and not is_personal(value):
                holder[key] = seal(kind, value)
    if rule.tag is not None and tag is not None and not out.get(rule.tag):
        out[rule.tag] = tag
    return out
