"""Each email account's health as the gateway last saw it, for the settings page.

Every connection attempt reports here. The row in `email_account_status` (shared by replicas)
keeps the latest state; a change of state (fine → refused login, one error → another, error →
fine) also appends `stagger.provider.email_account_status` to `provider.<account>` through the
transactional outbox. The change is a compare-and-set in SQL, so two replicas seeing the same
failure record one event. Unchanged states only refresh `checked_at`, at most every few seconds.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.email_gateway.adapters import tables
from shared.bus import subjects
from shared.db.sql import insert_ignoring_duplicates
from shared.dispatch.pending_events import add_event, event_id
from shared.events.schemas.inbound_email import EmailAccountStatus

Stage = Literal["connect", "tls", "login", "send", "imap"]
REFRESH_SECONDS = 5.0


class AccountHealth:
    """Records and answers the state of SMTP and IMAP accounts."""

    def __init__(self, db: async_sessionmaker[AsyncSession], nudge: Any) -> None:
        self.db = db
        self._nudge = nudge
        self._seen: dict[str, tuple[bool, str | None, float]] = {}

    async def record(
        self,
        account: str,
        *,
        ok: bool,
        stage: Stage,
        error: str | None = None,
        code: int | None = None,
        group_id: str | None = None,
        site_id: str | None = None,
    ) -> bool:
        """Note what an account just did; True if that changed its recorded state."""
        error = None if ok else (error or "failed")
        known = self._seen.get(account)
        now_mono = time.monotonic()
        if known and known[0] == ok and known[1] == error and now_mono - known[2] < REFRESH_SECONDS:
            return False
        self._seen[account] = (ok, error, now_mono)
        t = tables.account_status
        now = datetime.now(UTC)
        values = {
            "ok": ok,
            "stage": stage,
            "last_error": error,
            "code": code,
            "checked_at": now,
            "group_id": group_id,
            "site_id": site_id,
        }
        async with self.db() as session, session.begin():
            inserted = await session.execute(
                insert_ignoring_duplicates(
                    session,
                    t,
                    [{"account": account, **values, "error_at": None if ok else now}],
                ).returning(t.c.account)
            )
            changed = inserted.first() is not None
            if not changed:
                differs = sa.or_(
                    t.c.ok.is_distinct_from(ok), t.c.last_error.is_distinct_from(error)
                )
                updated = await session.execute(
                    sa.update(t)
                    .where(t.c.account == account, differs)
                    .values(**values, error_at=None if ok else now)
                )
                changed = bool(updated.rowcount)  # type: ignore[attr-defined]
                if not changed:
                    await session.execute(
                        sa.update(t).where(t.c.account == account).values(checked_at=now)
                    )
            if changed:
                data = EmailAccountStatus(
                    account=account,
                    group_id=group_id,
                    site_id=site_id,
                    ok=ok,
                    stage=stage,
                    error=error,
                    code=code,
                    checked_at=now,
                )
                await add_event(
                    session,
                    tables.DISPATCH.pending_events,
                    subject=subjects.provider_health(account),
                    data=data,
                    event_id=event_id(account, f"status:{now.isoformat()}:{ok}:{error}"),
                    actor="service:email_gateway",
                    source="email_gateway",
                    group_id=group_id,
                    site_id=site_id,
                    event_subject=account,
                )
        if changed:
            self._nudge()
        return changed

    async def get(self, account: str) -> dict[str, Any] | None:
        """The recorded state of an account, or None if it was never used."""
        t = tables.account_status
        async with self.db() as session:
            row = (await session.execute(sa.select(t).where(t.c.account == account))).first()
        if row is None:
            return None
        return {
            "ok": bool(row.ok),
            "stage": row.stage,
            "last_error": row.last_error,
            "code": row.code,
            "error_at": _iso(row.error_at),
            "checked_at": _iso(row.checked_at),
        }


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.isoformat()
