"""Keyed hashes of recipients: how the system finds a recipient without holding the number.

A tag is HMAC-SHA256 over the group and the normalised recipient, under the deployment's tag
key (`tag_key.py`, sealed with the service key). Without the service key a tag reveals nothing;
with it, a tag can be recomputed for a known recipient (that is what lookups need), which is why
it is called *salted*, not secret.
"""

from __future__ import annotations

import hashlib
import hmac
import re

TAG_PURPOSE = "stagger.privacy.recipient-tag.v1"
TAG_HEX = 32  # 128 bits: collisions between recipients of one group are out of reach
_NON_DIGITS = re.compile(r"[^0-9+]")


def normalise(recipient: str) -> str:
    """The form a recipient is hashed in: email addresses lower-cased, phone numbers reduced to
    `+` and digits, so `+61 412 345 678` and `+61412345678` are one recipient."""
    value = recipient.strip()
    if "@" in value:
        return value.lower()
    return _NON_DIGITS.sub("", value)


def recipient_tag(key: bytes, group_id: str, recipient: str) -> str:
    """The salted hash of `recipient` within `group_id` (hex)."""
    message = f"{group_id}\x1f{normalise(recipient)}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:TAG_HEX]
