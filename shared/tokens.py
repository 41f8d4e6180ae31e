"""API tokens: issuing, checking and revoking, backed by the ACCESS event stream.

A token reads `stg_<token id>.<secret>`. Only a SHA-256 of the secret is stored: the secret is
256 random bits, so a slow password hash adds nothing. Each config replica keeps every token in
memory, followed live from the stream; a token it has not seen yet (issued a moment ago) is
looked up directly, so a freshly issued token works at once. A token may carry an expiry:
from that instant on it is refused (401, saying it expired), like a revoked one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from nats.aio.client import Client

from shared.bus import subjects
from shared.bus.topology import ACCESS
from shared.events.codec import UndecodableEvent, decode
from shared.events.envelope import Envelope, make_event
from shared.events.schemas.access import Role, TokenIssued, TokenRevoked
from shared.eventstore import EventStore, replay_batches, stream_position

log = logging.getLogger(__name__)

PREFIX = "stg_"


class TokenRefused(Exception):
    """A presented token is not accepted; `reason` is a short code, the message says why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    """`30d`, `12h`, `90m`, `2w`, `45s` → a positive timedelta (ValueError otherwise)."""
    found = _DURATION.match(text)
    if found is None or int(found.group(1)) == 0:
        raise ValueError(f"{text!r} is not a duration like 30d, 12h, 90m or 2w")
    return timedelta(**{_UNITS[found.group(2)]: int(found.group(1))})


def expiry(
    *, expires_in: str | None, expires_at: str | None, now: datetime | None = None
) -> datetime | None:
    """When a new token expires (UTC), from a duration or an ISO 8601 instant; None: never.

    An instant without an offset is read as UTC. ValueError names the option when both are
    given, when either cannot be read, or when the instant is not in the future.
    """
    now = now or datetime.now(UTC)
    if expires_in and expires_at:
        raise ValueError("give --expires-in or --expires-at, not both")
    if expires_in:
        try:
            return now + parse_duration(expires_in)
        except ValueError as exc:
            raise ValueError(f"--expires-in: {exc}") from None
    if expires_at:
        try:
            at = datetime.fromisoformat(expires_at.strip())
        except ValueError:
            raise ValueError(
                f"--expires-at: {expires_at!r} is not an ISO 8601 instant "
                "(e.g. 2027-01-31T18:00:00+00:00)"
            ) from None
        at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
        if at <= now:
            raise ValueError(f"--expires-at: {at.isoformat()} is not in the future")
        return at
    return None


@dataclass(frozen=True)
class Principal:
    """Who is calling, and what they may touch."""

    token_id: str
    group_id: str
    role: Role
    sites: frozenset[str] = field(default_factory=frozenset)
    # A staff user's console session acts through a token of its own; events name the user.
    user_id: str | None = None

    @property
    def actor(self) -> str:
        """How events record this caller."""
        if self.user_id:
            return f"user:{self.user_id}"
        return f"token:{self.token_id}"

    def sees_site(self, group_id: str, site_id: str) -> bool:
        """May read this site."""
        if group_id != self.group_id or self.role == "sender":
            return False  # a sender (a practice system) submits, it does not read settings
        if self.role in ("group_admin", "auditor"):
            return True
        return site_id in self.sites

    def manages_site(self, group_id: str, site_id: str) -> bool:
        """May change this site's settings, send-now, test the provider."""
        return self.role in ("group_admin", "site_manager") and self.sees_site(group_id, site_id)

    def submits_to_site(self, group_id: str, site_id: str) -> bool:
        """May submit messages for this site."""
        if self.role == "sender":
            return group_id == self.group_id and (not self.sites or site_id in self.sites)
        return self.manages_site(group_id, site_id)

    def administers_group(self, group_id: str) -> bool:
        """May change group defaults and create sites."""
        return self.role == "group_admin" and group_id == self.group_id


@dataclass
class _Token:
    issued: TokenIssued
    revoked: bool = False


def hash_secret(secret: str) -> str:
    """Stored form of a token secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_token(raw: str) -> tuple[str, str] | None:
    """`stg_<id>.<secret>` → (id, secret), or None if it is not shaped like a token."""
    if not raw.startswith(PREFIX) or "." not in raw:
        return None
    token_id, _, secret = raw[len(PREFIX) :].partition(".")
    if not token_id.isalnum() or not secret:
        return None
    return token_id, secret


async def issue_token(
    nc: Client,
    *,
    group_id: str,
    role: Role,
    sites: Iterable[str] = (),
    label: str = "",
    actor: str = "cli",
    expires_at: datetime | None = None,
    user_id: str | None = None,
) -> tuple[str, str]:
    """Record a new token (valid until `expires_at`, if given); returns (token id, the full
    token, shown once)."""
    token_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    data = TokenIssued(
        token_id=token_id,
        group_id=group_id,
        role=role,
        sites=sorted(set(sites)),
        label=label,
        secret_hash=hash_secret(secret),
        expires_at=expires_at,
        user_id=user_id,
    )
    event = make_event(data, source="config", actor=actor, subject=token_id, group_id=group_id)
    await EventStore(nc, ACCESS).append(subjects.access_token(token_id), event, expected_version=0)
    return token_id, f"{PREFIX}{token_id}.{secret}"


async def revoke_token(nc: Client, token_id: str, *, reason: str = "", actor: str = "cli") -> None:
    """Record that a token is revoked."""
    store = EventStore(nc, ACCESS)
    last = await store.last(subjects.access_token(token_id))
    if last is None:
        raise KeyError(token_id)
    data = TokenRevoked(token_id=token_id, group_id=last.group_id or "", reason=reason)
    event = make_event(data, source="config", actor=actor, subject=token_id, group_id=last.group_id)
    await store.append(subjects.access_token(token_id), event, expected_version=last.sequence)


class TokenRegistry:
    """Every token, kept current from the ACCESS stream."""

    def __init__(self, nc: Client) -> None:
        self._nc = nc
        self._store = EventStore(nc, ACCESS)
        self._tokens: dict[str, _Token] = {}
        self.ready = asyncio.Event()
        # Told of every accepted token (the config service records "last used" from it).
        self.on_use: Callable[[str], None] | None = None

    def _apply(self, event: Envelope) -> None:
        data = event.data
        if isinstance(data, TokenIssued):
            self._tokens[data.token_id] = _Token(data)
        elif isinstance(data, TokenRevoked) and data.token_id in self._tokens:
            self._tokens[data.token_id].revoked = True

    async def follow(self) -> None:
        """Apply token events as they arrive (run as a background task)."""
        info = await self._nc.jetstream().stream_info(ACCESS)
        if info.state.last_seq == 0:
            self.ready.set()
        async for batch in replay_batches(self._nc, ACCESS, follow=True):
            for msg in batch:
                with contextlib.suppress(UndecodableEvent):
                    self._apply(decode(msg.headers, msg.data))
                if stream_position(msg)[1] == 0:
                    self.ready.set()

    async def authenticate(self, raw: str) -> Principal | None:
        """The principal for a presented token, or None if it is unknown, wrong, revoked or
        expired (`check` says which)."""
        try:
            return await self.check(raw)
        except TokenRefused:
            return None

    async def check(self, raw: str, now: datetime | None = None) -> Principal:
        """The principal for a presented token; TokenRefused saying why not."""
        unknown = TokenRefused("unknown", "That token is unknown or has been revoked.")
        parsed = parse_token(raw)
        if parsed is None:
            raise unknown
        token_id, secret = parsed
        token = self._tokens.get(token_id)
        if token is None:
            last = await self._store.last(subjects.access_token(token_id))
            if last is None:
                raise unknown
            history = await self._store.load(subjects.access_token(token_id))
            for event in history.events:
                self._apply(event)
            token = self._tokens.get(token_id)
            if token is None:
                raise unknown
        if token.revoked or not hmac.compare_digest(token.issued.secret_hash, hash_secret(secret)):
            raise unknown
        issued = token.issued
        # Checked after the secret, so an expiry is told only to whoever holds the token.
        if issued.expires_at is not None and (now or datetime.now(UTC)) >= issued.expires_at:
            raise TokenRefused(
                "expired",
                f"That token expired at {issued.expires_at.isoformat(timespec='seconds')}; "
                "ask for a new one.",
            )
        if self.on_use is not None:
            self.on_use(issued.token_id)
        return Principal(
            issued.token_id,
            issued.group_id,
            issued.role,
            frozenset(issued.sites),
            user_id=issued.user_id,
        )

    def listing(self, group_id: str | None = None) -> list[dict[str, object]]:
        """Tokens (never their hashes) for `stagger token list`."""
        return [
            {
                "token_id": t.issued.token_id,
                "group_id": t.issued.group_id,
                "role": t.issued.role,
                "sites": t.issued.sites,
                "label": t.issued.label,
                "revoked": t.revoked,
                "expires_at": t.issued.expires_at,
                "user_id": t.issued.user_id,
            }
            for t in self._tokens.values()
            if group_id is None or t.issued.group_id == group_id
        ]
