"""Outcomes of a claimed message: sent, failed, deferred, released unsent, suppressed, expired."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa

from shared.dispatch import schema
from shared.dispatch.queue.core import QueueCore
from shared.dispatch.queue.records import Claimed
from shared.dispatch.queue.sql import keyed
from shared.events.envelope import EventData
from shared.events.schemas.dispatch import (
    MessageDeferred,
    MessageExpired,
    MessageFailed,
    MessageSent,
    MessageSuppressed,
)


class Outcomes(QueueCore):
    """Writes what happened to a claimed message, with its event."""

    async def sent(
        self,
        c: Claimed,
        *,
        account: str,
        provider_message_id: str | None,
        sent_at: datetime | None = None,
        segments: int | None = None,
        cost: float | None = None,
        attempts: int = 1,
        reconciled: bool = False,
    ) -> bool:
        """The provider accepted the message: terminal `sent`."""
        sent_at = sent_at or datetime.now(UTC)
        async with self.db() as session, session.begin():
            ok = await self._transition(
                session,
                c,
                from_states=[schema.SENDING],
                must_own=True,
                values={
                    "state": schema.SENT,
                    "account": account,
                    "sent_at": sent_at,
                    "finished_at": sent_at,
                    "provider_message_id": provider_message_id,
                    "lease_owner": None,
                    "lease_until": None,
                    "attempts": c.attempts + attempts,
                },
            )
            if ok:
                await self._event(
                    session,
                    c.group_id,
                    c.site_id,
                    c.message_id,
                    "terminal",
                    MessageSent(
                        **self._common(c.message_id, c.group_id, c.site_id),
                        account=account,
                        provider_message_id=provider_message_id,
                        sent_at=sent_at,
                        attempts=c.attempts + attempts,
                        segments=segments,
                        cost=cost,
                        released_by=c.release,
                        reconciled=reconciled,
                    ),
                )
        return ok

    async def failed(
        self,
        c: Claimed,
        *,
        reason: str,
        provider_response: str | None = None,
        attempts: int = 1,
        permanent: bool = True,
    ) -> bool:
        """Could not be sent: terminal `failed` with the reason."""
        reason = self.scrub(c, reason)
        provider_response = None if provider_response is None else self.scrub(c, provider_response)
        now = datetime.now(UTC)
        async with self.db() as session, session.begin():
            ok = await self._transition(
                session,
                c,
                from_states=[schema.SENDING],
                must_own=True,
                values={
                    "state": schema.FAILED,
                    "finished_at": now,
                    "last_error": reason,
                    "lease_owner": None,
                    "lease_until": None,
                    "attempts": c.attempts + attempts,
                },
            )
            if ok:
                await self._event(
                    session,
                    c.group_id,
                    c.site_id,
                    c.message_id,
                    "terminal",
                    MessageFailed(
                        **self._common(c.message_id, c.group_id, c.site_id),
                        reason=reason,
                        attempts=c.attempts + attempts,
                        permanent=permanent,
                        provider_response=provider_response,
                    ),
                )
        return ok

    async def defer(
        self,
        c: Claimed,
        *,
        reason: str,
        retry_at: datetime | None,
        attempt_used: bool,
        announce: bool = True,
    ) -> bool:
        """Put a claimed message back in the queue until `retry_at` (not an outcome)."""
        reason = self.scrub(c, reason)
        attempts = c.attempts + (1 if attempt_used else 0)
        async with self.db() as session, session.begin():
            ok = await self._transition(
                session,
                c,
                from_states=[schema.SENDING],
                must_own=True,
                values={
                    "state": schema.QUEUED,
                    "next_attempt_at": retry_at,
                    "lease_owner": None,
                    "lease_until": None,
                    "attempts": attempts,
                    "last_error": reason if attempt_used else None,
                },
            )
            if ok and announce:
                await self._event(
                    session,
                    c.group_id,
                    c.site_id,
                    c.message_id,
                    f"deferred:{attempts}:{reason[:40]}",
                    MessageDeferred(
                        **self._common(c.message_id, c.group_id, c.site_id),
                        reason=reason,
                        retry_at=retry_at,
                        attempt=attempts,
                    ),
                )
        return ok

    async def release_unsent(self, claimed: Sequence[Claimed]) -> None:
        """Return claimed messages that were not attempted (a drain, a held account)."""
        m = self.t.messages
        async with self.db() as session, session.begin():
            await session.execute(
                sa.update(m)
                .where(
                    keyed(m, [c.key for c in claimed]),
                    m.c.state == schema.SENDING,
                    m.c.lease_owner == self.owner,
                )
                .values(state=schema.QUEUED, lease_owner=None, lease_until=None)
            )

    async def suppressed(self, c: Claimed, *, reason: str) -> bool:
        """Not sent to an opted-out recipient (no provider call): terminal `suppressed`."""
        return await self._finish_claimed(
            c,
            schema.SUPPRESSED,
            "terminal",
            MessageSuppressed(**self._common(c.message_id, c.group_id, c.site_id), reason=reason),
        )

    async def expired(self, c: Claimed) -> bool:
        """Its time ran out before it could be sent: terminal `expired`."""
        assert c.expires_at is not None
        return await self._finish_claimed(
            c,
            schema.EXPIRED,
            "terminal",
            MessageExpired(
                **self._common(c.message_id, c.group_id, c.site_id), expires_at=c.expires_at
            ),
        )

    async def _finish_claimed(self, c: Claimed, state: str, what: str, data: EventData) -> bool:
        now = datetime.now(UTC)
        async with self.db() as session, session.begin():
            ok = await self._transition(
                session,
                c,
                from_states=[schema.SENDING],
                must_own=True,
                values={
                    "state": state,
                    "finished_at": now,
                    "lease_owner": None,
                    "lease_until": None,
                },
            )
            if ok:
                await self._event(session, c.group_id, c.site_id, c.message_id, what, data)
        return ok
