"""The recipients' data keys: a NATS key-value bucket every service reaches.

One entry per `<group>.<tag>.<kind>.<day>`, its value the data key sealed with the service key
(`SecretBox`), so the bucket's files alone open nothing. A key-value bucket rather than a SQL
table because every service writes or reads personal fields and each has its own database in
the embedded default; the bucket is the one store they all share.

Deleting a key uses JetStream's message delete, which overwrites the stored message with random
bytes (not a tombstone over the old bytes), so no copy of the key is left in NATS's data dir.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from cryptography.fernet import InvalidToken
from nats.aio.client import Client
from nats.js.errors import (
    BadRequestError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NotFoundError,
)
from nats.js.kv import KeyValue

from shared.privacy.cipher import new_data_key
from shared.secrets import SecretBox, SecretKeyError

BUCKET = "privacy_keys"
STREAM = f"KV_{BUCKET}"
CACHE_SECONDS = 10.0
"""How long a process keeps a key it opened: an erasure reaches every process within this."""


class RecipientKeys:
    """Creates, opens and deletes data keys (sealed with the service key)."""

    def __init__(self, nc: Client, box: SecretBox, *, cache_seconds: float = CACHE_SECONDS) -> None:
        self._nc = nc
        self._box = box
        self._cache: dict[str, tuple[bytes, float]] = {}
        self._cache_seconds = cache_seconds
        self._kv: KeyValue | None = None
        self._lock = asyncio.Lock()

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            self._kv = await self._nc.jetstream().key_value(BUCKET)
        return self._kv

    def _cached(self, name: str) -> bytes | None:
        hit = self._cache.get(name)
        if hit is None or hit[1] < time.monotonic():
            self._cache.pop(name, None)
            return None
        return hit[0]

    def _remember(self, name: str, key: bytes) -> None:
        if len(self._cache) > 100_000:
            self._cache.clear()  # bounded: a cold cache only costs lookups
        self._cache[name] = (key, time.monotonic() + self._cache_seconds)

    def _open(self, sealed: bytes) -> bytes | None:
        try:
            return self._box.open_bytes(sealed)
        except (SecretKeyError, InvalidToken):
            return None

    def cached(self, group_id: str, key_id: str) -> bytes | None:
        """The data key if this process opened it less than `cache_seconds` ago (no I/O)."""
        return self._cached(f"{group_id}.{key_id}")

    async def get(self, group_id: str, key_id: str) -> bytes | None:
        """The data key, or None when it never existed or was erased or expired."""
        name = f"{group_id}.{key_id}"
        cached = self._cached(name)
        if cached is not None:
            return cached
        try:
            entry = await (await self._bucket()).get(name)
        except (KeyNotFoundError, NotFoundError):
            return None
        if not entry.value:
            return None
        key = self._open(entry.value)
        if key is not None:
            self._remember(name, key)
        return key

    async def get_or_create(self, group_id: str, key_id: str) -> bytes:
        """The data key, created when missing (two writers racing agree on the first)."""
        existing = await self.get(group_id, key_id)
        if existing is not None:
            return existing
        name = f"{group_id}.{key_id}"
        key = new_data_key()
        try:
            await (await self._bucket()).create(name, self._box.seal_bytes(key))
        except (KeyWrongLastSequenceError, BadRequestError):
            found = await self.get(group_id, key_id)
            if found is None:
                raise
            return found
        self._remember(name, key)
        return key

    async def names(self, pattern: str) -> list[str]:
        """Key names matching a subject pattern (`<group>.<tag>.>`, `*.*.body.*`)."""
        # A watch filtered by the server (KeyValue.keys() reads every key and filters by
        # substring on the client).
        watcher = await (await self._bucket()).watch(pattern, ignore_deletes=True, meta_only=True)
        found: list[str] = []
        try:
            async for entry in watcher:
                if entry is None:
                    break
                found.append(entry.key)
        finally:
            await watcher.stop()  # type: ignore[no-untyped-call]
        return found

    async def delete(self, names: Iterable[str]) -> int:
        """Erase keys for good (the stored bytes overwritten); returns how many were found."""
        kv = await self._bucket()
        js = self._nc.jetstream()
        erased = 0
        for name in names:
            self._cache.pop(name, None)
            try:
                entry = await kv.get(name)
            except (KeyNotFoundError, NotFoundError):
                continue
            if entry.revision is not None:
                try:
                    await js.delete_msg(STREAM, entry.revision)  # secure erase (no_erase=false)
                    erased += 1
                except NotFoundError:
                    pass
        return erased

    def forget_cached(self, prefix: str) -> None:
        """Drop cached keys under `prefix` (this process heard of an erasure)."""
        for name in [n for n in self._cache if n.startswith(prefix)]:
            self._cache.pop(name, None)

    async def stale(self) -> list[str]:
        """Every key in the bucket (data keys and the tag key) sealed under a service key other
        than the first of STAGGER_SECRET_KEY. SecretKeyError when no configured key opens one,
        so a rotation stops before it writes anything."""
        return [name for name, _value, _revision in await self._stale_entries()]

    async def reseal(self) -> int:
        """Seal every key of the bucket again under the first service key (key rotation), so
        the older service keys can be dropped; returns how many were re-sealed.

        Each write names the revision it read: a key erased (or re-sealed by another run)
        meanwhile is left alone, never written back.
        """
        kv = await self._bucket()
        done = 0
        for name, value, revision in await self._stale_entries():
            try:
                await kv.update(name, self._box.reseal_bytes(value), last=revision)
            except (KeyWrongLastSequenceError, BadRequestError):
                continue
            self._cache.pop(name, None)
            done += 1
        return done

    async def _stale_entries(self) -> list[tuple[str, bytes, int]]:
        watcher = await (await self._bucket()).watch(">", ignore_deletes=True)
        stale: list[tuple[str, bytes, int]] = []
        unopened: list[str] = []
        try:
            async for entry in watcher:
                if entry is None:
                    break
                if not entry.value or entry.revision is None:
                    continue
                if self._box.bytes_under_primary(entry.value):
                    continue
                if self._open(entry.value) is None:
                    unopened.append(entry.key)
                else:
                    stale.append((entry.key, entry.value, entry.revision))
        finally:
            await watcher.stop()  # type: ignore[no-untyped-call]
        if unopened:
            raise SecretKeyError(
                f"{len(unopened)} key(s) of {BUCKET} (e.g. {unopened[0]}) were sealed with a "
                "service key that is not in STAGGER_SECRET_KEY; nothing was re-sealed"
            )
        return stale
