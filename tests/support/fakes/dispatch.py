"""In-memory fakes of the delivery engine's ports (`shared.dispatch.ports`), for fast handler
tests without NATS or SQL. They keep the same rules as the real parts where a handler relies on
them: a claim leases a queued message, every terminal state is written once, a deferred message
becomes claimable again at its `retry_at`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from shared.bus.deadletter import DeadLetter
from shared.dispatch.adapter import SEND, AccountLimitsSpec, Reconciled, SendResult, Verdict
from shared.dispatch.engine import DispatchEngine
from shared.dispatch.queue import Claimed, Incoming, Key
from shared.dispatch.tuning import EngineTuning
from shared.domain.site_settings import SiteSettings
from shared.events.schemas.dispatch import Release
from shared.events.schemas.messages import MessageAccepted
from shared.events.schemas.ticks import TickIssued
from shared.sites import Site

T = TypeVar("T")
TERMINAL = {"sent", "failed", "suppressed", "cancelled", "expired"}


@dataclass
class Row:
    """One message in the fake ledger."""

    message: MessageAccepted
    state: str = "queued"
    attempts: int = 0
    retry_at: datetime | None = None
    lease_until: datetime | None = None
    reason: str = ""
    history: list[str] = field(default_factory=list)

    def claimed(self) -> Claimed:
        m = self.message
        return Claimed(
            m.message_id, m.group_id, m.site_id, m.to, m, self.attempts, None, m.expires_at
        )


class FakeClock:
    """Time that moves only when told to (or when something sleeps on it)."""

    def __init__(self, start: datetime | None = None) -> None:
        self.at = start or datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.at

    async def sleep(self, seconds: float) -> None:
        self.at += timedelta(seconds=max(seconds, 0))
        await asyncio.sleep(0)

    async def wait_for(self, awaitable: Awaitable[T], timeout: float | None) -> T:
        task = asyncio.ensure_future(awaitable)
        await asyncio.sleep(0)
        if task.done():
            return task.result()
        task.cancel()
        self.at += timedelta(seconds=timeout or 0)
        raise TimeoutError


class FakeQueue:
    """The ledger as a dict of rows; records every transition in each row's history."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.rows: dict[Key, Row] = {}
        # Leases another replica took over (this one was too slow to renew them).
        self.taken_over: set[Key] = set()
        self.confirmations = 0
        # message id → the account its `sent` names.
        self.sent_through: dict[str, str] = {}

    def add(self, message: MessageAccepted) -> None:
        self.rows[(message.site_id, message.message_id)] = Row(message)

    def states(self) -> dict[str, str]:
        return {k[1]: r.state for k, r in self.rows.items()}

    def _set(self, c: Claimed, state: str, reason: str = "") -> bool:
        row = self.rows[c.key]
        if row.state in TERMINAL:
            return False
        row.state, row.reason = state, reason
        row.history.append(state)
        return True

    async def ingest(self, batch: Sequence[Incoming]) -> int:
        new = [i for i in batch if (i.message.site_id, i.message.message_id) not in self.rows]
        for item in new:
            self.add(item.message)
        return len(new)

    async def claim(
        self,
        site_ids: Sequence[str],
        limit: int,
        *,
        now: datetime | None = None,
        lease: timedelta = timedelta(seconds=60),
        release: Release | None = None,
        exclude: Collection[Key] = (),
    ) -> list[Claimed]:
        now = now or self.clock.now()
        picked: list[Claimed] = []
        for key, row in self.rows.items():
            if len(picked) >= limit:
                break
            if row.state != "queued" or key[0] not in site_ids or key in exclude:
                continue
            if row.retry_at is not None and row.retry_at > now:
                continue
            row.state, row.lease_until = "sending", now + lease
            row.history.append("sending")
            picked.append(row.claimed())
        return picked

    async def extend_lease(self, keys: Collection[Key], lease: timedelta) -> None:
        for key in keys:
            self.rows[key].lease_until = self.clock.now() + lease

    async def renew_leases(self, lease: timedelta, keys: Sequence[Key]) -> int:
        await self.extend_lease(keys, lease)
        return len(keys)

    async def confirm_lease(self, key: Key, lease: timedelta) -> bool:
        self.confirmations += 1
        row = self.rows[key]
        if row.state != "sending" or key in self.taken_over:
            return False
        row.lease_until = self.clock.now() + lease
        return True

    async def take_over_expired(
        self, now: datetime, limit: int = 100, lease: timedelta = timedelta(seconds=60)
    ) -> list[Claimed]:
        stale = [
            r
            for r in self.rows.values()
            if r.state == "sending" and r.lease_until is not None and r.lease_until <= now
        ]
        for row in stale[:limit]:
            row.lease_until = now + lease
        return [r.claimed() for r in stale[:limit]]

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
        done = self._set(c, "sent", "reconciled" if reconciled else "")
        if done:
            self.sent_through[c.message_id] = account
        return done

    async def failed(
        self,
        c: Claimed,
        *,
        reason: str,
        provider_response: str | None = None,
        attempts: int = 1,
        permanent: bool = True,
    ) -> bool:
        return self._set(c, "failed", reason)

    async def defer(
        self,
        c: Claimed,
        *,
        reason: str,
        retry_at: datetime | None,
        attempt_used: bool,
        announce: bool = True,
    ) -> bool:
        ok = self._set(c, "queued", reason)
        row = self.rows[c.key]
        row.retry_at = retry_at
        if attempt_used:
            row.attempts += 1
        return ok

    async def release_unsent(self, claimed: Sequence[Claimed]) -> None:
        for c in claimed:
            if self.rows[c.key].state == "sending":
                self._set(c, "queued")

    async def suppressed(self, c: Claimed, *, reason: str) -> bool:
        return self._set(c, "suppressed", reason)

    async def expired(self, c: Claimed) -> bool:
        return self._set(c, "expired")

    def _finish_queued(self, keys: Sequence[Key], state: str, reason: str) -> list[str]:
        done = []
        for key in keys:
            row = self.rows.get(key)
            if row is not None and row.state == "queued":
                row.state, row.reason = state, reason
                row.history.append(state)
                done.append(key[1])
        return done

    async def cancel(
        self,
        site_id: str,
        message_ids: Sequence[str],
        *,
        reason: str,
        actor: str,
        group_id: str | None = None,
    ) -> list[str]:
        return self._finish_queued([(site_id, i) for i in message_ids], "cancelled", reason)

    async def suppress_recipient(
        self, group_id: str, recipient: str, *, reason: str, category: str | None = None
    ) -> list[str]:
        keys = [
            k
            for k, r in self.rows.items()
            if r.message.group_id == group_id
            and r.message.to == recipient
            and (category is None or r.message.consent_category == category)
        ]
        return self._finish_queued(keys, "suppressed", reason)

    async def expire_due(self, now: datetime | None = None) -> list[str]:
        now = now or self.clock.now()
        keys = [
            k
            for k, r in self.rows.items()
            if r.message.expires_at is not None and r.message.expires_at <= now
        ]
        return self._finish_queued(keys, "expired", "")

    async def requeue_failed(
        self, site_id: str, message_ids: Sequence[str], *, actor: str
    ) -> list[str]:
        return []

    async def purge_finished(self, before: datetime, limit: int = 1000) -> int:
        return 0

    async def depth(self, site_id: str | None = None) -> int:
        return sum(
            1
            for k, r in self.rows.items()
            if r.state in ("queued", "sending") and site_id in (None, k[0])
        )

    async def depth_by_site(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for k, r in self.rows.items():
            if r.state in ("queued", "sending"):
                out[k[0]] = out.get(k[0], 0) + 1
        return out


class FakeLimiter:
    """No pacing: every slot is now; holds are remembered."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.holds: dict[str, str] = {}
        self.pushed: dict[str, datetime] = {}

    async def reserve(
        self,
        account: str,
        count: int,
        interval: timedelta | None,
        *,
        burst: int = 1,
        now: datetime | None = None,
    ) -> list[datetime]:
        return [now or self.clock.now()] * count

    async def not_before(self, key: str, at: datetime) -> None:
        self.pushed[key] = max(at, self.pushed.get(key, at))

    async def room_today(self, account: str, cap: int | None, now: datetime | None = None) -> int:
        return 1_000_000 if cap is None else cap

    async def hold(self, account: str, reason: str, balance: float | None = None) -> bool:
        new = account not in self.holds
        self.holds[account] = reason
        return new

    async def release(self, account: str, balance: float | None = None) -> bool:
        return self.holds.pop(account, None) is not None

    async def held(self, account: str) -> str | None:
        return self.holds.get(account)


class FakeRelay:
    """Counts nudges; nothing to publish."""

    def __init__(self) -> None:
        self.nudges = 0

    def nudge(self) -> None:
        self.nudges += 1

    async def run(self) -> None:
        await asyncio.Event().wait()

    async def flush(self) -> int:
        return 0


class FakeRecorder:
    """Records `sent` at once in the fake queue (no grouping)."""

    def __init__(self, queue: FakeQueue) -> None:
        self.queue = queue

    async def sent(self, claimed: Claimed, account: str, result: SendResult) -> bool:
        return await self.queue.sent(
            claimed, account=account, provider_message_id=result.provider_message_id
        )

    async def run(self) -> None:
        await asyncio.Event().wait()


class FakeSites:
    """A fixed set of sites."""

    def __init__(self, *sites: Site) -> None:
        self._sites = {s.site_id: s for s in sites}

    def get(self, site_id: str) -> Site | None:
        return self._sites.get(site_id)

    def all(self) -> list[Site]:
        return list(self._sites.values())

    async def wait_for(self, site_id: str, patience: float = 5.0) -> Site | None:
        return self.get(site_id)


class FakeDeadLetters:
    """Keeps dead letters in a list."""

    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []

    async def publish(self, letters: list[DeadLetter]) -> None:
        self.letters.extend(letters)


class ScriptedProvider:
    """A channel adapter whose sends follow a script (default: accepted); records calls."""

    channel = "sms"

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.script: dict[str, list[SendResult | BaseException]] = {}
        self.delivered: set[str] = set()

    def account_for(self, site: Site) -> str | None:
        return f"acct-{site.group_id}"

    def failover(self, site: Site) -> Site | None:
        return None

    def limits_for(self, site: Site) -> AccountLimitsSpec:
        return AccountLimitsSpec()

    async def check(self, claimed: Claimed, site: Site, now: datetime) -> Verdict:
        return SEND

    async def send(self, claimed: Claimed, site: Site) -> SendResult:
        self.calls.append(claimed.message_id)
        scripted = self.script.get(claimed.message_id)
        if scripted:
            step = scripted.pop(0)
            if isinstance(step, BaseException):
                raise step
            return step
        self.delivered.add(claimed.message_id)
        return SendResult("sent", provider_message_id=f"p-{claimed.message_id}")

    async def reconcile(self, claimed: Claimed, site: Site) -> Reconciled:
        known = claimed.message_id in self.delivered
        return Reconciled(known, f"p-{claimed.message_id}" if known else None)

    async def on_tick(self, tick: TickIssued, sites: Sequence[Site]) -> None:
        return None

    async def account_resumed(self, account: str, site: Site) -> bool:
        return False


@dataclass
class FakeWorld:
    """An engine on fakes, with the fakes at hand."""

    engine: DispatchEngine[FakeQueue, FakeSites]
    queue: FakeQueue
    limits: FakeLimiter
    relay: FakeRelay
    provider: ScriptedProvider
    dead_letters: FakeDeadLetters
    clock: FakeClock
    site: Site


def fake_world(
    tuning: EngineTuning | None = None, provider: ScriptedProvider | None = None
) -> FakeWorld:
    """An engine for the site `s1` of group `g1`, built on fakes (`provider`: the channel
    adapter, a `ScriptedProvider` by default)."""
    clock = FakeClock()
    queue = FakeQueue(clock)
    limits = FakeLimiter(clock)
    relay = FakeRelay()
    provider = provider or ScriptedProvider()
    dead = FakeDeadLetters()
    site = Site("g1", "s1", SiteSettings(), 1)
    engine = DispatchEngine(
        channel="sms",
        adapter=provider,
        queue=queue,
        limits=limits,
        relay=relay,
        recorder=FakeRecorder(queue),
        sites=FakeSites(site),
        dead_letters=dead,
        tuning=tuning,
        clock=clock,
    )
    return FakeWorld(engine, queue, limits, relay, provider, dead, clock, site)


def accepted(
    message_id: str, *, site: str = "s1", group: str = "g1", to: str = "+15550100"
) -> MessageAccepted:
    """An accepted SMS for the fake ledger."""
    return MessageAccepted(
        message_id=message_id,
        group_id=group,
        site_id=site,
        channel="sms",
        to=to,
        body="hello",
        submitted_at=datetime(2026, 1, 5, 8, 0, tzinfo=UTC),
    )


def tick(clock: FakeClock, budget: int, *, site: str = "s1", spacing: float = 0.0) -> TickIssued:
    """A site tick valid for a minute from now."""
    now = clock.now()
    return TickIssued(
        tick_id=f"t-{now.timestamp()}",
        channel="sms",
        scope="site",
        group_id="g1",
        site_id=site,
        account="acct-g1",
        budget=budget,
        spacing_seconds=spacing,
        scheduled_at=now,
        not_before=now,
        not_after=now + timedelta(minutes=1),
        reason="test",
    )
