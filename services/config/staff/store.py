"""SQL adapter of staff accounts: users, invitations, sessions, sign-in failures, token use."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.config.staff import tables as t
from services.config.staff.rules import StaffMember

_DAY = timedelta(days=1)


def _utc(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; every stored instant is UTC.
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


@dataclass(frozen=True)
class UserRow:
    """A staff user as stored (secrets still sealed)."""

    user_id: str
    group_id: str
    email: str
    name: str
    role: str
    sites: tuple[str, ...]
    status: str
    password_hash: str | None
    totp_secret: str | None
    totp_pending: str | None
    totp_last_step: int | None
    created_at: datetime

    @property
    def member(self) -> StaffMember:
        """The user as the rules see them."""
        return StaffMember(
            self.user_id,
            self.group_id,
            self.role,  # type: ignore[arg-type]
            frozenset(self.sites),
            self.status,  # type: ignore[arg-type]
        )

    @classmethod
    def of(cls, row: Any) -> UserRow:
        return cls(
            row.user_id,
            row.group_id,
            row.email,
            row.name,
            row.role,
            tuple(row.sites or ()),
            row.status,
            row.password_hash,
            row.totp_secret,
            row.totp_pending,
            row.totp_last_step,
            _utc(row.created_at) or datetime.now(UTC),
        )


@dataclass(frozen=True)
class SessionRow:
    """A console session as stored (its API token still sealed)."""

    session_hash: str
    user_id: str
    group_id: str
    method: str
    client: str | None
    api_token_id: str
    api_token: str
    created_at: datetime
    expires_at: datetime


class StaffStore:
    """Reads and writes of the staff tables; each method is one transaction."""

    def __init__(self, db: async_sessionmaker[AsyncSession]) -> None:
        self.db = db

    # --- users ---------------------------------------------------------------------------

    async def user(self, user_id: str) -> UserRow | None:
        """A user by id."""
        async with self.db() as s:
            row = (await s.execute(sa.select(t.users).where(t.users.c.user_id == user_id))).first()
        return UserRow.of(row) if row else None

    async def user_by_email(self, email: str) -> UserRow | None:
        """A user by (normalised) email address."""
        async with self.db() as s:
            row = (await s.execute(sa.select(t.users).where(t.users.c.email == email))).first()
        return UserRow.of(row) if row else None

    async def users(self, group_id: str) -> list[UserRow]:
        """The staff of a group, by email."""
        query = sa.select(t.users).where(t.users.c.group_id == group_id).order_by(t.users.c.email)
        async with self.db() as s:
            return [UserRow.of(r) for r in (await s.execute(query)).all()]

    async def active_admins(self, group_id: str) -> int:
        """How many active group admins a group has."""
        query = sa.select(sa.func.count()).where(
            t.users.c.group_id == group_id,
            t.users.c.role == "group_admin",
            t.users.c.status == "active",
        )
        async with self.db() as s:
            return int((await s.execute(query)).scalar_one())

    async def add_user(self, values: dict[str, Any], invitation: dict[str, Any]) -> None:
        """A new (invited) user and their invitation, together."""
        async with self.db() as s, s.begin():
            await s.execute(sa.insert(t.users).values(**values))
            await s.execute(sa.insert(t.invitations).values(**invitation))

    async def update_user(self, user_id: str, **values: Any) -> None:
        """Change some columns of a user (updated_at is set here)."""
        values["updated_at"] = datetime.now(UTC)
        async with self.db() as s, s.begin():
            await s.execute(sa.update(t.users).where(t.users.c.user_id == user_id).values(values))

    async def add_invitation(self, invitation: dict[str, Any]) -> None:
        """Another invitation for an existing (still invited) user."""
        async with self.db() as s, s.begin():
            await s.execute(sa.insert(t.invitations).values(**invitation))

    # --- invitations ---------------------------------------------------------------------

    async def invitation(self, token_hash: str) -> tuple[datetime, datetime | None, str] | None:
        """(expires at, used at, user id) of an invitation, or None."""
        query = sa.select(t.invitations).where(t.invitations.c.token_hash == token_hash)
        async with self.db() as s:
            row = (await s.execute(query)).first()
        if row is None:
            return None
        return _utc(row.expires_at), _utc(row.used_at), row.user_id  # type: ignore[return-value]

    async def accept(self, token_hash: str, user_id: str, now: datetime, **user: Any) -> bool:
        """Use the invitation and activate its user in one transaction; False if it was used
        meanwhile (two tabs, a replayed form)."""
        async with self.db() as s, s.begin():
            used = await s.execute(
                sa.update(t.invitations)
                .where(t.invitations.c.token_hash == token_hash, t.invitations.c.used_at.is_(None))
                .values(used_at=now)
            )
            if used.rowcount != 1:  # type: ignore[attr-defined]
                return False
            await s.execute(
                sa.update(t.users)
                .where(t.users.c.user_id == user_id)
                .values(updated_at=now, **user)
            )
        return True

    async def activate(self, user_id: str, now: datetime) -> bool:
        """Activate an invited user and use up their open invitations (sign-in through an
        identity provider); False if the user was not invited (any more)."""
        async with self.db() as s, s.begin():
            changed = await s.execute(
                sa.update(t.users)
                .where(t.users.c.user_id == user_id, t.users.c.status == "invited")
                .values(status="active", updated_at=now)
            )
            if changed.rowcount != 1:  # type: ignore[attr-defined]
                return False
            await s.execute(
                sa.update(t.invitations)
                .where(t.invitations.c.user_id == user_id, t.invitations.c.used_at.is_(None))
                .values(used_at=now)
            )
        return True

    # --- sessions ------------------------------------------------------------------------

    async def add_session(self, values: dict[str, Any]) -> None:
        """Record a new console session."""
        async with self.db() as s, s.begin():
            await s.execute(sa.insert(t.sessions).values(**values))

    async def session(self, session_hash: str) -> SessionRow | None:
        """A session by the hash of its id."""
        query = sa.select(t.sessions).where(t.sessions.c.session_hash == session_hash)
        async with self.db() as s:
            row = (await s.execute(query)).first()
        if row is None:
            return None
        values = row._asdict()
        values["created_at"] = _utc(row.created_at)
        values["expires_at"] = _utc(row.expires_at)
        return SessionRow(**values)

    async def end_session(self, session_hash: str) -> str | None:
        """Delete a session; the API token id it held, if it existed."""
        async with self.db() as s, s.begin():
            gone = await s.execute(
                sa.delete(t.sessions)
                .where(t.sessions.c.session_hash == session_hash)
                .returning(t.sessions.c.api_token_id)
            )
            row = gone.first()
        return row.api_token_id if row else None

    async def end_sessions_of(self, user_id: str) -> list[str]:
        """Delete every session of a user; the API token ids they held."""
        async with self.db() as s, s.begin():
            gone = await s.execute(
                sa.delete(t.sessions)
                .where(t.sessions.c.user_id == user_id)
                .returning(t.sessions.c.api_token_id)
            )
            return [r.api_token_id for r in gone.all()]

    async def session_counts(self, group_id: str, now: datetime) -> dict[str, int]:
        """Live sessions per user of a group."""
        query = (
            sa.select(t.sessions.c.user_id, sa.func.count())
            .where(t.sessions.c.group_id == group_id, t.sessions.c.expires_at > now)
            .group_by(t.sessions.c.user_id)
        )
        async with self.db() as s:
            return {r[0]: int(r[1]) for r in (await s.execute(query)).all()}

    # --- sign-in failures ----------------------------------------------------------------

    async def failures(self, keys: Iterable[tuple[str, str]], since: datetime) -> list[Any]:
        """(scope, key, at) of failures since `since` for the given (scope, key) pairs."""
        wanted = list(keys)
        query = sa.select(t.failures.c.scope, t.failures.c.key, t.failures.c.at).where(
            t.failures.c.at > since,
            sa.or_(*[sa.and_(t.failures.c.scope == a, t.failures.c.key == b) for a, b in wanted]),
        )
        async with self.db() as s:
            return [(r.scope, r.key, _utc(r.at)) for r in (await s.execute(query)).all()]

    async def add_failures(self, keys: Iterable[tuple[str, str]], at: datetime) -> None:
        """Record one failed attempt under each (scope, key); forget failures older than a day."""
        async with self.db() as s, s.begin():
            await s.execute(
                sa.insert(t.failures), [{"scope": a, "key": b, "at": at} for a, b in keys]
            )
            await s.execute(sa.delete(t.failures).where(t.failures.c.at < at - _DAY))

    async def clear_failures(self, scope: str, key: str) -> None:
        """Forget an account's failures after it signed in."""
        async with self.db() as s, s.begin():
            await s.execute(
                sa.delete(t.failures).where(t.failures.c.scope == scope, t.failures.c.key == key)
            )

    # --- API token use -------------------------------------------------------------------

    async def token_used(self, uses: dict[str, datetime]) -> None:
        """Record when tokens were last used."""
        async with self.db() as s, s.begin():
            for token_id, at in uses.items():
                changed = await s.execute(
                    sa.update(t.token_usage)
                    .where(t.token_usage.c.token_id == token_id)
                    .values(last_used_at=at)
                )
                if changed.rowcount == 0:  # type: ignore[attr-defined]
                    await s.execute(
                        sa.insert(t.token_usage).values(token_id=token_id, last_used_at=at)
                    )

    async def last_used(self, token_ids: Iterable[str]) -> dict[str, datetime]:
        """When each token was last used (tokens never used are absent)."""
        ids = list(token_ids)
        if not ids:
            return {}
        query = sa.select(t.token_usage).where(t.token_usage.c.token_id.in_(ids))
        async with self.db() as s:
            return {r.token_id: _utc(r.last_used_at) for r in (await s.execute(query)).all()}  # type: ignore[misc]
