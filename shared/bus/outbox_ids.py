"""Keys of accepted messages on the bus: which site an outbox subject names, and the
de-duplication id (`Nats-Msg-Id`) of a message.

JetStream de-duplicates by `Nats-Msg-Id` across a whole stream (every site's subject of
`OUTBOX`), so an accepted message's id carries its site: with the bare message id, one tenant's
message with another tenant's id would make JetStream drop the other's as a duplicate.

NATS permissions cannot restrict headers, so a producer of another group could still publish,
on its own subject, a header naming *this* site and an id it guessed. Ids the API gives
therefore end in a tag keyed by a secret only the config service holds (`keyed_msg_id`): a
retried submission gets the same tag, so JetStream still de-duplicates it, but no producer can
forge it.
"""

from __future__ import annotations

import hashlib
import hmac

from shared.bus.subjects import CHANNELS

TAG_HEX = 24  # 96 bits: guessing one tag is hopeless within the one-hour duplicate window


def site_of(subject: str) -> str | None:
    """The site token of an `outbox.<channel>.<site>` subject, else None."""
    parts = subject.split(".")
    if len(parts) == 3 and parts[0] == "outbox" and parts[1] in CHANNELS:
        return parts[2]
    return None


def msg_id(site: str, message_id: str) -> str:
    """`Nats-Msg-Id` of an accepted message: `<site>:<message id>`."""
    return f"{site}:{message_id}"


def keyed_msg_id(site: str, message_id: str, key: bytes) -> str:
    """`Nats-Msg-Id` of a message the API accepted: `<site>:<message id>:<tag>`, the tag an
    HMAC of site and id under `key`, so only the holder of `key` can name it."""
    tag = hmac.new(key, f"{site}:{message_id}".encode(), hashlib.sha256).hexdigest()[:TAG_HEX]
    return f"{site}:{message_id}:{tag}"


def site_of_msg_id(value: str) -> str | None:
    """The site a `Nats-Msg-Id` names (`<site>:…`), or None when it names none (a producer's
    own id without a site prefix)."""
    site, colon, _ = value.partition(":")
    return site if colon else None
