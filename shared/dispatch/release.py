"""Releasing a claimed batch: per-message checks (site, expiry, opt-out, quiet hours), then per
account the hold flag, the daily cap and the limiter's slots, and the sends launched."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from shared.dispatch.adapter import AccountLimitsSpec, Verdict
from shared.dispatch.flight import Flight, TickRun
from shared.dispatch.metrics import OUTCOMES
from shared.dispatch.ports import ChannelAdapter, Clock, Limiter, Queue, Sites
from shared.dispatch.queue import Claimed, Key
from shared.dispatch.sending import Sender
from shared.sites import Site

log = logging.getLogger(__name__)

Item = tuple[Claimed, Site]


class Releaser:
    """Turns a claimed batch into launched sends, or puts each message back where it belongs."""

    def __init__(
        self,
        *,
        channel: str,
        adapter: ChannelAdapter,
        queue: Queue,
        limits: Limiter,
        sites: Sites,
        flight: Flight,
        sender: Sender,
        clock: Clock,
    ) -> None:
        self.channel = channel
        self.adapter = adapter
        self.queue = queue
        self.limits = limits
        self.sites = sites
        self.flight = flight
        self.sender = sender
        self.clock = clock

    async def release_batch(
        self,
        batch: list[Claimed],
        now: datetime,
        start: datetime,
        spacing: timedelta,
        index: int,
        skipped: list[Key],
        handled: set[Key],
        run: TickRun,
    ) -> tuple[int, bool]:
        """Check a claimed batch and start its sends; returns (sends started, stop the tick).

        Per-message checks first (site, expiry, opt-out, quiet hours), then per account: the
        hold flag, the daily cap and one limiter reservation for all of the account's messages
        in the batch (not one database round trip per message).
        """
        flight = self.flight
        by_account: dict[str, list[Item]] = {}
        for claimed in batch:
            site = self.sites.get(claimed.site_id)
            if site is None:
                await self.queue.release_unsent([claimed])
                handled.add(claimed.key)
                skipped.append(claimed.key)
                continue
            verdict = await self.verdict(claimed, site, now)
            if verdict is not None:
                handled.add(claimed.key)
                if verdict.kind == "defer":
                    skipped.append(claimed.key)
                continue
            account = self.adapter.account_for(site)
            if account is None:
                await self.queue.defer(
                    claimed,
                    reason=f"{self.channel} is off for the site",
                    retry_at=now + timedelta(minutes=5),
                    attempt_used=False,
                )
                handled.add(claimed.key)
                skipped.append(claimed.key)
                continue
            by_account.setdefault(account, []).append((claimed, site))
        launched = 0
        stop = False
        # (account, its messages, moved to a standby account already): a message moves at
        # most once per batch, so two accounts held at once never pass it back and forth.
        work = [(account, items, False) for account, items in by_account.items()]
        while work:
            account, items, moved = work.pop(0)
            if await self.limits.held(account) is not None:
                await self._check_resume(account, items[0][1])
                staying: list[Item] = items
                moving: dict[str, list[Item]] = {}
                if not moved:
                    staying, moving = self._failover(items)
                await self.queue.release_unsent([c for c, _ in staying])
                handled.update(c.key for c, _ in staying)
                skipped.extend(c.key for c, _ in staying)
                work.extend((standby, group, True) for standby, group in moving.items())
                stop = stop or not moving
                continue
            limits = self.adapter.limits_for(items[0][1])
            cap_lock = flight.cap_locks.setdefault(account, asyncio.Lock())
            async with cap_lock:
                room = await self.limits.room_today(account, limits.daily_cap)
                room -= flight.unrecorded.get(account, 0)
                allowed, over = items[: max(room, 0)], items[max(room, 0) :]
                flight.unrecorded[account] = flight.unrecorded.get(account, 0) + len(allowed)
            for claimed, _ in over:
                await self.queue.defer(
                    claimed,
                    reason="the account's daily cap is reached",
                    retry_at=now + timedelta(minutes=15),
                    attempt_used=False,
                )
                handled.add(claimed.key)
                skipped.append(claimed.key)
            if not allowed:
                continue
            pending = allowed
            try:
                while pending:
                    if flight.draining:
                        # Not handed to the provider yet: leave them for another replica.
                        await self._give_back(account, pending, handled)
                        pending = []
                        stop = True
                        break
                    if run.pace is not None:
                        claimed, site = pending[0]
                        launch = await self._paced_slot(run, account, limits, start)
                        if launch is None:
                            # Its turn would fall after the tick's window: it waits for the
                            # next tick, still queued.
                            await self._give_back(account, pending, handled)
                            pending = []
                            stop = True
                            break
                        pending = pending[1:]
                        launched += 1
                        self.sender.launch(
                            claimed, site, account, launch, limits.interval, run, spacing
                        )
                        handled.add(claimed.key)
                        continue
                    if flight.send_slots.locked() and self.clock.now() > run.tick.not_after:
                        # The tick's window is over and every send slot is busy: the rest go
                        # back to the queue for the account's next tick, which a replica with
                        # free slots may take. Kept here, a whole claim waited for this
                        # replica's slots while another replica had nothing to send.
                        await self._give_back(account, pending, handled)
                        pending = []
                        stop = True
                        break
                    # Reserve limiter slots for the sends that can start now, and for the
                    # few that will get a send slot well within STALL. A whole batch's
                    # reservation went stale while the batch waited for send slots (whenever
                    # the provider is slower than the account's rate), and every late send
                    # then took a fresh reservation of its own: two database transactions
                    # per message, contended by every send in flight. Reserving only for the
                    # free slots costs one transaction per one or two sends instead.
                    await flight.send_slots.acquire()
                    ready = 1
                    while ready < len(pending) and not flight.send_slots.locked():
                        await flight.send_slots.acquire()  # free: returns at once
                        ready += 1
                    taken = ready + flight.soon_free(len(pending) - ready, run)
                    try:
                        slots = await self.limits.reserve(
                            account, taken, limits.interval, burst=limits.burst
                        )
                    except BaseException:
                        for _ in range(ready):
                            flight.send_slots.release()
                        raise
                    chunk, pending = pending[:taken], pending[taken:]
                    for n, ((claimed, site), slot) in enumerate(zip(chunk, slots, strict=True)):
                        when = max(slot, start + (index + launched) * spacing)
                        launched += 1
                        # The first `ready` hold a send slot; the rest take one as sends end.
                        self.sender.launch(
                            claimed, site, account, when, limits.interval, run, spacing, n < ready
                        )
                        handled.add(claimed.key)
            except BaseException:
                # Not launched, so not in flight either (the caller puts them back in the queue).
                flight.unrecorded[account] -= len(pending)
                raise
        return launched, stop

    def _failover(self, items: list[Item]) -> tuple[list[Item], dict[str, list[Item]]]:
        """Split a held account's messages: those whose site names a standby account move
        to it (grouped by that account, with the site as it sends there), the rest stay.

        A message moved here may have been attempted through the held account before: the
        adapter settles that attempt (a lookup there) before anything is sent through the
        standby account, so nothing goes twice.
        """
        staying: list[Item] = []
        moving: dict[str, list[Item]] = {}
        for claimed, site in items:
            standby = self.adapter.failover(site)
            account = self.adapter.account_for(standby) if standby is not None else None
            if standby is None or account is None:
                staying.append((claimed, site))
            else:
                moving.setdefault(account, []).append((claimed, standby))
        return staying, moving

    async def verdict(self, claimed: Claimed, site: Site, now: datetime) -> Verdict | None:
        """None if the message may go; otherwise the verdict, already applied."""
        if claimed.expires_at is not None and claimed.expires_at <= now:
            await self.queue.expired(claimed)
            OUTCOMES.labels(self.channel, "expired").inc()
            return Verdict("fail", "expired")
        verdict = await self.adapter.check(claimed, site, now)
        if verdict.kind == "send":
            return None
        if verdict.kind == "suppress":
            await self.queue.suppressed(claimed, reason=verdict.reason)
            OUTCOMES.labels(self.channel, "suppressed").inc()
        elif verdict.kind == "defer":
            await self.queue.defer(
                claimed, reason=verdict.reason, retry_at=verdict.retry_at, attempt_used=False
            )
        else:
            await self.queue.failed(claimed, reason=verdict.reason, attempts=0)
            OUTCOMES.labels(self.channel, "failed").inc()
        return verdict

    async def _give_back(self, account: str, items: list[Item], handled: set[Key]) -> None:
        """Return claimed messages that will not be sent now to the queue, unattempted."""
        await self.queue.release_unsent([c for c, _ in items])
        handled.update(c.key for c, _ in items)
        self.flight.unrecorded[account] -= len(items)

    async def _paced_slot(
        self, run: TickRun, account: str, limits: AccountLimitsSpec, start: datetime
    ) -> datetime | None:
        """When the next send of a spaced site tick may start: after the site's previous send
        (this tick's, an earlier tick's, another replica's) plus the spacing, and in the
        account's limit; None if that is past the tick's window.

        One reservation per send: spacing is seconds to minutes, so the round trip is
        nothing, and a reservation the tick cannot use costs the site at most one spacing.
        """
        assert run.pace is not None
        spacing = timedelta(seconds=run.tick.spacing_seconds)
        at = start if start > self.clock.now() else None
        (turn,) = await self.limits.reserve(run.pace, 1, spacing, now=at)
        if turn > run.tick.not_after:
            return None
        (slot,) = await self.limits.reserve(account, 1, limits.interval, burst=limits.burst)
        return max(turn, slot)

    async def _check_resume(self, account: str, site: Site) -> None:
        try:
            if await self.adapter.account_resumed(account, site):
                await self.limits.release(account)
        except Exception:
            log.exception("could not check whether a held account may resume")
