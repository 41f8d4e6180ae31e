"""The timer: every schedule's next instant in one heap, turned into ticks and published on time.

* Each schedule (a site's staggered SMS or email cycles, or a provider account in immediate
  SMS mode) has exactly one live heap entry: its next slot. Popping it pushes the following
  one, so 20,000 schedules cost a heap of 20,000 entries and no database work per tick.
* Ticks are published ahead of their instant, with `not_before` = the instant: a gateway that
  takes one early holds it until then. How far ahead follows `domain.lookahead`: at least
  `publish_ahead`, more when the ticks in sight carry more than this replica publishes in
  time at the rate it measured lately (publishing 20,000 ticks takes a Python process well
  over 100 ms, longer on a slow or busy machine), at most `publish_ahead_max`. Ticks are built
  and encoded before that: up to `publish_ahead_max` plus the preparation margin ahead, so a
  burst is in sight before the look-ahead has to grow for it. Everything due at once goes
  out in batches.
* A settings change replaces a schedule's plan under a new generation number: its old heap
  entry and any tick prepared from it are dropped, and the new plan starts from now (minus the
  grace), so a new session ticks at once and a removed one stops at once.
* Nothing is ever caught up: a slot whose instant is more than `grace` in the past when its
  turn comes is skipped, and after a restart planning starts from now minus the grace.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from nats.js.api import PubAck

from services.scheduler.adapters import metrics
from services.scheduler.adapters.clock import Clock
from services.scheduler.adapters.issuing import TickSink, account_tick, site_tick
from services.scheduler.domain.lookahead import LookAheadRule, PublishRate
from services.scheduler.domain.planning import (
    MICROSECOND,
    AccountMember,
    Recheck,
    SitePlan,
    SitePlans,
    Slot,
    account_slot,
    account_terms,
)
from shared.bus.publisher import Outgoing

log = logging.getLogger(__name__)

Scope = Literal["site", "account"]
Key = tuple[str, str, str]
"""("site", site id, channel) or ("account", account id, "sms")."""
JUDGE_EVERY = timedelta(milliseconds=250)
"""How often the look-ahead is recomputed (well inside the preparation margin)."""


@dataclass
class _Schedule:
    key: Key
    generation: int
    plan: SitePlan | None = None
    members: dict[str, AccountMember] = field(default_factory=dict)
    last_instant: datetime | None = None

    @property
    def scope(self) -> Scope:
        return "site" if self.key[0] == "site" else "account"

    @property
    def channel(self) -> str:
        return self.key[2]


@dataclass(slots=True)
class _Prepared:
    instant: datetime
    key: Key
    generation: int
    message: Outgoing


class TickTimer:
    """Holds every schedule and publishes their ticks (see module docstring)."""

    def __init__(
        self,
        sink: TickSink,
        clock: Clock,
        *,
        account_period: timedelta = timedelta(seconds=1),
        grace: timedelta = timedelta(seconds=1),
        prepare_ahead: timedelta = timedelta(seconds=1),
        publish_ahead: timedelta = timedelta(0),
        publish_ahead_max: timedelta | None = None,
        batch_size: int = 20_000,
    ) -> None:
        self.sink = sink
        self.clock = clock
        self.account_period = account_period
        self.grace = grace
        ceiling = max(publish_ahead, publish_ahead_max or publish_ahead)
        self.rule = LookAheadRule(publish_ahead.total_seconds(), ceiling.total_seconds())
        self.rate = PublishRate()
        # The look-ahead in force (recomputed as ticks come into sight and batches go out).
        self.publish_ahead = publish_ahead
        # Ticks must be built before they can be published: as far ahead as the look-ahead
        # can grow, plus a margin, so a burst is seen while there is still time to grow it.
        margin = max(prepare_ahead - publish_ahead, timedelta(milliseconds=500))
        self.prepare_ahead = ceiling + margin
        self._judged_at: datetime | None = None
        self.batch_size = batch_size
        self._schedules: dict[Key, _Schedule] = {}
        self._site_accounts: dict[str, str] = {}
        self._accounts = 0
        # Heap of (instant, order, key, generation, slot); slot None means "recheck from here".
        self._heap: list[tuple[datetime, int, Key, int, Slot | None]] = []
        # Built ticks waiting for their instant, grouped by instant (a minute's burst is one
        # entry), and a heap of those instants.
        self._ready: dict[datetime, list[_Prepared]] = {}
        self._ready_at: list[datetime] = []
        self._order = itertools.count()
        self._generations = itertools.count(1)
        self._wake = asyncio.Event()
        self._stopping = False
        self.running = False
        self.published = 0

    # --- schedules ------------------------------------------------------------------------

    def set_site(self, site_id: str, plans: SitePlans | None) -> None:
        """Apply a site's new plans (None: the site has no usable settings any more)."""
        changed = False
        for channel in ("sms", "email"):
            plan = plans.plan(channel) if plans is not None else None
            changed |= self._set_site_plan(("site", site_id, channel), plan)
        changed |= self._set_account_member(site_id, plans.sms_account if plans else None)
        if changed:
            self._count()
            self._wake.set()

    def _set_site_plan(self, key: Key, plan: SitePlan | None) -> bool:
        old = self._schedules.get(key)
        if old is None and plan is None:
            return False
        if old is not None and old.plan == plan:
            return False
        if plan is None:
            del self._schedules[key]
            return True
        schedule = _Schedule(key, next(self._generations), plan=plan)
        if old is not None:
            schedule.last_instant = old.last_instant
        self._schedules[key] = schedule
        self._start(schedule)
        return True

    def _set_account_member(self, site_id: str, member: tuple[str, AccountMember] | None) -> bool:
        old_account = self._site_accounts.get(site_id)
        new_account = member[0] if member else None
        if old_account is not None:
            key: Key = ("account", old_account, "sms")
            schedule = self._schedules[key]
            if new_account == old_account and member and schedule.members[site_id] == member[1]:
                return False
            del schedule.members[site_id]
            del self._site_accounts[site_id]
            self._restart_account(key, schedule)
        if member is not None:
            account, details = member
            key = ("account", account, "sms")
            schedule = self._schedules.get(key) or _Schedule(key, 0)
            if key not in self._schedules:
                self._accounts += 1
            schedule.members[site_id] = details
            self._schedules[key] = schedule
            self._site_accounts[site_id] = account
            self._restart_account(key, schedule)
        return True

    def _restart_account(self, key: Key, schedule: _Schedule) -> None:
        if not schedule.members:
            if self._schedules.pop(key, None) is not None:
                self._accounts -= 1
            return
        schedule.generation = next(self._generations)
        self._start(schedule)

    def _start(self, schedule: _Schedule) -> None:
        """Plan a (re)started schedule from now minus the grace, never repeating a tick."""
        at = self.clock.now() - self.grace
        if schedule.last_instant is not None:
            at = max(at, schedule.last_instant + MICROSECOND)
        try:
            self._push(schedule, self._next(schedule, at))
        except Exception:
            log.exception(
                "schedule dropped: planning failed", extra={"key": "/".join(schedule.key)}
            )
            self._drop(schedule)

    def _next(self, schedule: _Schedule, at: datetime) -> Slot | Recheck | None:
        if schedule.plan is not None:
            return schedule.plan.next_slot(at)
        return account_slot(self.account_period, at)

    def _push(self, schedule: _Schedule, slot: Slot | Recheck | None) -> None:
        if slot is None:
            return  # the schedule never opens; a settings change will replan it
        entry: tuple[datetime, int, Key, int, Slot | None]
        if isinstance(slot, Recheck):
            entry = (slot.at, next(self._order), schedule.key, schedule.generation, None)
        else:
            entry = (slot.instant, next(self._order), schedule.key, schedule.generation, slot)
        heapq.heappush(self._heap, entry)

    def _drop(self, schedule: _Schedule) -> None:
        if self._schedules.pop(schedule.key, None) is None:
            return
        if schedule.scope == "account":
            self._accounts -= 1
            for site_id in schedule.members:
                self._site_accounts.pop(site_id, None)
        self._count()

    def _count(self) -> None:
        metrics.SCHEDULES.labels("site").set(len(self._schedules) - self._accounts)
        metrics.SCHEDULES.labels("account").set(self._accounts)

    def schedule_keys(self) -> list[Key]:
        """Keys of the schedules being ticked (for health and tests)."""
        return sorted(self._schedules)

    # --- the loop -------------------------------------------------------------------------

    def stop(self) -> None:
        """Finish the batch in hand, then leave `run`."""
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        """Publish ticks on time until stopped."""
        self.running = True
        try:
            while not self._stopping:
                self._wake.clear()
                await self._prepare(self.clock.now())
                self._judge(self.clock.now())
                batch = self._take_due(self.clock.now())
                if batch:
                    await self._publish(batch)
                    continue
                await self.clock.sleep_until(self._next_deadline(), self._wake)
        finally:
            self.running = False

    def _next_deadline(self) -> datetime | None:
        candidates = []
        if self._ready_at:
            candidates.append(self._ready_at[0] - self.publish_ahead)
        if self._heap:
            candidates.append(self._heap[0][0] - self.prepare_ahead)
        if self._ready_at and self._judged_at is not None and self.rule.ceiling > self.rule.floor:
            candidates.append(self._judged_at + JUDGE_EVERY)  # ticks in sight may need more
        return min(candidates) if candidates else None

    def _judge(self, now: datetime) -> None:
        """Set the look-ahead for the ticks built so far and the rate measured lately (at
        most every `JUDGE_EVERY`: it sorts every built instant)."""
        if self.rule.ceiling <= self.rule.floor:
            return  # fixed
        if self._judged_at is not None and now - self._judged_at < JUDGE_EVERY:
            return
        self._judged_at = now
        due = sorted((instant.timestamp(), len(ticks)) for instant, ticks in self._ready.items())
        seconds = self.rule.seconds(due, self.rate.per_second)
        self.publish_ahead = timedelta(seconds=seconds)
        metrics.PUBLISH_AHEAD.set(seconds)

    async def _prepare(self, now: datetime) -> None:
        """Build the ticks due up to `now + prepare_ahead`, advancing each schedule."""
        horizon = now + self.prepare_ahead
        cutoff = now - self.grace
        built = 0
        while self._heap and self._heap[0][0] <= horizon:
            instant, _, key, generation, slot = heapq.heappop(self._heap)
            schedule = self._schedules.get(key)
            if schedule is None or schedule.generation != generation:
                continue  # replanned or removed since
            try:
                if slot is None:  # a recheck after a long closed stretch
                    self._push(schedule, self._next(schedule, instant))
                    continue
                if instant < cutoff:
                    metrics.TICKS_SKIPPED.labels("late").inc()
                    self._push(schedule, self._next(schedule, max(instant + MICROSECOND, cutoff)))
                    continue
                self._push(schedule, self._next(schedule, instant + MICROSECOND))
                message = self._build(schedule, slot)
            except Exception:
                # One schedule's bad data must not stop every other site's ticks.
                log.exception("schedule dropped: planning failed", extra={"key": "/".join(key)})
                self._drop(schedule)
                continue
            if message is not None:
                prepared = _Prepared(instant, key, generation, message)
                waiting = self._ready.get(instant)
                if waiting is None:
                    waiting = self._ready[instant] = []
                    heapq.heappush(self._ready_at, instant)
                waiting.append(prepared)
            built += 1
            if built % 1000 == 0:
                await asyncio.sleep(0)  # let acknowledgements and settings in

    def _build(self, schedule: _Schedule, slot: Slot) -> Outgoing | None:
        if schedule.plan is not None:
            return site_tick(schedule.plan, slot)
        terms = account_terms(
            schedule.key[1], schedule.members.values(), slot.instant, self.account_period
        )
        if terms is None:
            metrics.TICKS_SKIPPED.labels("empty").inc()
            return None
        return account_tick(schedule.key[1], terms, slot)

    def _take_due(self, now: datetime) -> list[_Prepared]:
        cutoff = now - self.grace
        publish_until = now + self.publish_ahead
        batch: list[_Prepared] = []
        while (
            self._ready_at and self._ready_at[0] <= publish_until and len(batch) < self.batch_size
        ):
            instant = self._ready_at[0]
            waiting = self._ready[instant]
            room = self.batch_size - len(batch)
            taken, rest = waiting[:room], waiting[room:]
            if rest:
                self._ready[instant] = rest
            else:
                heapq.heappop(self._ready_at)
                del self._ready[instant]
            if instant < cutoff:
                metrics.TICKS_SKIPPED.labels("late").inc(len(taken))
                continue
            schedules = self._schedules
            for prepared in taken:
                schedule = schedules.get(prepared.key)
                if schedule is not None and schedule.generation == prepared.generation:
                    batch.append(prepared)
        return batch

    async def _publish(self, batch: list[_Prepared]) -> None:
        began = time.perf_counter()
        results = await self.sink.publish([p.message for p in batch])
        # Real seconds, whatever the clock: the rate says how fast this machine publishes.
        ended = time.perf_counter()
        self.rate.observe(len(batch), ended - began, ended)
        metrics.PUBLISH_RATE.set(self.rate.per_second)
        done = self.clock.now()
        failed: list[object] = []
        for prepared, result in zip(batch, results, strict=True):
            schedule = self._schedules.get(prepared.key)
            scope: Scope = "site" if prepared.key[0] == "site" else "account"
            channel = prepared.key[2]
            if not isinstance(result, PubAck):
                metrics.TICKS_SKIPPED.labels("failed").inc()
                failed.append(result)
                continue
            self.published += 1
            metrics.TICKS_PUBLISHED.labels(channel, scope, "false").inc()
            if result.duplicate:
                metrics.TICKS_DUPLICATE.labels(channel, scope).inc()
            metrics.TICK_LAG.observe(max(0.0, (done - prepared.instant).total_seconds()))
            if schedule is not None and (
                schedule.last_instant is None or prepared.instant > schedule.last_instant
            ):
                schedule.last_instant = prepared.instant
        if failed:
            log.warning(
                "ticks not stored; they are not retried later",
                extra={"failed": len(failed), "of": len(batch), "error": repr(failed[0])},
            )

    # --- introspection --------------------------------------------------------------------
