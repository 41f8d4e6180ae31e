"""Keys of accepted messages on the bus: which site an outbox subject names, and the
de-duplication id (`Nats-Msg-Id`) of a message.

JetStream de-duplicates by `Nats-Msg-Id` across a whole stream (every site's subject of
`OUTBOX`), so an accepted message's id carries its site: with the bare message id, one tenant's
message with another tenant's id would make JetStream drop the other's as a duplicate.
"""

from __future__ import annotations

from shared.bus.subjects import CHANNELS


def site_of(subject: str) -> str | None:
    """The site token of an `outbox.<channel>.<site>` subject, else None."""
    parts = subject.split(".")
    if len(parts) == 3 and parts[0] == "outbox" and parts[1] in CHANNELS:
        return parts[2]
    return None


def msg_id(site: str, message_id: str) -> str:
    """`Nats-Msg-Id` of an accepted message: `<site>:<message id>`."""
    return f"{site}:{message_id}"


def site_of_msg_id(value: str) -> str | None:
    """The site a `Nats-Msg-Id` names (`<site>:…`), or None when it names none (a producer's
    own id without a site prefix)."""
    site, colon, _ = value.partition(":")
    return site if colon else None
