"""The key recipients' tags are computed with: one per deployment, kept apart from the service
key so that rotating the service key leaves every tag as it was (docs/privacy.md).

It lives in the `privacy_keys` bucket under `_meta.tag-key` (group ids start with a letter or a
digit, so no group's key can bear that name, and no erasure or retention pattern reaches it),
sealed with the service key like the data keys; `stagger secrets reseal` seals it again under a
new service key with the rest of the bucket.

The first process to start creates it with the bucket's create (which fails when the entry
exists), so services starting together agree on one key: a loser reads the winner's.
"""

from __future__ import annotations

import os

from nats.aio.client import Client
from nats.js.errors import (
    BadRequestError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NotFoundError,
)

from shared.privacy.keyring import BUCKET, STREAM
from shared.secrets import SecretBox, SecretKeyError

TAG_KEY_NAME = "_meta.tag-key"
LEGACY_PURPOSE = "stagger.privacy.recipient-tag"
"""What the tag key was derived from the service key with before it had an entry of its own."""


async def load_tag_key(nc: Client, box: SecretBox) -> bytes:
    """The deployment's tag key, created on first use.

    A deployment that already sealed something computed its tags with a key derived from the
    primary service key: that same key is stored, so its tags stay valid. A new one (no key
    ever written to the bucket) gets a random key.
    """
    kv = await nc.jetstream().key_value(BUCKET)
    found = await _read(nc, box)
    if found is not None:
        return found
    state = (await nc.jetstream().stream_info(STREAM)).state
    key = box.derive_key(LEGACY_PURPOSE) if state.last_seq > 0 else os.urandom(32)
    try:
        await kv.create(TAG_KEY_NAME, box.seal_bytes(key))
    except (KeyWrongLastSequenceError, BadRequestError):
        found = await _read(nc, box)  # another process created it first: theirs is the key
        if found is None:
            raise
        return found
    return key


async def _read(nc: Client, box: SecretBox) -> bytes | None:
    kv = await nc.jetstream().key_value(BUCKET)
    try:
        entry = await kv.get(TAG_KEY_NAME)
    except (KeyNotFoundError, NotFoundError):
        return None
    if not entry.value:
        return None
    try:
        return box.open_bytes(entry.value)
    except SecretKeyError:
        raise SecretKeyError(
            f"the tag key ({BUCKET} {TAG_KEY_NAME}) was sealed with a service key that is not in "
            "STAGGER_SECRET_KEY (was the old key removed before `stagger secrets reseal`?)"
        ) from None
