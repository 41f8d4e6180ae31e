"""The hash chain of the audit trail: each record's digest covers its fields and the previous
record's digest, so editing or deleting a row breaks the chain at that row. Pure."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

GENESIS = "0" * 64
# The columns a record's hash covers, in this order.
HASHED = (
    "position",
    "event_id",
    "type",
    "version",
    "source",
    "subject",
    "actor",
    "time",
    "group_id",
    "site_id",
    "message_id",
    "correlation_id",
    "origin_stream",
    "origin_sequence",
    "nats_subject",
    "data",
)


def digest(prev_hash: str, row: Mapping[str, Any]) -> str:
    """Hash of one record: its fields, each length-prefixed (so no separator can be forged),
    after the previous record's hash."""
    return digest_values(prev_hash, [row.get(name) for name in HASHED])


def digest_values(prev_hash: str, values: Sequence[Any]) -> str:
    """`digest` of a record given as the values of `HASHED`, in that order."""
    parts = [prev_hash]
    for name, value in zip(HASHED, values, strict=True):
        text = "" if value is None else str(value)
        parts.append(f"{name}={len(text)}:{text}")
    return hashlib.sha256("\x1e".join(parts).encode()).hexdigest()
