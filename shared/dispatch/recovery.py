"""Recovery and housekeeping: leases renewed, sends of a crashed replica reconciled with the
provider (never resent blindly), expired messages ended, old finished ones purged."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from shared.dispatch.flight import Flight
from shared.dispatch.metrics import OUTCOMES, QUEUE_DEPTH, SENT
from shared.dispatch.ports import ChannelAdapter, Clock, Queue, Relay, Sites
from shared.dispatch.queue import Key
from shared.dispatch.tuning import EngineTuning

log = logging.getLogger(__name__)


class Recovery:
    """Periodic work on the queue that keeps every message moving to one terminal state."""

    def __init__(
        self,
        *,
        channel: str,
        adapter: ChannelAdapter,
        queue: Queue,
        sites: Sites,
        relay: Relay,
        flight: Flight,
        tuning: EngineTuning,
        clock: Clock,
    ) -> None:
        self.channel = channel
        self.adapter = adapter
        self.queue = queue
        self.sites = sites
        self.relay = relay
        self.flight = flight
        self.tuning = tuning
        self.clock = clock
        # Taken-over messages the provider did not know on a first look, and when. The replica
        # whose lease ran out may be alive but starved, its provider call still under way (or
        # the provider not yet done storing what it accepted): absence counts only when it
        # holds on a second look at least one lease later.
        self._absent: dict[Key, datetime] = {}

    async def renew_leases(self) -> None:
        """Keep the leases of the messages this replica still works on."""
        keys = list(self.flight.held)
        began = self.clock.now()
        renewed = await self.queue.renew_leases(timedelta(seconds=self.tuning.lease_seconds), keys)
        if renewed == len(keys):
            # Fewer: some were taken over meanwhile; their sends confirm before they go.
            self.flight.renewed(keys, began)

    async def recover(self) -> int:
        """Reconcile sends interrupted by a crashed replica; returns how many were settled."""
        settled = 0
        now = self.clock.now()
        lease = timedelta(seconds=self.tuning.lease_seconds)
        for key, first in list(self._absent.items()):
            if now - first > 4 * lease:  # settled by another replica meanwhile
                del self._absent[key]
        for claimed in await self.queue.take_over_expired(now, lease=lease):
            site = self.sites.get(claimed.site_id)
            if site is None:
                continue
            account = self.adapter.account_for(site) or "unknown"
            try:
                outcome = await self.adapter.reconcile(claimed, site)
            except Exception as exc:
                log.warning(
                    "reconciliation failed; will retry",
                    extra={"message_id": claimed.message_id, "error": str(exc)},
                )
                continue
            if outcome.sent is True:
                self._absent.pop(claimed.key, None)
                await self.queue.sent(
                    claimed,
                    account=outcome.account or account,
                    provider_message_id=outcome.provider_message_id,
                    attempts=0,
                    reconciled=True,
                )
                SENT.labels(self.channel).inc()
                OUTCOMES.labels(self.channel, "sent").inc()
                settled += 1
            elif outcome.sent is False:
                first = self._absent.setdefault(claimed.key, now)
                if now - first < lease:
                    continue  # its lease runs out again, and then we look again
                del self._absent[claimed.key]
                await self.queue.defer(
                    claimed,
                    reason="interrupted before reaching the provider; queued again",
                    retry_at=None,
                    attempt_used=False,
                )
                settled += 1
            # None: the provider cannot tell yet; the lease expires again and we ask later.
        if settled:
            self.relay.nudge()
        return settled

    async def expire(self) -> None:
        """Queued messages past their `expires_at` end expired."""
        done = await self.queue.expire_due()
        if done:
            OUTCOMES.labels(self.channel, "expired").inc(len(done))
            self.relay.nudge()

    async def purge_finished(self) -> int:
        """Drop finished messages past the retention period from the ledger, in chunks so
        that sending never waits long for the database; returns how many went."""
        before = self.clock.now() - timedelta(days=self.tuning.retention_days)
        total = 0
        while True:
            gone = await self.queue.purge_finished(before)
            total += gone
            if gone == 0:
                break
            await self.clock.sleep(0)
        if total:
            log.info("finished messages purged", extra={"messages": total, "before": before})
        return total

    async def report_depth(self) -> None:
        """Publish the queue depth per site as a gauge."""
        QUEUE_DEPTH.clear()
        for site, depth in (await self.queue.depth_by_site()).items():
            QUEUE_DEPTH.labels(self.channel, site).set(depth)
