"""Which console sessions are signed in, shared by every config replica.

The cookie alone proves only that this service sealed it; a copy of it would outlive signing
out. So a signed-in session's id is also a key of the NATS key-value bucket
`console_sessions`: signing in puts it, signing out deletes it, and every request of a
signed-in cookie looks it up. Any replica answers the same way at once (the bucket is read
directly from JetStream, nothing is cached), and the bucket's TTL drops keys of sessions whose
cookie has expired.
"""

from __future__ import annotations

from nats.aio.client import Client
from nats.js.errors import KeyDeletedError, KeyNotFoundError
from nats.js.kv import KeyValue

from shared.bus.topology import CONSOLE_SESSIONS


class SessionRegistry:
    """Live session ids in the `console_sessions` bucket."""

    def __init__(self, nc: Client) -> None:
        self._nc = nc
        self._kv: KeyValue | None = None

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            self._kv = await self._nc.jetstream().key_value(CONSOLE_SESSIONS)
        return self._kv

    async def start(self, sid: str, token_id: str) -> None:
        """Record a session as signed in (the token id says whose it is, never the token)."""
        await (await self._bucket()).put(sid, token_id.encode())

    async def live(self, sid: str) -> bool:
        """True while the session is signed in."""
        try:
            entry = await (await self._bucket()).get(sid)
        except (KeyNotFoundError, KeyDeletedError):
            return False
        return entry.value is not None

    async def end(self, sid: str) -> None:
        """Sign a session out everywhere."""
        await (await self._bucket()).delete(sid)
