"""Sending one claimed message: wait for its slot, hand it to the provider, record the outcome
(sent, retried with back-off, failed, or the account held)."""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import datetime, timedelta

from shared import tracing
from shared.dispatch.adapter import SendResult
from shared.dispatch.fence import LeaseLost, reset_fence, set_fence
from shared.dispatch.flight import Flight, TickRun
from shared.dispatch.metrics import FAILURES, OUTCOMES, SENT, THROTTLE_WAIT
from shared.dispatch.ports import ChannelAdapter, Clock, Limiter, Queue, Recorder, Relay
from shared.dispatch.queue import Claimed
from shared.dispatch.tuning import STALL, EngineTuning
from shared.domain.throttle import backoff_delay
from shared.sites import Site

log = logging.getLogger(__name__)


class Sender:
    """Launches and performs sends, one task per message."""

    def __init__(
        self,
        *,
        channel: str,
        adapter: ChannelAdapter,
        queue: Queue,
        limits: Limiter,
        recorder: Recorder,
        relay: Relay,
        flight: Flight,
        tuning: EngineTuning,
        clock: Clock,
    ) -> None:
        self.channel = channel
        self.adapter = adapter
        self.queue = queue
        self.limits = limits
        self.recorder = recorder
        self.relay = relay
        self.flight = flight
        self.tuning = tuning
        self.clock = clock

    def launch(
        self,
        claimed: Claimed,
        site: Site,
        account: str,
        when: datetime,
        interval: timedelta | None,
        run: TickRun,
        spacing: timedelta,
        slot_held: bool = False,
    ) -> None:
        """Start the send of `claimed` at `when` as a task of `run`."""
        task = asyncio.create_task(
            self.attempt(claimed, site, account, when, interval, run, spacing, slot_held)
        )
        if not slot_held:
            run.slotless.add(task)
            task.add_done_callback(run.slotless.discard)
        run.launched.add(claimed.key)
        run.tasks.add(task)
        run.calling.add(task)
        task.add_done_callback(run.call_ended)
        self.flight.track(task)

    async def attempt(
        self,
        claimed: Claimed,
        site: Site,
        account: str,
        when: datetime,
        interval: timedelta | None = None,
        run: TickRun | None = None,
        spacing: timedelta = timedelta(0),
        slot_held: bool = True,
    ) -> None:
        """Wait for `when`, send, record. `slot_held`: the caller already took a send slot;
        otherwise (spaced sends, which wait minutes) it is taken after the wait, so waiting
        sends of one site never keep another site's sends from starting."""
        flight = self.flight
        try:
            wait = (when - self.clock.now()).total_seconds()
            THROTTLE_WAIT.labels(self.channel).observe(max(0.0, wait))
            if wait > 0:
                if wait > self.tuning.lease_seconds / 2:
                    await self.queue.extend_lease(
                        [claimed.key], timedelta(seconds=wait + self.tuning.lease_seconds)
                    )
                await flight.pause(wait)
            if not slot_held:
                await flight.send_slots.acquire()
                slot_held = True
                if run is not None:
                    run.slotless.discard(asyncio.current_task())
            if flight.draining or (
                run is not None and not await run.keep_spacing(spacing, flight.pause, self.clock)
            ):
                # SIGTERM came while this one waited for its slot: it is not in flight yet,
                # so another replica sends it rather than this one delaying its exit.
                await self.queue.release_unsent([claimed])
                return
            if interval is not None and self.clock.now() - when > max(interval, STALL):
                # This replica stalled well past its reserved slot; sending now could crowd
                # slots other replicas reserved since. Take a fresh one.
                (slot,) = await self.limits.reserve(account, 1, interval)
                late = (slot - self.clock.now()).total_seconds()
                if late > 0:
                    await self.clock.sleep(late)
            lease = timedelta(seconds=self.tuning.lease_seconds)

            async def fence() -> None:
                # Cheap while the lease is surely ours; a write (and an extension) once this
                # replica may have been too slow to keep it.
                if flight.lease_surely_held(claimed.key, self.clock.now(), lease):
                    return
                checked_at = self.clock.now()
                if not await self.queue.confirm_lease(claimed.key, lease):
                    raise LeaseLost(claimed.message_id)
                flight.renewed([claimed.key], checked_at)

            token = set_fence(fence)
            try:
                await fence()
                with tracing.send_span(
                    claimed.traceparent,
                    message_id=claimed.message_id,
                    site_id=claimed.site_id,
                    channel=self.channel,
                    account=account,
                    attempt=claimed.attempts + 1,
                ) as span:
                    began = asyncio.get_running_loop().time()
                    result = await self.adapter.send(claimed, site)
                    flight.time_send(asyncio.get_running_loop().time() - began)
                    tracing.record_send(span, result)
            except LeaseLost:
                # Taken over while this replica was too slow to renew: the new owner
                # reconciles it; sending or recording anything here could send it twice.
                log.warning(
                    "lease lost before the send; left to the replica that took it over",
                    extra={"message_id": claimed.message_id},
                )
                return
            except Exception as exc:  # an adapter bug must not strand the message
                log.exception("adapter raised; treating as a transient failure")
                result = SendResult("retry", error=f"{type(exc).__name__}: {exc}")
            finally:
                reset_fence(token)
            # The slot bounds provider calls in flight, not database writes: free it before
            # waiting for the outcome's (group) commit.
            slot_held = False
            flight.send_slots.release()
            answered_at = self.clock.now()
            if run is not None:
                run.answered(answered_at)
                run.call_ended(asyncio.current_task())
            await self.record(claimed, account, result)
            if run is not None and run.pace is not None and spacing > timedelta(0):
                # The site's next turn was reserved from this send's turn; the provider saw
                # it later than that. After the record: the outcome matters more than the pace.
                try:
                    await self.limits.not_before(run.pace, answered_at + spacing)
                except Exception:
                    log.exception("could not push the site's next spaced turn back")
        finally:
            flight.let_go([claimed.key])
            async with flight.cap_locks[account]:
                flight.unrecorded[account] -= 1
            if slot_held:
                flight.send_slots.release()

    async def record(self, claimed: Claimed, account: str, result: SendResult) -> None:
        """Write the provider's answer: sent, held, retried with back-off, or failed."""
        if result.outcome == "sent":
            if await self.recorder.sent(claimed, result.account or account, result):
                SENT.labels(self.channel).inc()
                OUTCOMES.labels(self.channel, "sent").inc()
        elif result.outcome == "hold":
            await self.queue.defer(
                claimed,
                reason=result.error or "account held",
                retry_at=None,
                attempt_used=False,
                announce=False,
            )
            await self.limits.hold(account, result.error or "held")
        elif result.outcome == "retry" and not result.attempt_used:
            delay = backoff_delay(
                max(claimed.attempts, 1),
                self.tuning.retry_base_seconds,
                self.tuning.retry_cap_seconds,
                result.retry_after,
                0.2,
                random.random(),
            )
            await self.queue.defer(
                claimed,
                reason=result.error or "waiting for the provider to tell",
                retry_at=self.clock.now() + timedelta(seconds=delay),
                attempt_used=False,
            )
        elif result.outcome == "retry" and claimed.attempts + 1 < self.tuning.max_attempts:
            FAILURES.labels(self.channel, "transient").inc()
            delay = backoff_delay(
                claimed.attempts + 1,
                self.tuning.retry_base_seconds,
                self.tuning.retry_cap_seconds,
                result.retry_after,
                0.2,
                random.random(),
            )
            await self.queue.defer(
                claimed,
                reason=result.error or "temporary provider error",
                retry_at=self.clock.now() + timedelta(seconds=delay),
                attempt_used=True,
            )
        else:
            FAILURES.labels(self.channel, "permanent").inc()
            reason = result.error or "refused by the provider"
            if result.outcome == "retry":
                reason = f"gave up after {claimed.attempts + 1} attempts: {reason}"
            await self.queue.failed(
                claimed,
                reason=reason,
                provider_response=result.provider_response,
                permanent=result.outcome == "failed",
            )
            OUTCOMES.labels(self.channel, "failed").inc()
        self.relay.nudge()
