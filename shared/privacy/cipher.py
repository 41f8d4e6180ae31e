"""Field encryption under a recipient's data key (AES-256-GCM from `cryptography`).

A sealed field reads `pd1:<key id>:<base64url(nonce ‖ ciphertext)>`. The key id is
`<tag>.<kind>.<day>`: the recipient's salted hash (what lookups use), what the field is
(`id` for addresses, `body`, `reply`, `file`) and, for kinds with a retention, the UTC day it was
written, so retention deletes whole days of keys and erasure every key of the tag. The group is
bound in as associated data, so a value copied into another group's event does not open.
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "pd1:"
ERASED = "erased"
NONCE_BYTES = 12
KEY_BYTES = 32


def new_data_key() -> bytes:
    """A fresh random AES-256 key for one recipient of one group."""
    return AESGCM.generate_key(bit_length=KEY_BYTES * 8)


def is_personal(value: object) -> bool:
    """True for a value sealed by `seal`."""
    return isinstance(value, str) and value.startswith(PREFIX)


def key_id_of(sealed: str) -> str:
    """The key id (`<tag>.<kind>.<day>`) a sealed value names."""
    return sealed[len(PREFIX) :].split(":", 1)[0]


def tag_of(sealed: str) -> str:
    """The recipient tag a sealed value names."""
    return key_id_of(sealed).split(".", 1)[0]


def _aad(group_id: str, key_id: str) -> bytes:
    return f"{group_id}:{key_id}".encode()


def seal(key: bytes, group_id: str, key_id: str, plaintext: str) -> str:
    """Encrypt one field; an already sealed value is returned unchanged."""
    if is_personal(plaintext):
        return plaintext
    nonce = os.urandom(NONCE_BYTES)
    ct = AESGCM(key).encrypt(nonce, plaintext.encode(), _aad(group_id, key_id))
    return f"{PREFIX}{key_id}:{base64.urlsafe_b64encode(nonce + ct).decode()}"


def open_sealed(key: bytes | None, group_id: str, sealed: str) -> str:
    """Decrypt one field; `ERASED` when the key is gone (erasure or retention) or does not fit."""
    if not is_personal(sealed):
        return sealed  # written before encryption (see docs/privacy.md, rewrite-streams)
    if key is None:
        return ERASED
    try:
        key_id, payload = sealed[len(PREFIX) :].split(":", 1)
        raw = base64.urlsafe_b64decode(payload.encode())
        return (
            AESGCM(key)
            .decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], _aad(group_id, key_id))
            .decode()
        )
    except (ValueError, InvalidTag):
        return ERASED
