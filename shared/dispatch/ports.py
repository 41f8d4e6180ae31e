"""What the delivery engine needs from the world, as structural types.

The engine's handlers depend on these, not on SQL or NATS: the gateways pass the real parts
(`MessageQueue`, `AccountLimits`, `EventRelay`, `SentRecorder`, `SiteDirectory`, a channel
adapter), unit tests pass the in-memory fakes in `tests/support/fakes/dispatch.py`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Collection, Sequence
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

from shared.bus.deadletter import DeadLetterSink
from shared.dispatch.adapter import ChannelAdapter, SendResult
from shared.dispatch.queue import Claimed, Incoming, Key
from shared.events.schemas.dispatch import Release
from shared.sites import Site

T = TypeVar("T")

__all__ = [
    "ChannelAdapter",
    "Clock",
    "DeadLetterSink",
    "Limiter",
    "Queue",
    "Recorder",
    "Relay",
    "Sites",
]


class Queue(Protocol):
    """One channel's message ledger: every state change with its event, atomically."""

    async def ingest(self, batch: Sequence[Incoming]) -> int: ...

    async def claim(
        self,
        site_ids: Sequence[str],
        limit: int,
        *,
        now: datetime | None = None,
        lease: timedelta = ...,
        release: Release | None = None,
        exclude: Collection[Key] = (),
    ) -> list[Claimed]: ...

    async def extend_lease(self, keys: Collection[Key], lease: timedelta) -> None: ...

    async def renew_leases(self, lease: timedelta, keys: Sequence[Key]) -> int: ...

    async def confirm_lease(self, key: Key, lease: timedelta) -> bool: ...

    async def take_over_expired(
        self, now: datetime, limit: int = 100, lease: timedelta = ...
    ) -> list[Claimed]: ...

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
    ) -> bool: ...

    async def failed(
        self,
        c: Claimed,
        *,
        reason: str,
        provider_response: str | None = None,
        attempts: int = 1,
        permanent: bool = True,
    ) -> bool: ...

    async def defer(
        self,
        c: Claimed,
        *,
        reason: str,
        retry_at: datetime | None,
        attempt_used: bool,
        announce: bool = True,
    ) -> bool: ...

    async def release_unsent(self, claimed: Sequence[Claimed]) -> None: ...

    async def suppressed(self, c: Claimed, *, reason: str) -> bool: ...

    async def expired(self, c: Claimed) -> bool: ...

    async def cancel(
        self,
        site_id: str,
        message_ids: Sequence[str],
        *,
        reason: str,
        actor: str,
        group_id: str | None = None,
    ) -> list[str]: ...

    async def suppress_recipient(
        self, group_id: str, recipient: str, *, reason: str, category: str | None = None
    ) -> list[str]: ...

    async def expire_due(self, now: datetime | None = None) -> list[str]: ...

    async def requeue_failed(
        self, site_id: str, message_ids: Sequence[str], *, actor: str
    ) -> list[str]: ...

    async def purge_finished(self, before: datetime, limit: int = 1000) -> int: ...

    async def depth(self, site_id: str | None = None) -> int: ...

    async def depth_by_site(self) -> dict[str, int]: ...


class Limiter(Protocol):
    """Each provider account's hard limits, shared by every replica: pace, daily cap, hold."""

    async def reserve(
        self,
        account: str,
        count: int,
        interval: timedelta | None,
        *,
        burst: int = 1,
        now: datetime | None = None,
    ) -> list[datetime]: ...

    async def not_before(self, key: str, at: datetime) -> None: ...

    async def room_today(
        self, account: str, cap: int | None, now: datetime | None = None
    ) -> int: ...

    async def hold(self, account: str, reason: str, balance: float | None = None) -> bool: ...

    async def release(self, account: str, balance: float | None = None) -> bool: ...

    async def held(self, account: str) -> str | None: ...


class Relay(Protocol):
    """Publishes the events committed with each state change (the transactional outbox)."""

    def nudge(self) -> None: ...

    async def run(self) -> None: ...

    async def flush(self) -> int: ...


class Recorder(Protocol):
    """Records `sent` outcomes, grouping their commits."""

    async def sent(self, claimed: Claimed, account: str, result: SendResult) -> bool: ...

    async def run(self) -> None: ...


class Sites(Protocol):
    """Site id → the site's current settings."""

    def get(self, site_id: str) -> Site | None: ...

    def all(self) -> list[Site]: ...

    async def wait_for(self, site_id: str, patience: float = 5.0) -> Site | None: ...


class Clock(Protocol):
    """Time as the engine sees it (a simulation runs the engine on its own)."""

    def now(self) -> datetime: ...

    async def sleep(self, seconds: float) -> None: ...

    async def wait_for(
        self,
        awaitable: Awaitable[T],
        timeout: float | None,  # noqa: ASYNC109 - asyncio.wait_for's own signature
    ) -> T: ...
