"""The SMS side of the delivery engine (`shared.dispatch.adapter.ChannelAdapter`).

The engine claims messages on ticks, paces them and records every outcome; this adapter asks
the provider and carries out what the pure rules (`domain.sending`, `domain.outcomes`,
`domain.credit_hold`) decide:

- `check`, before any provider call: the group's suppression list (an opted-out number ends
  `suppressed`), E.164 and body length (the provider's maximum), a usable provider and sender,
  and the recipient's quiet hours in their local time (`defer` to the next allowed instant).
- `send`: our message id is the provider's reference. A message that was attempted before is
  first looked up at the provider and never POSTed again if the provider has it. An answer
  that never came (timeout, dropped connection) is *ambiguous*: it is looked up at once, and
  otherwise retried later through the same lookup-first path — never re-sent blindly.
- `reconcile`, after a crash: the lookup decides whether the interrupted send happened.
- `account_resumed`: while credits are out, polls the balance so sending resumes by itself.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Literal

from services.sms_gateway.adapters.ledger import Ledger
from services.sms_gateway.adapters.optouts import BusOptOuts
from services.sms_gateway.adapters.providers import NotConfigured, Providers
from services.sms_gateway.adapters.providers.base import Found, Outbound, Provider, ProviderError
from services.sms_gateway.adapters.providers.catalogue import CONTENT_SEARCHED
from services.sms_gateway.domain import outcomes, sending
from services.sms_gateway.handlers.credits import Credits
from shared.dispatch.adapter import SEND, AccountLimitsSpec, Reconciled, SendResult, Verdict
from shared.dispatch.queue import Claimed, MessageQueue
from shared.domain.accounts import sms_account_id
from shared.events.schemas.optouts import RecipientOptedOut
from shared.events.schemas.ticks import TickIssued
from shared.sites import Site
from shared.suppression import SuppressionList

MISCONFIGURED_RETRY = sending.MISCONFIGURED_RETRY


def account_for(site: Site) -> str | None:
    """The provider account (sites of a group with the same credentials share it)."""
    return sms_account_id(site.settings.sms.provider, site.group_id)


def _verdict(decision: sending.Decision) -> Verdict:
    return SEND if decision.kind == "send" else Verdict(*dataclasses.astuple(decision))


class SmsAdapter:
    """SMS providers behind the delivery engine."""

    channel: Literal["sms", "email"] = "sms"

    def __init__(
        self,
        *,
        default_sender: str,
        suppression: Callable[[], SuppressionList],
        providers: Callable[[], Providers],
        credits: Credits,
        ledger: Ledger,
        queue: Callable[[], MessageQueue],
        optouts: BusOptOuts,
    ) -> None:
        self._default_sender = default_sender
        self._suppression = suppression
        self._providers = providers
        self._credits = credits
        self._ledger = ledger
        # Made after `register` (providers need the key ring, the suppression list NATS, and
        # the engine makes its queue in `start`): read at the time of use.
        self._queue = queue
        self._optouts = optouts

    def account_for(self, site: Site) -> str | None:
        """The provider account (sites of a group with the same credentials share it)."""
        return account_for(site)

    def limits_for(self, site: Site) -> AccountLimitsSpec:
        """The account's hard rate: one send every 1/rate seconds, no burst."""
        rate = site.settings.sms.provider.rate_per_second
        return AccountLimitsSpec(interval=timedelta(seconds=1 / rate), burst=1)

    def sender(self, site: Site, provider: Provider) -> str | None:
        """Who the message is from: the site's sender ID, else the gateway's default where
        the provider allows one."""
        return sending.sender(
            site.settings.sms.sender_id, provider.needs_sender, self._default_sender
        )

    def outbound(self, claimed: Claimed, site: Site, provider: Provider) -> Outbound:
        """The provider-neutral message."""
        return Outbound(
            reference=claimed.message_id,
            to=claimed.recipient,
            sender=self.sender(site, provider) or "",
            body=claimed.message.body,
            submitted_at=claimed.message.submitted_at,
        )

    # --- before the provider ---------------------------------------------------------------

    async def check(self, claimed: Claimed, site: Site, now: datetime) -> Verdict:
        """Opt-outs, validity, configuration and the quiet-hours guard."""
        if self._suppression().is_suppressed(claimed.group_id, "sms", claimed.recipient_key):
            return Verdict("suppress", "the recipient opted out of this group's SMS")
        body = claimed.message.body
        decided = sending.decide_message(claimed.recipient, body)
        if decided.kind != "send":
            return _verdict(decided)
        try:
            provider = self._providers().for_site(site)
        except NotConfigured as exc:
            return Verdict("defer", f"{exc}; waiting for the settings", now + MISCONFIGURED_RETRY)
        decided = sending.decide_provider(
            body, provider.kind, provider.max_body_chars, self.sender(site, provider), now
        )
        if decided.kind != "send":
            return _verdict(decided)
        return _verdict(self._quiet_hours(claimed, site, now))

    @staticmethod
    def _quiet_hours(claimed: Claimed, site: Site, now: datetime) -> sending.Decision:
        setting = site.settings.sms.quiet_hours
        return sending.decide_quiet_hours(
            claimed.recipient, setting.start, setting.end, site.settings.profile.timezone, now
        )

    # --- the provider ----------------------------------------------------------------------

    async def send(self, claimed: Claimed, site: Site) -> SendResult:
        """Hand one message to the provider (looking it up first if attempted before)."""
        try:
            provider = self._providers().for_site(site)
        except NotConfigured as exc:
            return SendResult("retry", error=str(exc))
        account = self.account_for(site) or ""
        message = self.outbound(claimed, site, provider)
        if claimed.attempts > 0:
            found = await self._lookup(provider, message, claimed.site_id)
            if found.sent:
                return self._already_there(found)
        now = datetime.now(UTC)
        late = self._quiet_hours(claimed, site, now)
        if late.retry_at is not None:
            # The guard closed between the claim and now: not a single message past it.
            wait = sending.wait_until(late.retry_at, now)
            return SendResult("retry", error=late.reason, retry_after=wait)
        began_at = datetime.now(UTC)
        reply = await provider.send(message)
        # The provider took the balance it answers with between these two instants (the
        # child's own start of the POST is the closer one). Wall clock, not the loop's: the
        # credit state compares them across replicas.
        began_at = reply.began_at or began_at
        decided = outcomes.outcome(
            reply.status,
            reply.detail,
            balance=reply.balance,
            required=reply.required,
            retry_after=reply.retry_after,
        )
        if decided.state == "sent":
            taken = (began_at.timestamp(), time.time())
            await self._credits.after_send(account, site, provider, reply.balance, *taken)
            result = SendResult(
                "sent",
                provider_message_id=reply.provider_message_id,
                segments=reply.segments,
                cost=reply.cost,
            )
        else:
            result = await self._carry_out(claimed, site, provider, message, account, decided)
        return dataclasses.replace(result, began_at=began_at)

    async def _carry_out(
        self,
        claimed: Claimed,
        site: Site,
        provider: Provider,
        message: Outbound,
        account: str,
        decided: outcomes.Outcome,
    ) -> SendResult:
        """What the engine records for an answer other than `accepted`."""
        if decided.state == "look_up":
            try:
                found = await self._lookup(provider, message, claimed.site_id)
            except ProviderError:
                found = Found(None)
            if found.sent:
                return self._already_there(found)
            return SendResult("retry", error=outcomes.not_found_after_ambiguous(decided.reason))
        if decided.state == "retry":
            return SendResult("retry", error=decided.reason, retry_after=decided.retry_after)
        if decided.state == "hold" and decided.refused is not None:
            await self._credits.refused(account, site, provider, decided.refused)
            return SendResult("hold", error=decided.reason)
        if decided.state == "opted_out":
            await self._provider_opt_out(claimed)
        return SendResult("failed", error=decided.reason, provider_response=decided.detail)

    @staticmethod
    def _already_there(found: Found) -> SendResult:
        return SendResult(
            "sent",
            provider_message_id=found.provider_message_id,
            segments=found.segments,
            cost=found.cost,
            provider_response=outcomes.ALREADY_THERE,
        )

    async def _lookup(self, provider: Provider, message: Outbound, site_id: str) -> Found:
        taken: Sequence[str] = ()
        if provider.kind in CONTENT_SEARCHED:
            taken = await self._ledger.ids_of_others(message.to, message.reference, site_id)
        return await provider.lookup(message, taken)

    async def _provider_opt_out(self, claimed: Claimed) -> None:
        """The carrier blocks the number (it replied STOP to them): our list follows."""
        self._suppression().apply(
            RecipientOptedOut(
                group_id=claimed.group_id,
                channel="sms",
                recipient=claimed.recipient,
                how="provider",
                recipient_tag=claimed.lookup,
            )
        )
        await self._queue().suppress_recipient(
            claimed.group_id, claimed.recipient_key, reason="the provider reports an opt-out"
        )
        await self._optouts.opted_out(
            claimed.group_id, claimed.recipient, "provider", site_id=claimed.site_id
        )

    async def reconcile(self, claimed: Claimed, site: Site) -> Reconciled:
        """Did a send interrupted by a crash reach the provider? Ask it."""
        try:
            provider = self._providers().for_site(site)
        except NotConfigured as exc:
            return Reconciled(None, detail=str(exc))
        found = await self._lookup(
            provider, self.outbound(claimed, site, provider), claimed.site_id
        )
        return Reconciled(found.sent, found.provider_message_id, "looked up at the provider")

    async def on_tick(self, tick: TickIssued, sites: Sequence[Site]) -> None:
        """Nothing besides sending: replies and receipts arrive by webhook."""

    async def account_resumed(self, account: str, site: Site) -> bool:
        """Credits back? (polls the balance, at most every `resume_poll_seconds`)."""
        return await self._credits.try_resume(account, site)
